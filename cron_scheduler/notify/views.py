"""What the CLI shows about alerts: the `alerts` listing and the `notify-test` results."""

from __future__ import annotations

from typing import Any

from cron_scheduler.errors import InvalidOption, OperationalError
from cron_scheduler.home import Home, load_config


def alert_rows(home: Home, limit: int) -> list[dict[str, Any]]:
    """`alerts --json`: alert_id, created_at, kind, job_id, run_id, channel, status, attempts,
    error, sent_at, title (newest first)."""
    if not home.state_db.exists():
        return []
    from cron_scheduler.history import History
    from cron_scheduler.notify.store import AlertStore
    with History.opened(home) as history:
        alerts = AlertStore(history).listing(limit)
    return [{"alert_id": a.alert_id, "created_at": a.created_at, "kind": a.kind, "job_id": a.job_id,
             "run_id": a.run_id, "channel": a.channel, "status": a.status, "attempts": a.attempts,
             "error": a.error, "sent_at": a.sent_at, "title": a.payload.get("title")} for a in alerts]


def format_alerts(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no alerts"
    header = ("ID", "CREATED", "KIND", "JOB", "RUN", "CHANNEL", "STATUS", "DETAIL")
    table = [header] + [(str(r["alert_id"]), r["created_at"][:19].replace("T", " "), r["kind"], r["job_id"] or "-",
                         str(r["run_id"] or "-"), r["channel"], f"{r['status']}" + (
                             f" ({r['attempts']} tries)" if r["attempts"] > 1 else ""),
                         r["error"] or r["title"] or "") for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[-1] for row in table)


def notify_test(home: Home, only: str | None) -> list[tuple[str, str, str | None]]:
    """(channel, target shown masked, error or None) for each channel tried."""
    from cron_scheduler.models import utcnow
    from cron_scheduler.notify import message
    from cron_scheduler.notify.channels import ChannelFailed, deliver, describe
    from cron_scheduler.notify.config import parse_notify
    from cron_scheduler.notify.rules import Kind
    config = parse_notify(load_config(home).notify, str(home.config_file))
    if not config.channels:
        raise OperationalError(f"no alert channels: add a [notify.channels.NAME] block to {home.config_file}")
    if only is not None and only not in config.channels:
        raise InvalidOption(f"unknown channel {only!r}: {home.config_file} defines {', '.join(sorted(config.channels))}")
    results = []
    host = message.host_name(config.host)
    for name in ([only] if only else sorted(config.channels)):
        channel = config.channels[name]
        event = message.plain_event(Kind.TEST, f"test alert for channel {name} (cron-scheduler notify-test)",
                                    host, utcnow())
        try:
            deliver(channel, event)
            results.append((name, describe(channel), None))
        except ChannelFailed as exc:
            results.append((name, describe(channel), str(exc)))
    return results
