"""What an alert says: the event as JSON (command channel, json:// webhooks), an email subject
like `[cron-scheduler] backup failed (exit 1) on HOST`, and a text body for mail and chat."""

from __future__ import annotations

import socket
from datetime import datetime
from typing import Any, BinaryIO

from cron_scheduler.models import format_duration, to_iso
from cron_scheduler.notify.rules import Kind, duration

TAIL_LINES = 20
TAIL_BYTES = 16 * 1024  # only the end of the log is read
PREFIX = "[cron-scheduler]"


def host_name(configured: str | None = None) -> str:
    return configured or socket.gethostname()


def run_event(kind: Kind, run, job, usual: tuple[float, float] | None, host: str, now: datetime,
              output_tail: str | None = None, threshold: float | None = None) -> dict[str, Any]:
    """The JSON event of an alert about a run (documented in docs/alerts.md)."""
    took = duration(run)
    if kind is Kind.SLOW and run.started_at:
        from cron_scheduler.models import parse_iso
        took = (now - parse_iso(run.started_at)).total_seconds()
    event = {
        "event": kind.value, "job_id": run.job_id, "run_id": run.run_id, "status": str(run.status),
        "trigger": str(run.trigger), "attempt": run.attempt, "exit_code": run.exit_code, "signal": run.signal,
        "reason": run.reason, "scheduled_for": run.scheduled_for, "started_at": run.started_at,
        "finished_at": run.finished_at, "duration": took,
        "usual_p50": usual[0] if usual else None, "usual_p95": usual[1] if usual else None,
        "expected": threshold if kind is Kind.SLOW else (job.expected_duration if job else None),
        "output_bytes": run.output_bytes, "truncated": bool(run.truncated),
        "missed_count": run.missed_count, "wave": run.wave, "host": host, "at": to_iso(now),
        "output_tail": output_tail,
    }
    event["title"] = title(event)
    return event


def plain_event(kind: Kind, message: str, host: str, now: datetime, **extra: Any) -> dict[str, Any]:
    """A daemon, summary or test event (no run)."""
    event = {"event": kind.value, "job_id": None, "run_id": None, "reason": message, "host": host,
             "at": to_iso(now), **extra}
    event["title"] = title(event)
    return event


def digest(events: list[dict[str, Any]]) -> dict[str, Any]:
    """One message for several alerts of one wave: the oldest alert's event (the cause, mostly
    the upstream's failure) with a title that counts the others, which follow in `wave_alerts`
    (each a complete event). A single alert is its own event, unchanged."""
    if len(events) == 1:
        return events[0]
    first, rest = events[0], events[1:]
    counts: dict[str, int] = {}
    for event in rest:
        counts[event["event"]] = counts.get(event["event"], 0) + 1
    more = ", ".join(f"{n} {kind}" for kind, n in counts.items())
    return {**first, "title": f"{first['title']} (and {more} in the same wave)", "wave_alerts": rest}


def title(e: dict[str, Any]) -> str:
    kind, job, host = e["event"], e.get("job_id"), e["host"]
    if kind == Kind.FAILURE:
        if e.get("status") == "interrupted":
            what = "interrupted (daemon stopped while it ran)"
        elif e.get("exit_code") is not None:
            what = f"failed (exit {e['exit_code']})"
        elif e.get("signal"):
            what = f"failed (signal {e['signal']})"
        else:
            what = "failed"
    elif kind == Kind.TIMEOUT:
        what = "timed out" + (f" ({e['reason']})" if e.get("reason") else "")
    elif kind == Kind.BLOCKED:
        what = "blocked" + (f" ({e['reason']})" if e.get("reason") else "")
    elif kind == Kind.MISSED:
        what = f"missed {e.get('missed_count') or 1} slot(s)"
    elif kind == Kind.SLOW:
        what = f"slow (running {_dur(e.get('duration'))}, expected {_dur(e.get('expected'))})"
    elif kind == Kind.OUTPUT:
        what = f"wrote {e.get('output_bytes') or 0} bytes of output" + (" (truncated)" if e.get("truncated") else "")
    elif kind == Kind.RECOVERED:
        what = f"recovered (succeeded in {_dur(e.get('duration'))})"
    elif kind == Kind.DAEMON:
        return f"{PREFIX} daemon: {e['reason']} on {host}"
    elif kind == Kind.SUMMARY:
        return f"{PREFIX} {e['reason']} on {host}"
    else:
        return f"{PREFIX} test alert from {host}"
    return f"{PREFIX} {job} {what} on {host}"


def body(e: dict[str, Any]) -> str:
    """The text of mail and chat messages."""
    if e.get("run_id") is None:
        return f"{e['reason']}\n\nhost: {e['host']}\nat: {e['at']}\n"
    usual = (f"usual p50 {_dur(e['usual_p50'])}, p95 {_dur(e['usual_p95'])}" if e.get("usual_p50") is not None
             else "usual: not learned yet (fewer than 5 successful runs)")
    outcome = (f"exit {e['exit_code']}" if e.get("exit_code") is not None
               else f"signal {e['signal']}" if e.get("signal") else "-")
    lines = [e["title"].removeprefix(PREFIX + " "), "",
             f"job:        {e['job_id']}", f"run:        {e['run_id']} ({e['trigger']}, attempt {e['attempt']})",
             f"status:     {e['status']}", f"exit:       {outcome}",
             f"duration:   {_dur(e.get('duration'))} ({usual})",
             f"scheduled:  {e['scheduled_for']}", f"reason:     {e.get('reason') or '-'}",
             f"host:       {e['host']}"]
    if e.get("output_tail"):
        lines += ["", f"last {TAIL_LINES} lines of output:", e["output_tail"].rstrip("\n")]
    if e.get("wave_alerts"):
        lines += ["", f"also in wave {e.get('wave')}:"]
        lines += [f"  {a['title'].removeprefix(PREFIX + ' ')} (run {a['run_id']})" for a in e["wave_alerts"]]
    return "\n".join(lines) + "\n"


def tail(fh: BinaryIO | None, lines: int = TAIL_LINES) -> str | None:
    """The last lines of a run log (opened by control.open_run_log, never through a link)."""
    if fh is None:
        return None
    with fh:
        size = fh.seek(0, 2)
        fh.seek(max(0, size - TAIL_BYTES))
        data = fh.read(TAIL_BYTES)
    text = data.decode("utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:])


def _dur(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return format_duration(round(seconds, 1) if seconds < 60 else round(seconds))
