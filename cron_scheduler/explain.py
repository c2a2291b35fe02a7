"""`explain JOB [--at T]`: why a job did or did not run at a slot, from its records, and what
will happen next and why (its next slot, paused, waiting for upstreams, outside start/end, no
daemon). The text and `--json` come from the same view."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from cron_scheduler import schedule
from cron_scheduler.errors import UnknownJob
from cron_scheduler.history import History, Run
from cron_scheduler.home import Home
from cron_scheduler.humanize import plural
from cron_scheduler.models import ACTIVE, Job, parse_iso, to_iso, utcnow

ONE_SECOND = timedelta(seconds=1)
TINY = timedelta(microseconds=1)
SHOWN_RUNS = 20


def explain_view(home: Home, job_id: str, at: datetime | None, now: datetime | None = None) -> dict[str, Any]:
    """{job_id, at, state, next_run, runs (the history --json shape, oldest first), lines}."""
    from cron_scheduler.control import run_view
    from cron_scheduler.instance import daemon_pid
    from cron_scheduler.jobs import JobService
    now = now or utcnow()
    service = JobService(home)
    jobs = service.all() if home.jobs.exists() else {}
    with History.opened(home) as history:
        runs = history.runs(job_id, limit=500)
        job = jobs.get(job_id)
        if job is None and not runs:
            raise UnknownJob(job_id)
        upstreams = {d: history.runs(d, limit=1) for d in (job.depends_on if job else ())}
    lines = []
    state = "removed" if job is None else "enabled" if job.enabled else "paused"
    if job is None:
        lines.append(f"{job_id}: removed from the store; {plural(len(runs), 'record')} remain")
    elif not job.enabled:
        lines.append(f"{job_id}: paused, so it gets no new slots (`cron-scheduler resume {job_id}`)")
    if at is not None:
        runs = [r for r in runs if _covers(r, at)]
    shown = list(reversed(runs[:SHOWN_RUNS]))
    lines += [_explain_run(r) for r in shown]
    nxt = None
    if job is None and at is not None and not runs:
        lines.append(f"no record at {to_iso(at)}")
    elif job is not None:
        slots = Slots(job, service.default_zone())
        nxt = slots.after(now) if job.enabled else None
        if at is not None and not runs:
            lines.append(_unrecorded(job, slots, at, now))
        elif at is None and not shown:
            lines.append(f"{job_id}: no runs recorded yet")
        if at is None or at > now or not runs:
            lines += _outlook(job, slots, nxt, now, upstreams, daemon_pid(home) is not None)
    return {"job_id": job_id, "at": to_iso(at), "state": state, "next_run": to_iso(nxt),
            "runs": [run_view(r) for r in shown], "lines": lines}


class Slots:
    """A job's fire instants (bounds and zone applied); None where none can be computed."""

    def __init__(self, job: Job, zone):
        self.job, self.zone = job, zone
        self.kind = schedule.parse(job.schedule, job.id).kind

    def after(self, t: datetime) -> datetime | None:
        from cron_scheduler.jobs import next_runs
        try:
            found = next_runs(self.job, t, 1, self.zone)
        except (OverflowError, ValueError):  # near year 9999
            return None
        return found[0] if found else None

    def is_slot(self, t: datetime) -> bool:
        return self.after(t - TINY) == t


def _unrecorded(job: Job, slots: Slots, at: datetime, now: datetime) -> str:
    """Why there is no record at `at`: not a slot (and why), still to come, or not reached."""
    shown = to_iso(at)
    if slots.kind in (schedule.Kind.AFTER, schedule.Kind.REBOOT):
        return f"no record at {shown}: {job.schedule} has no timer slots"
    if not slots.is_slot(at):
        why = _outside(job, at) or "not a slot of this schedule"
        nearest = slots.after(at)
        return f"{shown} is {why}" + (f"; its next slot after it is {to_iso(nearest)}" if nearest else "")
    if at > now:
        return f"{shown} is a slot still to come (in {_span(at - now)})"
    created = parse_iso(job.created_at)
    if created and at < created:
        return f"{shown} was a slot before the job was created ({to_iso(created)}): it never fires"
    return (f"{shown} was a slot, but no run is recorded for it: no daemon reached it (none ran then); "
            f"with catch_up {job.catch_up} a daemon that starts handles it as a missed slot")


def _outside(job: Job, at: datetime) -> str | None:
    start, end = parse_iso(job.start_at), parse_iso(job.end_at)
    if start and at < start:
        return f"before the job's start_at ({to_iso(start)})"
    if end and at > end:
        return f"after the job's end_at ({to_iso(end)})"
    return None


def _outlook(job: Job, slots: Slots, nxt: datetime | None, now: datetime,
             upstreams: dict[str, list[Run]], daemon: bool) -> list[str]:
    """What happens next, and what it depends on."""
    if not job.enabled:
        would = slots.after(now)
        return ["next: nothing while it is paused"
                + (f" (its next slot would be {to_iso(would)})" if would else "")]
    if slots.kind is schedule.Kind.AFTER:
        lines = [f"next: no timer; it runs when its upstreams ({', '.join(job.depends_on)}) succeed"]
    elif slots.kind is schedule.Kind.REBOOT:
        lines = ["next: it runs once each time a daemon starts"]
    elif nxt is None:
        lines = [f"next: no slot to come ({_why_none(job, now)})"]
    else:
        lines = [f"next: slot {to_iso(nxt)} (in {_span(nxt - now)})"]
        if job.depends_on:
            lines.append("it then runs once its upstreams succeeded: " + ", ".join(
                f"{d} ({_upstream(upstreams.get(d))})" for d in job.depends_on))
    if not daemon and (nxt is not None or slots.kind is not schedule.Kind.CRON):
        lines.append("no daemon is running for this home: nothing fires until one starts")
    return lines


def _why_none(job: Job, now: datetime) -> str:
    end = parse_iso(job.end_at)
    if end and end <= now:
        return f"its end_at {to_iso(end)} has passed"
    if schedule.parse(job.schedule, job.id).kind is schedule.Kind.ONCE:
        return f"its one slot {job.start_at} has passed"
    return "the schedule has no further fire time"


def _upstream(runs: list[Run] | None) -> str:
    if not runs:
        return "no run yet: it waits for one that succeeds"
    last = runs[0]
    if last.status.value == "succeeded":
        return "its last run succeeded"
    if last.status in ACTIVE:
        return f"its run {last.run_id} is {last.status.value}: it waits for it"
    return f"its last run {last.run_id} {last.status.value}: it would be blocked"


def _span(delta: timedelta) -> str:
    from cron_scheduler.humanize import span
    return span(delta.total_seconds(), whole=True)


def _covers(run: Run, at: datetime) -> bool:
    first = parse_iso(run.scheduled_for)
    last = parse_iso(run.missed_until) or first
    return first - ONE_SECOND < at < last + ONE_SECOND


def _explain_run(run: Run) -> str:
    head = f"run {run.run_id} ({run.trigger}, slot {run.scheduled_for}, attempt {run.attempt}): {run.status}"
    detail = {
        "succeeded": "exited 0",
        "failed": f"exit {run.exit_code}" if run.exit_code is not None else f"signal {run.signal}",
        "missed": f"{run.reason}",
    }.get(run.status, run.reason or "")
    if run.status == "failed" and run.reason:
        detail += f" ({run.reason})"
    return head + (f" - {detail}" if detail else "")
