"""The cost of synchronous=FULL against NORMAL for state.db (WAL): N small write transactions
like the daemon's (one run row inserted, then updated), same process, same directory.

    python scripts/bench_sync.py [N] [DIR]
"""

from __future__ import annotations

import sqlite3
import sys
import tempfile
import time
from pathlib import Path

from cron_scheduler.history import SCHEMA


def bench(directory: Path, mode: str, n: int) -> float:
    path = directory / f"bench-{mode}.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={mode}")
    conn.executescript(SCHEMA)
    start = time.perf_counter()
    for i in range(n):
        conn.execute("BEGIN IMMEDIATE")
        cur = conn.execute("INSERT INTO runs (job_id, slot, scheduled_for, trigger, status) "
                           "VALUES ('job', ?, ?, 'schedule', 'running')", (str(i), str(i)))
        conn.execute("UPDATE runs SET status = 'succeeded', exit_code = 0 WHERE run_id = ?", (cur.lastrowid,))
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return elapsed


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    with tempfile.TemporaryDirectory(dir=sys.argv[2] if len(sys.argv) > 2 else None) as tmp:
        results = {mode: bench(Path(tmp), mode, n) for mode in ("NORMAL", "FULL")}
    for mode, secs in results.items():
        print(f"synchronous={mode:<6} {n} transactions: {secs:.3f} s ({secs / n * 1e6:.0f} us each)")
    print(f"FULL / NORMAL: {results['FULL'] / results['NORMAL']:.2f}x")


if __name__ == "__main__":
    main()
