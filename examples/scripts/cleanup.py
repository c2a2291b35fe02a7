"""Delete the regular files under DIR (recursively) last modified more than DAYS days ago;
empty directories left behind are removed too. DRY_RUN=1 only lists them."""

import os
import sys
import time
from pathlib import Path

root = Path(os.environ.get("DIR", "work/tmp"))
days = float(os.environ.get("DAYS", "7"))
dry = os.environ.get("DRY_RUN") == "1"
if not root.is_dir():
    print(f"cleanup: no {root}: nothing to delete")
    sys.exit(0)
cutoff = time.time() - days * 86400
deleted = 0
for path in sorted(root.rglob("*"), reverse=True):  # children before their directory
    if path.is_file() and not path.is_symlink() and path.stat().st_mtime < cutoff:
        print(("would delete " if dry else "deleted ") + str(path))
        if not dry:
            path.unlink()
        deleted += 1
    elif path.is_dir() and not any(path.iterdir()) and not dry:
        path.rmdir()
print(f"{deleted} file(s) older than {days:g} days under {root}")
