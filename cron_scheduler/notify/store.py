"""The `alerts` table of state.db (every alert: pending, sent, failed, suppressed) and the
sender's small key/value state (its outbox cursor, whether the daemon stopped cleanly).

It works through a History connection (History.open: no links followed, WAL, one clear error
for a damaged file); the sender process has its own connection, so the daemon never waits on it
for longer than one short write.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cron_scheduler.history import History
from cron_scheduler.models import ACTIVE, parse_iso, to_iso

SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    alert_id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    job_id TEXT,
    run_id INTEGER,
    event_id INTEGER,
    channel TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    payload TEXT NOT NULL,
    created_at TEXT NOT NULL,
    next_attempt TEXT,
    sent_at TEXT,
    summarized INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS alerts_pending ON alerts(status) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS alerts_job ON alerts(job_id, kind, alert_id);
CREATE INDEX IF NOT EXISTS alerts_channel ON alerts(channel, created_at);
CREATE TABLE IF NOT EXISTS notify_state (key TEXT PRIMARY KEY, value TEXT);
"""

PENDING, SENT, FAILED, SUPPRESSED = "pending", "sent", "failed", "suppressed"


@dataclass(frozen=True)
class Alert:
    alert_id: int
    kind: str
    job_id: str | None
    run_id: int | None
    event_id: int | None
    channel: str
    status: str
    attempts: int
    error: str | None
    payload: dict[str, Any]
    created_at: str
    next_attempt: str | None
    sent_at: str | None
    summarized: int
    wave: int | None = None  # of the alert's run (due() only): the alerts of a wave go out as one digest


def _alert(row) -> Alert:
    values = dict(row)
    try:
        values["payload"] = json.loads(values["payload"])
    except (TypeError, ValueError):
        values["payload"] = {}
    return Alert(**values)


