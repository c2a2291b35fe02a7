"""state.db: run records, per-job schedule cursors, waves and CLI requests. The only module
that touches SQLite.

One row per run (job x slot x attempt, or one manual trigger). A timer slot is claimed by
inserting its row (unique on job, slot, attempt) before any process starts, so a slot can
never be launched twice, across restarts and crashes.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Iterator

from cron_scheduler.errors import OperationalError, StateWriteError, UnknownRun
from cron_scheduler.home import Home

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT NOT NULL,
    slot TEXT,
    scheduled_for TEXT NOT NULL,
    trigger TEXT NOT NULL,
    wave INTEGER,
    attempt INTEGER NOT NULL DEFAULT 1,
    status TEXT NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0,
    not_before TEXT,
    queued_at TEXT, started_at TEXT, finished_at TEXT,
    pid INTEGER, pid_start INTEGER, marker TEXT,
    exit_code INTEGER, signal TEXT, reason TEXT,
    output_path TEXT, output_bytes INTEGER, truncated INTEGER NOT NULL DEFAULT 0,
    cpu_user REAL, cpu_sys REAL, max_rss_kb INTEGER,
    missed_count INTEGER, missed_until TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS runs_slot ON runs(job_id, slot, attempt) WHERE slot IS NOT NULL;
CREATE INDEX IF NOT EXISTS runs_job ON runs(job_id, run_id);
CREATE INDEX IF NOT EXISTS runs_active ON runs(status) WHERE status IN ('queued', 'waiting', 'running');
CREATE INDEX IF NOT EXISTS runs_wave ON runs(wave) WHERE wave IS NOT NULL;
CREATE TABLE IF NOT EXISTS job_state (
    job_id TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    next_slot TEXT
);
CREATE TABLE IF NOT EXISTS waves (
    wave_id INTEGER PRIMARY KEY AUTOINCREMENT,
    trigger TEXT NOT NULL,
    created_at TEXT NOT NULL,
    members TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS requests (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    args TEXT NOT NULL,
    created_at TEXT NOT NULL,
    done_at TEXT,
    result TEXT
);
"""


@dataclass(frozen=True)
class Run:
    run_id: int
    job_id: str
    slot: str | None
    scheduled_for: str
    trigger: str
    wave: int | None
    attempt: int
    status: str
    priority: int
    not_before: str | None
    queued_at: str | None
    started_at: str | None
    finished_at: str | None
    pid: int | None
    pid_start: int | None
    marker: str | None
    exit_code: int | None
    signal: str | None
    reason: str | None
    output_path: str | None
    output_bytes: int | None
    truncated: int
    cpu_user: float | None
    cpu_sys: float | None
    max_rss_kb: int | None
    missed_count: int | None
    missed_until: str | None


RUN_COLUMNS = tuple(f.name for f in fields(Run))
ACTIVE = ("queued", "waiting", "running")


@dataclass(frozen=True)
class Request:
    id: int
    kind: str
    args: dict[str, Any]
    created_at: str


