"""Rotate the *.log files of LOG_DIR: each non-empty log is renamed to NAME.log.TIMESTAMP and
gzipped (NAME.log.TIMESTAMP.gz), and a fresh empty NAME.log takes its place. Rotated logs
beyond KEEP (default 5) per name are deleted, oldest first."""

import gzip
import os
import shutil
import sys
import time
from pathlib import Path

log_dir = Path(os.environ.get("LOG_DIR", "work/logs"))
keep = int(os.environ.get("KEEP", "5"))
stamp = time.strftime("%Y%m%d-%H%M%S")
if not log_dir.is_dir():
    print(f"rotate_logs: no {log_dir}: nothing to rotate")
    sys.exit(0)
for log in sorted(log_dir.glob("*.log")):
    if log.stat().st_size == 0:
        continue
    rotated = log.with_name(f"{log.name}.{stamp}.gz")
    with open(log, "rb") as src, gzip.open(rotated.with_suffix(".gz.tmp"), "wb") as dst:
        shutil.copyfileobj(src, dst)
    os.replace(rotated.with_suffix(".gz.tmp"), rotated)
    log.write_bytes(b"")
    print(f"rotated {log} -> {rotated.name}")
    old = sorted(log_dir.glob(f"{log.name}.*.gz"))
    for gone in old[:-keep] if keep > 0 else old:
        gone.unlink()
        print(f"deleted {gone.name} (keeping {keep})")
