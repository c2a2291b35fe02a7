"""state.db: run records, per-job schedule cursors, waves and CLI requests. The only module
that touches SQLite.

One row per run (job x slot x attempt, or one manual trigger). A timer slot is claimed by
inserting its row (unique on job, slot, attempt) before any process starts, so a slot can
never be launched twice, across restarts and crashes.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sqlite3
import stat
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Iterator

from cron_scheduler.errors import (CorruptRun, CronSchedulerError, OperationalError, StateDamaged,
                                   StateWriteError, UnknownRun)
from cron_scheduler.home import Home
from cron_scheduler.models import (ACTIVE, UTC, RunStatus, Trigger, check_transition, parse_iso, sql_list,
                                   to_iso, utcnow, validate_job_id)

log = logging.getLogger("cron_scheduler")

CLI_BUSY_TIMEOUT = 30.0  # seconds a write waits for another writer (the daemon sets its own)
SQLITE_BUSY, SQLITE_LOCKED, SQLITE_CORRUPT, SQLITE_NOTADB = 5, 6, 11, 26
SIDE_FILES = ("-wal", "-shm", "-journal")

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
    missed_count INTEGER, missed_until TEXT,
    memory_peak_kb INTEGER,
    handle TEXT
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
CREATE TABLE IF NOT EXISTS run_events (
    event_id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id INTEGER NOT NULL,
    job_id TEXT NOT NULL,
    old_status TEXT,
    new_status TEXT NOT NULL,
    at TEXT NOT NULL,
    reason TEXT
);
CREATE INDEX IF NOT EXISTS run_events_run ON run_events(run_id);
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
    memory_peak_kb: int | None = None  # its cgroup's memory.peak (runs with resource limits)
    handle: str | None = None  # what its pool returned at its start (JSON, opaque: Pool.recover)


RUN_COLUMNS = tuple(f.name for f in fields(Run))
_ACTIVE_SQL = sql_list(ACTIVE)  # the same list as the runs_active index
_QUEUED = RunStatus.QUEUED.value
_UNSETTLED_SQL = sql_list(ACTIVE | {RunStatus.SKIPPED, RunStatus.MISSED})  # no outcome of the job itself


_INSTANTS = ("scheduled_for", "slot", "not_before", "queued_at", "started_at", "finished_at", "missed_until")
_INTEGERS = ("wave", "exit_code", "output_bytes", "max_rss_kb", "missed_count", "pid_start", "memory_peak_kb")
ADDED_COLUMNS = (("runs", "memory_peak_kb", "INTEGER"),  # added after state.db files were made
                 ("runs", "handle", "TEXT"))


def _run(row: sqlite3.Row) -> Run:
    """Decode a run row; CorruptRun names the run and the field when it holds no valid run
    (a hand-edited or damaged row must not stop the daemon: see History._decode). A row read
    again unchanged (the queue, read at every pass) is decoded once: Run is immutable."""
    return _decoded(tuple(row), tuple(row.keys()))


@functools.lru_cache(maxsize=512)
def _decoded(row: tuple, keys: tuple[str, ...]) -> Run:
    values = dict(zip(keys, row))
    try:
        values["status"], values["trigger"] = RunStatus(values["status"]), Trigger(values["trigger"])
        validate_job_id(values["job_id"])
        for key in _INSTANTS:
            if values[key] is not None or key == "scheduled_for":
                _check(key, type(values[key]) is str and parse_iso(values[key]).astimezone(UTC))
        for key in _INTEGERS:
            _check(key, values[key] is None or type(values[key]) is int)
        _check("attempt", type(values["attempt"]) is int and 1 <= values["attempt"] <= 1_000_000)
        _check("priority", type(values["priority"]) is int)
        _check("pid", values["pid"] is None or (type(values["pid"]) is int and 0 < values["pid"] < 2**31))
        _check("handle", values["handle"] is None or type(values["handle"]) is str)
    except (ValueError, TypeError, OverflowError, CronSchedulerError) as exc:
        raise CorruptRun(f"run {values.get('run_id')} in state.db is unreadable: {exc}") from None
    if values["handle"] is None and values["pid"] is not None:  # written before the handle column:
        values["handle"] = _old_handle(values)
    return Run(**values)


def _old_handle(values: dict[str, Any]) -> str:
    """The handle of a run recorded before the handle column: the local pool's handle, then
    spread over the columns pid, pid_start and marker."""
    return json.dumps({key: values[key] for key in ("marker", "pid", "pid_start")}, sort_keys=True)


def _add_columns(conn: sqlite3.Connection) -> None:
    """Bring a state.db made before a column existed up to SCHEMA (its rows get NULL)."""
    for table, column, kind in ADDED_COLUMNS:
        if column not in {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")


def _check(key: str, ok: Any) -> None:
    if not ok:
        raise ValueError(f"bad {key}")


@dataclass(frozen=True)
class RunEvent:
    """One status change of a run (the outbox read by alerts, metrics and the dashboard)."""
    event_id: int
    run_id: int
    job_id: str
    old_status: RunStatus | None
    new_status: RunStatus
    at: str
    reason: str | None


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
        self._reported: set[int] = set()  # unreadable run rows already reported
        self.repairs = False  # the daemon closes unreadable active rows (see _isolate)
        self._mark: tuple[int, int] | None = None
        self.busy_timeout = CLI_BUSY_TIMEOUT
        self._on_demand = False  # commits fsynced only where a claim needs it (sync_on_claims)
        self._must_sync = False  # the open transaction claimed a run
        self._full = False  # the open transaction commits with FULL (transaction(durable=True))
        self._after_commit: list = []  # what to do once the open transaction has committed

    # --- opening -----------------------------------------------------------------------

    @classmethod
    def open(cls, home: Home, check: bool = False) -> "History":
        """Open (create) state.db. A symbolic link at state.db or its -wal/-shm/-journal is
        refused, never followed. check: run quick_check first (the daemon, at start), so a
        damaged database is one clear error instead of a failure somewhere later."""
        home.ensure()
        path = home.state_db
        checked = open_db_file(path)
        try:
            conn = sqlite3.connect(path, timeout=CLI_BUSY_TIMEOUT, isolation_level=None)
            try:
                _same_file(checked, path)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=FULL")  # a commit survives power loss (README)
                if check:
                    _quick_check(conn, path)
                conn.executescript(SCHEMA)
                _add_columns(conn)
            except BaseException:
                conn.close()
                raise
        except sqlite3.DatabaseError as exc:
            raise state_error(path, exc) from None
        conn.row_factory = sqlite3.Row
        return cls(conn, path)

    def set_busy_timeout(self, seconds: float) -> None:
        """How long a write waits for another process's write lock before failing (the
        daemon keeps this short: waiting stalls the supervision of its runs)."""
        self.conn.execute(f"PRAGMA busy_timeout = {int(seconds * 1000)}")
        self.busy_timeout = seconds

    @classmethod
    @contextmanager
    def opened(cls, home: Home) -> Iterator["History"]:
        """Open for the length of a `with` block (the CLI's reads and requests)."""
        history = cls.open(home)
        try:
            yield history
        except sqlite3.DatabaseError as exc:  # damaged pages met by a read: one clear line
            raise state_error(history.path, exc) from None
        finally:
            history.close()

    def close(self) -> None:
        self.conn.close()

    def sync_on_claims(self) -> None:
        """The daemon's commits: not fsynced one by one (synchronous=NORMAL, which a crash
        of the process never loses, only a power loss may), except a transaction that claims
        a run (`claim`): a process may start on the strength of it. Such a transaction is
        opened durable (FULL: its COMMIT fsyncs the WAL, and with it every commit before it);
        a claim in any other transaction is followed by a FULL commit of its own."""
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self._on_demand = True

    def claim(self, run_id: int, **values: Any) -> None:
        """update_run() for a run's claim (its marker and log path before its process
        exists): on disk, whatever the sync mode, once the enclosing transaction is committed."""
        with self.transaction():
            self.update_run(run_id, **values)
            self._must_sync = self._on_demand and not self._full

    def _sync(self) -> None:
        """Make every commit so far durable: a FULL commit of the smallest write there is
        (the header's user_version, rewritten with its own value) fsyncs the WAL."""
        self._must_sync = False
        self.conn.execute("PRAGMA synchronous=FULL")
        try:
            version = self.conn.execute("PRAGMA user_version").fetchone()[0]
            self.conn.execute(f"PRAGMA user_version = {int(version)}")
        finally:
            self.conn.execute("PRAGMA synchronous=NORMAL")

    @contextmanager
    def transaction(self, durable: bool = False) -> Iterator[None]:
        """One write transaction; a nested one joins the enclosing transaction. durable: it
        commits with FULL whatever the sync mode (the daemon's transactions that claim runs:
        fsynced in their own COMMIT, under the one write lock they hold)."""
        if self.conn.in_transaction:
            yield
            return
        full = durable and self._on_demand
        try:
            if full:
                self.conn.execute("PRAGMA synchronous=FULL")
                self._full = True
            self.conn.execute("BEGIN IMMEDIATE")
            yield
            self.conn.execute("COMMIT")
            if self._must_sync:
                self._sync()
        except sqlite3.OperationalError as exc:  # disk full, I/O error, locked for too long
            self._rollback()
            if _code(exc) in (SQLITE_BUSY, SQLITE_LOCKED):
                raise StateWriteError(
                    f"cannot write {self.path or 'state.db'}: locked by another process for more than "
                    f"{self.busy_timeout:g}s (an open write transaction, e.g. an sqlite3 shell)") from None
            raise StateWriteError(f"cannot write {self.path or 'state.db'}: {exc}") from None
        except BaseException:
            self._rollback()
            raise
        finally:
            if full:
                self._full = False
                self.conn.execute("PRAGMA synchronous=NORMAL")
        done, self._after_commit = self._after_commit, []
        for action in done:
            action()

    def after_commit(self, action) -> None:
        """Call action() once the open transaction has committed (never if it rolls back):
        deleting files that rows being deleted name."""
        self._after_commit.append(action)

    def _rollback(self) -> None:
        self._must_sync = False
        self._after_commit.clear()
        if self.conn.in_transaction:  # a failed COMMIT leaves the transaction open
            self.conn.execute("ROLLBACK")

    # --- runs ----------------------------------------------------------------------------

    def add_run(self, status: RunStatus, at: str, **values: Any) -> int | None:
        """Create a run in `status` and its first event; returns its id, or None when its
        (job, slot, attempt) is claimed already (nothing is written then)."""
        check_transition(None, status)
        keys = _columns(values)
        sql = (f"INSERT OR IGNORE INTO runs (status, {', '.join(keys)}) "
               f"VALUES (?, {', '.join('?' * len(keys))})")
        with self.transaction():
            cur = self.conn.execute(sql, [status.value] + [values[k] for k in keys])
            if not cur.rowcount:
                return None
            run_id = cur.lastrowid
            self._event(run_id, values["job_id"], None, status, at, values.get("reason"))
        return run_id

    def transition(self, run_id: int, status: RunStatus, at: str, was: Run | None = None,
                   **values: Any) -> Run:
        """The one place a run's status changes: checks the move is legal (IllegalTransition
        if not), updates the row with `values` and appends a run_events row, in one
        transaction. Returns the run as it was before: `was` when the caller just read it
        (the daemon is the only writer of statuses), else read here."""
        keys = _columns(values)
        with self.transaction():
            run = was if was is not None and was.run_id == run_id else self.get_run(run_id)
            check_transition(run.status, status)
            self.conn.execute(f"UPDATE runs SET {', '.join(f'{k} = ?' for k in ('status', *keys))} "
                              "WHERE run_id = ?", [status.value] + [values[k] for k in keys] + [run_id])
            self._event(run_id, run.job_id, run.status, status, at, values.get("reason", run.reason))
        return run

    def _event(self, run_id: int, job_id: str, old: RunStatus | None, new: RunStatus, at: str,
               reason: str | None) -> None:
        self.conn.execute("INSERT INTO run_events (run_id, job_id, old_status, new_status, at, reason) "
                          "VALUES (?, ?, ?, ?, ?, ?)", (run_id, job_id, old and old.value, new.value, at, reason))

    def update_run(self, run_id: int, **values: Any) -> None:
        """Fields of a run other than its status (pid, start time): status goes through
        transition()."""
        keys = _columns(values)
        self.conn.execute(f"UPDATE runs SET {', '.join(f'{k} = ?' for k in keys)} WHERE run_id = ?",
                          [values[k] for k in keys] + [run_id])

    def events(self, after: int = 0, limit: int = 1000) -> list[RunEvent]:
        """Run events with an id above `after`, oldest first."""
        return [RunEvent(r[0], r[1], r[2], r[3] and RunStatus(r[3]), RunStatus(r[4]), r[5], r[6])
                for r in self.conn.execute(
                    "SELECT event_id, run_id, job_id, old_status, new_status, at, reason FROM run_events "
                    "WHERE event_id > ? ORDER BY event_id LIMIT ?", (after, limit))]

    def _decode(self, rows) -> list[Run]:
        """Decode run rows, leaving out (and isolating) the ones that hold no valid run."""
        runs = []
        for row in rows:
            try:
                runs.append(_run(row))
            except CorruptRun as exc:
                self._isolate(row, exc)
        return runs

    def _isolate(self, row: sqlite3.Row, exc: CorruptRun) -> None:
        """Report an unreadable run row once per process; the daemon (`repairs`) also closes
        it as interrupted when it claims to be active, so that it never blocks a job or --once."""
        run_id = row["run_id"]
        if run_id in self._reported:
            return
        self._reported.add(run_id)
        log.error("%s; left out", exc)
        if self.repairs and row["status"] in {s.value for s in ACTIVE}:
            with self.transaction():
                self.conn.execute("UPDATE runs SET status = ?, reason = ? WHERE run_id = ?",
                                  (RunStatus.INTERRUPTED.value, str(exc), run_id))
                self.conn.execute("INSERT INTO run_events (run_id, job_id, old_status, new_status, at, reason) "
                                  "VALUES (?, ?, ?, ?, ?, ?)", (run_id, str(row["job_id"]), str(row["status"]),
                                                                RunStatus.INTERRUPTED.value, to_iso(utcnow()), str(exc)))

    def get_run(self, run_id: int) -> Run:
        row = self.conn.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:
            raise UnknownRun(f"unknown run id: {run_id}")
        try:
            return _run(row)
        except CorruptRun as exc:
            self._isolate(row, exc)
            raise

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
        return self._decode(self.conn.execute(sql, args))

    def with_status(self, *statuses: str, job_id: str | None = None) -> list[Run]:
        """Runs in these statuses (the active ones are indexed), oldest first."""
        sql = f"SELECT * FROM runs WHERE status IN ({', '.join('?' * len(statuses))})"
        args: list[Any] = [RunStatus(s).value for s in statuses]
        if job_id is not None:
            sql += " AND job_id = ?"
            args.append(job_id)
        return self._decode(self.conn.execute(sql + " ORDER BY run_id", args))

    def active_runs(self) -> list[tuple[int, int | None]]:
        """(run id, wave) of every queued, waiting or running run."""
        return self.conn.execute(f"SELECT run_id, wave FROM runs WHERE status IN {_ACTIVE_SQL}").fetchall()

    def job_ids(self, *statuses: str) -> set[str]:
        """Jobs with a run in one of these statuses."""
        return {r[0] for r in self.conn.execute(
            f"SELECT DISTINCT job_id FROM runs WHERE status IN ({', '.join('?' * len(statuses))})",
            [RunStatus(s).value for s in statuses])}

    def queued(self, now: str, limit: int, offset: int = 0) -> list[Run]:
        """Queued runs whose time has come, in start order: priority (higher first), then
        scheduled time, then age."""
        return self._decode(self.conn.execute(
            f"SELECT * FROM runs WHERE status = '{_QUEUED}' AND (not_before IS NULL OR not_before <= ?) "
            "ORDER BY priority DESC, scheduled_for, run_id LIMIT ? OFFSET ?", (now, limit, offset)))

    def earliest_retry(self, after: str = "") -> str | None:
        """The earliest not-before time of a queued run, later than `after`."""
        return self.conn.execute(f"SELECT MIN(not_before) FROM runs WHERE status = '{_QUEUED}' "
                                 "AND not_before IS NOT NULL AND not_before > ?", (after,)).fetchone()[0]

    def has_active(self) -> bool:
        return self.conn.execute(f"SELECT 1 FROM runs WHERE status IN {_ACTIVE_SQL} LIMIT 1").fetchone() is not None

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
        return [r[0] for r in self.conn.execute(f"SELECT run_id FROM runs WHERE status = '{RunStatus.RUNNING.value}' ORDER BY run_id")]

    def last_run_id(self) -> int:
        return self.conn.execute("SELECT COALESCE(MAX(run_id), 0) FROM runs").fetchone()[0]

    def run_ids(self, job_id: str) -> set[int]:
        return {r[0] for r in self.conn.execute("SELECT run_id FROM runs WHERE job_id = ?", (job_id,))}

    def latest_final(self, job_id: str) -> Run | None:
        row = self.conn.execute(
            f"SELECT * FROM runs WHERE job_id = ? AND status NOT IN {_UNSETTLED_SQL} "
            "ORDER BY run_id DESC LIMIT 1", (job_id,)).fetchone()
        decoded = self._decode([row]) if row else []
        return decoded[0] if decoded else None

    def wave_runs(self, wave: int) -> list[Run]:
        return self._decode(self.conn.execute("SELECT * FROM runs WHERE wave = ? ORDER BY run_id", (wave,)))

    def prune(self, job_id: str, keep: int) -> list[str]:
        """Delete all but the newest `keep` final runs of a job; returns their output paths."""
        rows = self.conn.execute(
            f"SELECT run_id, output_path FROM runs WHERE job_id = ? AND status NOT IN {_ACTIVE_SQL} "
            "ORDER BY run_id DESC LIMIT -1 OFFSET ?", (job_id, keep)).fetchall()
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
        return [Request(r[0], r[1], _json_object(r[2]), r[3]) for r in self.conn.execute(
            "SELECT id, kind, args, created_at FROM requests WHERE done_at IS NULL ORDER BY id")]

    def finish_request(self, request_id: int, done_at: str, result: str) -> None:
        self.conn.execute("UPDATE requests SET done_at = ?, result = ? WHERE id = ?", (done_at, result, request_id))

    def request_result(self, request_id: int) -> str | None:
        row = self.conn.execute("SELECT result FROM requests WHERE id = ?", (request_id,)).fetchone()
        return row[0] if row else None


def _columns(values: dict[str, Any]) -> list[str]:
    """The run columns named by `values`: an unknown key (a typo) is a bug, not a no-op."""
    unknown = set(values) - set(RUN_COLUMNS) or {"status"} & set(values)
    if unknown:
        raise ValueError(f"not a settable run column: {sorted(unknown)[0]!r}")
    return list(values)


def _json_object(text: Any) -> dict[str, Any]:
    """A request's arguments; a malformed row gives {} (its handler then reports it)."""
    try:
        value = json.loads(text)
    except (TypeError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


# --- the state.db file: links refused, damage named -----------------------------------------

def open_db_file(path: Path) -> tuple[int, int]:
    """Create (0600) or check state.db without following a link, after checking that none of
    its side files is a link either; chmod through a descriptor. SQLite itself follows links,
    so nothing planted at these names may reach it. Returns the file's (device, inode).

    The check uses an O_PATH descriptor: closing an ordinary descriptor of the file would drop
    every POSIX lock this process holds on it, those of an open SQLite connection included."""
    for name in [path, *(Path(f"{path}{suffix}") for suffix in SIDE_FILES)]:
        try:
            st = os.lstat(name)
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise OperationalError(f"cannot open {name}: {exc.strerror}") from None
        if not stat.S_ISREG(st.st_mode):
            what = "a symbolic link" if stat.S_ISLNK(st.st_mode) else "not a regular file"
            raise OperationalError(f"refusing {name}: it is {what} (remove it; state.db and its "
                                   f"side files must be regular files in the home)")
    try:
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600))
        except FileExistsError:
            pass
        fd = os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise OperationalError(f"cannot open {path}: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OperationalError(f"refusing {path}: it is not a regular file")
        if stat.S_IMODE(st.st_mode) != 0o600:
            os.chmod(f"/proc/self/fd/{fd}", 0o600)  # the file the descriptor holds, never a link
        return st.st_dev, st.st_ino
    except OSError as exc:
        raise OperationalError(f"cannot chmod {path}: {exc.strerror}") from None
    finally:
        os.close(fd)


def _same_file(checked: tuple[int, int], path: Path) -> None:
    """The file SQLite opened is the one checked (not swapped for a link in between)."""
    now = os.lstat(path)
    if checked != (now.st_dev, now.st_ino):
        raise OperationalError(f"refusing {path}: it was replaced while being opened")


def _code(exc: sqlite3.Error) -> int:
    return (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF


def is_damage(exc: sqlite3.Error) -> bool:
    if _code(exc) in (SQLITE_CORRUPT, SQLITE_NOTADB):
        return True
    text = str(exc)
    return "malformed" in text or "not a database" in text


def state_error(path: Path | None, exc: sqlite3.Error) -> OperationalError:
    """An SQLite error as the project's one-line error: damage names the remedy."""
    if is_damage(exc):
        return StateDamaged(damaged_message(path, str(exc)))
    return OperationalError(f"cannot use {path or 'state.db'}: {exc}")


def damaged_message(path: Path | None, detail: str) -> str:
    return (f"{path or 'state.db'} is damaged ({detail}); jobs.json is not affected: run "
            f"`cron-scheduler doctor --repair` with the daemon stopped to set it aside and rebuild it")


def _quick_check(conn: sqlite3.Connection, path: Path) -> None:
    rows = [r[0] for r in conn.execute("PRAGMA quick_check(5)")]
    if rows != ["ok"]:
        raise StateDamaged(damaged_message(path, rows[0] if rows else "quick_check failed"))