class AlertStore:
    def __init__(self, history: History):
        self.history = history
        self.conn = history.conn
        self.conn.executescript(SCHEMA)

    def transaction(self):
        return self.history.transaction()

    # --- state ------------------------------------------------------------------------------

    def get(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM notify_state WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def put(self, key: str, value: str | None) -> None:
        self.conn.execute("INSERT INTO notify_state (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE "
                          "SET value = excluded.value", (key, value))

    def last_event_id(self, before: str | None = None) -> int:
        """The newest run event (recorded before the instant `before`, if given)."""
        return self.conn.execute("SELECT COALESCE(MAX(event_id), 0) FROM run_events WHERE at < ?",
                                 (before or "9999",)).fetchone()[0]

    # --- alerts -----------------------------------------------------------------------------

    def add(self, kind: str, channel: str, payload: dict[str, Any], now: datetime, *, job_id: str | None = None,
            run_id: int | None = None, event_id: int | None = None, status: str = PENDING,
            error: str | None = None) -> int:
        cur = self.conn.execute(
            "INSERT INTO alerts (kind, job_id, run_id, event_id, channel, status, error, payload, created_at, "
            "next_attempt) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (kind, job_id, run_id, event_id, channel, status, error, json.dumps(payload), to_iso(now),
             to_iso(now) if status == PENDING else None))
        return cur.lastrowid

    def due(self, now: datetime) -> list[Alert]:
        """Pending alerts whose time came, oldest first, each with the wave of its run."""
        return [_alert(r) for r in self.conn.execute(
            "SELECT a.*, r.wave AS wave FROM alerts a LEFT JOIN runs r ON r.run_id = a.run_id "
            "WHERE a.status = 'pending' AND (a.next_attempt IS NULL OR a.next_attempt <= ?) ORDER BY a.alert_id",
            (to_iso(now),))]

    def wave_settled(self, wave: int, cursor: int) -> bool:
        """No run of the wave is still to end, and the sender followed every event of its runs
        (one statement: one snapshot of state.db, so a run that just ended is not missed)."""
        active = ", ".join(f"'{s.value}'" for s in ACTIVE)
        return bool(self.conn.execute(
            f"SELECT NOT EXISTS (SELECT 1 FROM runs WHERE wave = ? AND status IN ({active})) "
            "AND NOT EXISTS (SELECT 1 FROM run_events WHERE event_id > ? "
            "AND run_id IN (SELECT run_id FROM runs WHERE wave = ?))", (wave, cursor, wave)).fetchone()[0])

    def next_attempt(self) -> datetime | None:
        row = self.conn.execute("SELECT MIN(next_attempt) FROM alerts WHERE status = 'pending'").fetchone()
        return parse_iso(row[0]) if row and row[0] else None

    def retry_now(self, now: datetime) -> None:
        self.conn.execute("UPDATE alerts SET next_attempt = ? WHERE status = 'pending'", (to_iso(now),))

    def finish(self, alert_id: int, status: str, attempts: int, now: datetime, error: str | None = None,
               next_attempt: datetime | None = None) -> None:
        self.conn.execute("UPDATE alerts SET status = ?, attempts = ?, error = ?, next_attempt = ?, sent_at = ? "
                          "WHERE alert_id = ?", (status, attempts, error, to_iso(next_attempt),
                                                 to_iso(now) if status == SENT else None, alert_id))

    def sent_times(self, channel: str, since: datetime) -> list[datetime]:
        """When the channel's messages (not summaries) went out since `since`: the alerts of a
        digest went out together, at one instant."""
        return [parse_iso(r[0]) for r in self.conn.execute(
            "SELECT DISTINCT sent_at FROM alerts WHERE channel = ? AND status = 'sent' AND kind != 'summary' "
            "AND sent_at > ?", (channel, to_iso(since)))]

    def streak_alerted(self, job_id: str, after_run_id: int, kinds) -> bool:
        """An alert of a streak kind for a run of the job after `after_run_id` (its last success)."""
        kinds = list(kinds)
        return self.conn.execute(
            f"SELECT 1 FROM alerts WHERE job_id = ? AND run_id > ? AND kind IN ({', '.join('?' * len(kinds))}) "
            "LIMIT 1", [job_id, after_run_id, *kinds]).fetchone() is not None

    def has_alert(self, run_id: int, kind: str) -> bool:
        return self.conn.execute("SELECT 1 FROM alerts WHERE run_id = ? AND kind = ? LIMIT 1",
                                 (run_id, kind)).fetchone() is not None

    def recent(self, kind: str, job_id: str | None, channel: str, since: datetime) -> list[tuple[int, datetime]]:
        """Alerts of this kind, job and channel created since `since` that were not suppressed."""
        return [(r[0], parse_iso(r[1])) for r in self.conn.execute(
            "SELECT alert_id, created_at FROM alerts WHERE kind = ? AND job_id IS ? AND channel = ? "
            "AND created_at > ? AND status != 'suppressed' ORDER BY alert_id DESC",
            (kind, job_id, channel, to_iso(since)))]

    def unsummarized(self, channel: str) -> list[Alert]:
        """Alerts of the channel suppressed by its rate limit and not yet told in a summary."""
        return [_alert(r) for r in self.conn.execute(
            "SELECT * FROM alerts WHERE channel = ? AND status = 'suppressed' AND summarized = 0 "
            "AND error LIKE 'rate limit%' ORDER BY alert_id", (channel,))]

    def mark_summarized(self, ids: list[int]) -> None:
        self.conn.executemany("UPDATE alerts SET summarized = 1 WHERE alert_id = ?", [(i,) for i in ids])

    def last_summary(self, channel: str) -> datetime | None:
        row = self.conn.execute("SELECT MAX(created_at) FROM alerts WHERE channel = ? AND kind = 'summary'",
                                (channel,)).fetchone()
        return parse_iso(row[0]) if row and row[0] else None

    def listing(self, limit: int) -> list[Alert]:
        """Newest first (`cron-scheduler alerts`)."""
        return [_alert(r) for r in self.conn.execute("SELECT * FROM alerts ORDER BY alert_id DESC LIMIT ?",
                                                    (limit,))]
