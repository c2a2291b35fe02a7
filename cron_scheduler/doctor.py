"""`cron-scheduler doctor [--repair]`: check state.db and rebuild it when damaged.

The check is SQLite's `PRAGMA integrity_check`. The repair (daemon stopped) moves the damaged
file aside as state.db.corrupt-<UTC time> together with its -wal/-shm, then builds a new
state.db from every row that can still be read: runs, waves and CLI requests, table by table
and, past a damaged page, id by id. The schedule cursors (job_state) start fresh, so every job
goes on from its next slot; no slot that has a salvaged run runs again. jobs.json is never read
or written. What is lost: the rows on damaged pages (history, and the catch-up of slots missed
while the daemon was down).
"""

from __future__ import annotations

import fcntl
import os
import re
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from cron_scheduler.errors import DaemonAlreadyRunning, OperationalError
from cron_scheduler.history import SCHEMA, SIDE_FILES, open_db_file
from cron_scheduler.home import Home

SALVAGED = (("runs", "run_id"), ("waves", "wave_id"), ("requests", "id"))  # job_state starts fresh
MAX_PROBES = 5_000_000  # ids tried one by one past a damaged page, per table
MAX_PROBLEMS = 20


@dataclass
class Salvage:
    table: str
    rows: int = 0
    unreadable: int = 0  # ids whose lookup met damage (lost, or pruned before the damage)
    error: str | None = None  # the table could not be read at all


@dataclass
class Repair:
    aside: Path
    tables: list[Salvage] = field(default_factory=list)


def check(home: Home) -> list[str] | None:
    """integrity_check's findings: [] when sound, None when there is no state.db yet."""
    path = home.state_db
    if not os.path.lexists(path):
        return None
    open_db_file(path)  # refuses links at state.db and its side files
    return _integrity(path)


def _integrity(path: Path) -> list[str]:
    try:
        conn = _connect_ro(path)
    except sqlite3.DatabaseError as exc:
        return [str(exc)]
    try:
        rows = [r[0] for r in conn.execute(f"PRAGMA integrity_check({MAX_PROBLEMS})")]
    except sqlite3.DatabaseError as exc:
        return [str(exc)]
    finally:
        conn.close()
    return [] if rows == ["ok"] else rows


def _connect_ro(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, isolation_level=None)
    conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
    return conn


def repair(home: Home, now: datetime) -> Repair | None:
    """Rebuild a damaged state.db (None when it is sound). Refused while a daemon runs."""
    lock_fd = _lock_out_daemon(home)
    try:
        problems = check(home)
        if not problems:
            return None
        aside = home.root / f"state.db.corrupt-{now.strftime('%Y%m%dT%H%M%SZ')}"
        for suffix in ("", *SIDE_FILES):
            source = Path(f"{home.state_db}{suffix}")
            if os.path.lexists(source):
                os.rename(source, Path(f"{aside}{suffix}"))  # SQLite pairs aside + "-wal"
        result = Repair(aside)
        rebuilt = home.root / "state.db.rebuild"
        for suffix in ("", *SIDE_FILES):
            if os.path.lexists(f"{rebuilt}{suffix}"):
                os.unlink(f"{rebuilt}{suffix}")
        fd = os.open(rebuilt, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        os.close(fd)
        new = sqlite3.connect(rebuilt, isolation_level=None)
        try:
            new.execute("PRAGMA synchronous=FULL")
            new.executescript(SCHEMA)
            new.execute("BEGIN IMMEDIATE")
            try:
                src = _connect_ro(aside)
            except sqlite3.DatabaseError as exc:
                src = None
                result.tables = [Salvage(t, error=str(exc)) for t, _ in SALVAGED]
            if src is not None:
                try:
                    result.tables = [_copy(src, new, table, key) for table, key in SALVAGED]
                    old_seq = _old_sequence(src)
                finally:
                    src.close()
            else:
                old_seq = {}
            # a new run never takes the id (and log file) of a run that was lost
            top = max(old_seq.get("runs", 0), _max_log_id(home),
                      new.execute("SELECT COALESCE(MAX(run_id), 0) FROM runs").fetchone()[0])
            new.execute("DELETE FROM sqlite_sequence WHERE name = 'runs'")
            new.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('runs', ?)", (top,))
            new.execute("COMMIT")
        finally:
            new.close()
        os.replace(rebuilt, home.state_db)
        dir_fd = os.open(home.root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        return result
    finally:
        os.close(lock_fd)


def _lock_out_daemon(home: Home) -> int:
    """Hold daemon.lock for the repair: no daemon may run on the file being replaced."""
    try:
        fd = os.open(home.daemon_lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise OperationalError(f"cannot open {home.daemon_lock}: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise DaemonAlreadyRunning(f"a daemon is running on home {home.root}: stop it before "
                                   f"`doctor --repair`") from None
    return fd


def _copy(src: sqlite3.Connection, new: sqlite3.Connection, table: str, key: str) -> Salvage:
    """Every readable row of table, in id order: a scan from each end, then one lookup per id
    across the damaged stretch between them."""
    salvage = Salvage(table)
    try:
        old_cols = [r[1] for r in src.execute(f"PRAGMA table_info({table})")]
    except sqlite3.DatabaseError as exc:
        salvage.error = str(exc)
        return salvage
    new_cols = {r[1] for r in new.execute(f"PRAGMA table_info({table})")}
    cols = [c for c in old_cols if c in new_cols]
    if key not in cols:
        salvage.error = "table missing or unreadable"
        return salvage
    select = f"SELECT {', '.join(cols)} FROM {table} NOT INDEXED"
    insert = f"INSERT OR IGNORE INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
    at = cols.index(key)
    rows: dict[int, tuple] = {}

    def scan(order: str) -> bool:
        try:
            for row in src.execute(f"{select} ORDER BY {key} {order}"):
                rows[row[at]] = row
        except sqlite3.DatabaseError:
            return False
        return True

    if not scan("ASC"):
        low = max(rows, default=0)
        before = set(rows)
        scan("DESC")
        high = min((k for k in rows if k not in before), default=None)
        if high is None:
            high = max(low, _sequence(src, table)) + 1
        for rid in range(low + 1, min(high, low + 1 + MAX_PROBES)):
            try:
                row = src.execute(f"{select} WHERE {key} = ?", (rid,)).fetchone()
            except sqlite3.DatabaseError:
                salvage.unreadable += 1
                continue
            if row is not None:
                rows[rid] = row
    for rid in sorted(rows):
        try:
            new.execute(insert, rows[rid])
            salvage.rows += 1
        except sqlite3.Error:  # a value damage made unstorable (e.g. a NULL in a NOT NULL column)
            salvage.unreadable += 1
    return salvage


def _sequence(src: sqlite3.Connection, table: str) -> int:
    return _old_sequence(src).get(table, 0)


def _old_sequence(src: sqlite3.Connection) -> dict[str, int]:
    try:
        return {name: int(seq) for name, seq in src.execute("SELECT name, seq FROM sqlite_sequence")
                if isinstance(seq, int)}
    except sqlite3.DatabaseError:
        return {}


def _max_log_id(home: Home) -> int:
    """The highest run id with an output file under runs/ (runs/<job>/<id>.log)."""
    top = 0
    try:
        jobs = list(os.scandir(home.runs))
    except OSError:
        return 0
    for job in jobs:
        if not job.is_dir(follow_symlinks=False):
            continue
        try:
            for entry in os.scandir(job.path):
                match = re.fullmatch(r"(\d+)\.log", entry.name)
                if match:
                    top = max(top, int(match.group(1)))
        except OSError:
            continue
    return top