class History:
    def __init__(self, conn: sqlite3.Connection, path: Path | None = None):
        self.conn = conn
        self.path = path
        self._data_version: int | None = None
        self._mark: tuple[int, int] | None = None

    # --- opening -----------------------------------------------------------------------

    @classmethod
    def open(cls, home: Home) -> "History":
        home.ensure()
        try:
            conn = sqlite3.connect(home.state_db, timeout=30, isolation_level=None)
            home.state_db.chmod(0o600)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.executescript(SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise OperationalError(f"cannot open {home.state_db}: {exc}") from None
        conn.row_factory = sqlite3.Row
        return cls(conn, home.state_db)

    @classmethod
    @contextmanager
    def opened(cls, home: Home) -> Iterator["History"]:
        """Open for the length of a `with` block (the CLI's reads and requests)."""
        history = cls.open(home)
        try:
            yield history
        finally:
            history.close()

    def close(self) -> None:
        self.conn.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One write transaction; a nested one joins the enclosing transaction."""
        if self.conn.in_transaction:
            yield
            return
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            yield
            self.conn.execute("COMMIT")
        except sqlite3.OperationalError as exc:  # disk full, I/O error, locked for too long
            self._rollback()
            raise StateWriteError(f"cannot write {self.path or 'state.db'}: {exc}") from None
        except BaseException:
            self._rollback()
            raise

    def _rollback(self) -> None:
        if self.conn.in_transaction:  # a failed COMMIT leaves the transaction open
            self.conn.execute("ROLLBACK")

    # --- runs ----------------------------------------------------------------------------

    def insert_run(self, **values: Any) -> int | None:
        """Insert a run row; returns its id, or None when its (job, slot, attempt) is claimed."""
        keys = [k for k in values if k in RUN_COLUMNS]
        sql = f"INSERT OR IGNORE INTO runs ({', '.join(keys)}) VALUES ({', '.join('?' * len(keys))})"
        cur = self.conn.execute(sql, [values[k] for k in keys])
        return cur.lastrowid if cur.rowcount else None

    def update_run(self, run_id: int, **values: Any) -> None:
        keys = [k for k in values if k in RUN_COLUMNS]
        self.conn.execute(f"UPDATE runs SET {', '.join(f'{k} = ?' for k in keys)} WHERE run_id = ?",
                          [values[k] for k in keys] + [run_id])

    def get_run(self, run_id: int) -> Run:
        row = self.conn.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:
            raise UnknownRun(f"unknown run id: {run_id}")
        return Run(**dict(row))

    def runs(self, job_id: str | None = None, status: str | None = None, limit: int | None = 50) -> list[Run]:
        """Newest first."""
        where, args = [], []
        if job_id is not None:
            where.append("job_id = ?")
            args.append(job_id)
        if status is not None:
            where.append("status = ?")
            args.append(status)
        sql = "SELECT * FROM runs" + (" WHERE " + " AND ".join(where) if where else "")
        sql += " ORDER BY run_id DESC" + (f" LIMIT {int(limit)}" if limit else "")
        return [Run(**dict(r)) for r in self.conn.execute(sql, args)]

    def with_status(self, *statuses: str, job_id: str | None = None) -> list[Run]:
        """Runs in these statuses (the active ones are indexed), oldest first."""
        sql = f"SELECT * FROM runs WHERE status IN ({', '.join('?' * len(statuses))})"
        args: list[Any] = list(statuses)
        if job_id is not None:
            sql += " AND job_id = ?"
            args.append(job_id)
        return [Run(**dict(r)) for r in self.conn.execute(sql + " ORDER BY run_id", args)]

    def active_runs(self) -> list[tuple[int, int | None]]:
        """(run id, wave) of every queued, waiting or running run."""
        return self.conn.execute("SELECT run_id, wave FROM runs WHERE status IN "
                                 "('queued', 'waiting', 'running')").fetchall()

    def job_ids(self, *statuses: str) -> set[str]:
        """Jobs with a run in one of these statuses."""
        return {r[0] for r in self.conn.execute(
            f"SELECT DISTINCT job_id FROM runs WHERE status IN ({', '.join('?' * len(statuses))})", statuses)}

    def queued(self, now: str, limit: int, offset: int = 0) -> list[Run]:
        """Queued runs whose time has come, in start order: priority (higher first), then
        scheduled time, then age."""
        return [Run(**dict(r)) for r in self.conn.execute(
            "SELECT * FROM runs WHERE status = 'queued' AND (not_before IS NULL OR not_before <= ?) "
            "ORDER BY priority DESC, scheduled_for, run_id LIMIT ? OFFSET ?", (now, limit, offset))]

    def earliest_retry(self, after: str = "") -> str | None:
        """The earliest not-before time of a queued run, later than `after`."""
        return self.conn.execute("SELECT MIN(not_before) FROM runs WHERE status = 'queued' "
                                 "AND not_before IS NOT NULL AND not_before > ?", (after,)).fetchone()[0]

    def has_active(self) -> bool:
        return self.conn.execute("SELECT 1 FROM runs WHERE status IN ('queued', 'waiting', 'running') "
                                 "LIMIT 1").fetchone() is not None

    def changed(self) -> bool:
        """Whether state.db changed since the last call, through this connection or another."""
        mark = (self.conn.total_changes, self.conn.execute("PRAGMA data_version").fetchone()[0])
        changed, self._mark = mark != self._mark, mark
        return changed

    def others_wrote(self) -> bool:
        """Whether another connection (the CLI) committed since the last call."""
        version = self.conn.execute("PRAGMA data_version").fetchone()[0]
        changed, self._data_version = version != self._data_version, version
        return changed

    def running_ids(self) -> list[int]:
        return [r[0] for r in self.conn.execute("SELECT run_id FROM runs WHERE status = 'running' ORDER BY run_id")]

    def latest_final(self, job_id: str) -> Run | None:
        row = self.conn.execute(
            "SELECT * FROM runs WHERE job_id = ? AND status NOT IN ('queued', 'waiting', 'running', "
            "'skipped', 'missed') ORDER BY run_id DESC LIMIT 1", (job_id,)).fetchone()
        return Run(**dict(row)) if row else None

    def wave_runs(self, wave: int) -> list[Run]:
        return [Run(**dict(r)) for r in self.conn.execute(
            "SELECT * FROM runs WHERE wave = ? ORDER BY run_id", (wave,))]

    def prune(self, job_id: str, keep: int) -> list[str]:
        """Delete all but the newest `keep` final runs of a job; returns their output paths."""
        rows = self.conn.execute(
            "SELECT run_id, output_path FROM runs WHERE job_id = ? AND status NOT IN "
            "('queued', 'waiting', 'running') ORDER BY run_id DESC LIMIT -1 OFFSET ?", (job_id, keep)).fetchall()
        if rows:
            self.conn.executemany("DELETE FROM runs WHERE run_id = ?", [(r[0],) for r in rows])
        return [r[1] for r in rows if r[1]]

    # --- waves ---------------------------------------------------------------------------

    def new_wave(self, trigger: str, created_at: str, members: list[str]) -> int:
        cur = self.conn.execute("INSERT INTO waves (trigger, created_at, members) VALUES (?, ?, ?)",
                                (trigger, created_at, json.dumps(members)))
        return cur.lastrowid

    def wave_members(self, wave: int) -> list[str]:
        row = self.conn.execute("SELECT members FROM waves WHERE wave_id = ?", (wave,)).fetchone()
        return json.loads(row[0]) if row else []

    # --- schedule cursors ----------------------------------------------------------------

    def job_states(self) -> dict[str, tuple[str, str | None]]:
        return {r[0]: (r[1], r[2]) for r in self.conn.execute("SELECT job_id, fingerprint, next_slot FROM job_state")}

    def set_job_state(self, job_id: str, fingerprint: str, next_slot: str | None) -> None:
        self.conn.execute("INSERT INTO job_state (job_id, fingerprint, next_slot) VALUES (?, ?, ?) "
                          "ON CONFLICT(job_id) DO UPDATE SET fingerprint = excluded.fingerprint, "
                          "next_slot = excluded.next_slot", (job_id, fingerprint, next_slot))

    def drop_job_state(self, job_id: str) -> None:
        self.conn.execute("DELETE FROM job_state WHERE job_id = ?", (job_id,))

    # --- CLI requests --------------------------------------------------------------------

    def add_request(self, kind: str, args: dict[str, Any], created_at: str) -> int:
        cur = self.conn.execute("INSERT INTO requests (kind, args, created_at) VALUES (?, ?, ?)",
                                (kind, json.dumps(args), created_at))
        return cur.lastrowid

    def pending_requests(self) -> list[Request]:
        return [Request(r[0], r[1], json.loads(r[2]), r[3]) for r in self.conn.execute(
            "SELECT id, kind, args, created_at FROM requests WHERE done_at IS NULL ORDER BY id")]

    def finish_request(self, request_id: int, done_at: str, result: str) -> None:
        self.conn.execute("UPDATE requests SET done_at = ?, result = ? WHERE id = ?", (done_at, result, request_id))

    def request_result(self, request_id: int) -> str | None:
        row = self.conn.execute("SELECT result FROM requests WHERE id = ?", (request_id,)).fetchone()
        return row[0] if row else None
