"""The reads the pages, the live stream and /metrics need beyond the CLI's views.

Each opens state.db through History.opened (links refused, damage named), turns the connection
read-only (PRAGMA query_only) and runs a few short autocommit SELECTs: the daemon never waits
on the dashboard. A home without state.db reads as empty (the web never creates it).
"""

from __future__ import annotations

from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any, Iterator

from cron_scheduler.control import run_view
from cron_scheduler.history import RUN_COLUMNS, History, RunEvent
from cron_scheduler.home import Home
from cron_scheduler.models import ACTIVE, RunStatus, parse_iso, to_iso

RECENT = 20  # runs per job behind the success rate and the sparkline
COUNTED = {RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.TIMEOUT, RunStatus.KILLED, RunStatus.INTERRUPTED}
FINAL = tuple(s.value for s in RunStatus if s.final)


@contextmanager
def reading(home: Home) -> Iterator[History | None]:
    """A read-only History for a `with` block, or None when state.db does not exist yet."""
    if not home.state_db.exists():
        yield None
        return
    with History.opened(home) as history:
        history.conn.execute("PRAGMA query_only = ON")
        yield history


def _runs(history: History, sql: str, args: tuple = ()) -> list[dict[str, Any]]:
    return [run_view(r) for r in history._decode(history.conn.execute(sql, args))]


def job_summaries(home: Home) -> dict[str, dict[str, Any]]:
    """Per job: its last `RECENT` runs (newest first), the last final one, whether one is
    active, the success rate of the counted ones and the durations of the finished ones."""
    with reading(home) as history:
        if history is None:
            return {}
        rows = _runs(history, f"SELECT {', '.join(RUN_COLUMNS)} FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY job_id ORDER BY run_id DESC) "
                              "AS rn FROM runs) WHERE rn <= ? ORDER BY run_id DESC", (RECENT,))
    out: dict[str, dict[str, Any]] = {}
    for row in rows:
        out.setdefault(row["job_id"], {"runs": []})["runs"].append(row)
    for summary in out.values():
        runs = summary["runs"]
        summary["active"] = next((r for r in runs if r["status"] in ACTIVE), None)
        summary["last"] = next((r for r in runs if r["status"] not in ACTIVE), None)
        counted = [r for r in runs if r["status"] in COUNTED]
        ok = sum(r["status"] == RunStatus.SUCCEEDED for r in counted)
        summary["success_rate"] = ok / len(counted) if counted else None
        summary["durations"] = [r["duration"] for r in reversed(runs) if r["duration"] is not None]
    return out


def job_runs(home: Home, job_id: str, limit: int, before: int | None) -> list[dict[str, Any]]:
    """A page of a job's runs, newest first, with ids below `before`."""
    with reading(home) as history:
        if history is None:
            return []
        return _runs(history, "SELECT * FROM runs WHERE job_id = ? AND run_id < ? ORDER BY run_id DESC LIMIT ?",
                     (job_id, before or 2 ** 63 - 1, limit))


def runs_between(home: Home, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """Runs that overlap [start, end]: queued, started or scheduled in it, or still active."""
    with reading(home) as history:
        if history is None:
            return []
        lo, hi = to_iso(start), to_iso(end)
        return _runs(history, "SELECT * FROM runs WHERE (COALESCE(finished_at, '9999') >= ? AND "
                              "COALESCE(queued_at, started_at, scheduled_for) <= ?) OR status IN ('queued', "
                              "'waiting', 'running') ORDER BY run_id LIMIT 20000", (lo, hi))


def events_after(home: Home, after: int, limit: int = 500) -> list[RunEvent]:
    with reading(home) as history:
        return history.events(after, limit) if history is not None else []


def last_event_id(home: Home) -> int:
    with reading(home) as history:
        if history is None:
            return 0
        return history.conn.execute("SELECT COALESCE(MAX(event_id), 0) FROM run_events").fetchone()[0]


def job_alerts(home: Home, job_id: str, limit: int = 20) -> list[dict[str, Any]]:
    """The job's alerts, newest first (the table exists once the alert sender ran)."""
    with reading(home) as history:
        if history is None or not _has_table(history, "alerts"):
            return []
        rows = history.conn.execute("SELECT alert_id, created_at, kind, run_id, channel, status, error "
                                    "FROM alerts WHERE job_id = ? ORDER BY alert_id DESC LIMIT ?", (job_id, limit))
        return [dict(r) for r in rows]


def _has_table(history: History, name: str) -> bool:
    return history.conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                                (name,)).fetchone() is not None


def metric_rows(home: Home) -> dict[str, list]:
    """Everything /metrics shows, in one short read. Counters come from the run_events outbox
    (never pruned), so they survive daemon restarts and history retention."""
    with reading(home) as history:
        if history is None:
            return {}
        q = history.conn.execute
        final = ", ".join(f"'{s}'" for s in FINAL)
        out = {
            # a final status never changes: one such event per run
            "outcomes": q(f"SELECT job_id, new_status, COUNT(*) FROM run_events WHERE new_status IN ({final}) "
                          "GROUP BY job_id, new_status").fetchall(),
            "missed": q("SELECT e.job_id, SUM(COALESCE(r.missed_count, 1)) FROM run_events e LEFT JOIN runs r "
                        "ON r.run_id = e.run_id WHERE e.new_status = 'missed' GROUP BY e.job_id").fetchall(),
            "last_success": q("SELECT job_id, MAX(at) FROM run_events WHERE new_status = 'succeeded' "
                              "GROUP BY job_id").fetchall(),
            "active": q("SELECT status, COUNT(*) FROM runs WHERE status IN ('queued', 'waiting', 'running') "
                        "GROUP BY status").fetchall(),
            "timings": q("SELECT job_id, scheduled_for, started_at, finished_at, trigger FROM runs "
                         "WHERE started_at IS NOT NULL").fetchall(),
            "alerts": (q("SELECT channel, status, COUNT(*) FROM alerts GROUP BY channel, status").fetchall()
                       if _has_table(history, "alerts") else []),
        }
    return out


def seconds_between(a: str | None, b: str | None) -> float | None:
    first, second = parse_iso(a), parse_iso(b)
    return (second - first).total_seconds() if first and second else None


def window(hours: float, now: datetime) -> tuple[datetime, datetime]:
    return now - timedelta(hours=hours), now
