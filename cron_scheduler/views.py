"""Read-side views for the CLI: the JSON shapes of list/show/next/status and their text forms."""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import Any

from cron_scheduler import schedule
from cron_scheduler.errors import InvalidSchedule
from cron_scheduler.home import Home, load_config
from cron_scheduler.jobs import JobService, downstream, job_view, next_runs
from cron_scheduler.models import Job, format_duration, parse_iso, utcnow
from cron_scheduler.planner import fingerprint
from cron_scheduler.validate import printable_id


def list_view(home: Home) -> list[dict[str, Any]]:
    stored = JobService(home).store.load()
    jobs, errors = stored.valid()
    default = load_config(home).timezone
    zone, now, down = schedule.get_zone(default), utcnow().replace(microsecond=0), downstream(jobs)
    cursors = _daemon_cursors(home) if jobs else {}
    rows = []
    for job in sorted(jobs.values(), key=lambda j: j.id):
        nxt = None
        if job.enabled:
            nxt = cursors.get(job.id, {}).get(fingerprint(job, default))
            if nxt is None or nxt <= now:
                found = next_runs(job, now, 1, zone)
                nxt = found[0] if found else None
        rows.append(job_view(job, nxt, down[job.id]))
    rows += [invalid_view(job_id, stored.raw(job_id), errors[job_id]) for job_id in errors]
    return sorted(rows, key=lambda r: r["id"])


def invalid_view(job_id: str, record: Any, error: str) -> dict[str, Any]:
    """A quarantined job in the shape of `job_view`: what of its record is readable (schedule,
    command, depends_on, enabled, description), defaults for the rest, and `error` saying why
    the daemon does not schedule it."""
    data = Job(id=job_id, schedule="", command=()).to_dict()
    record = record if type(record) is dict else {}
    for key, kind in (("schedule", str), ("enabled", bool), ("description", str)):
        if type(record.get(key)) is kind and (kind is not str or record[key].isprintable()):
            data[key] = record[key]
    for key in ("command", "depends_on"):
        value = record.get(key)
        if type(value) is list and all(type(v) is str for v in value):
            data[key] = value
    data.update(next_run=None, downstream=[], error=error)
    return data


def _daemon_cursors(home: Home) -> dict[str, dict[str, datetime]]:
    """The daemon's next slot per job (keyed by the definition it was computed for): with
    thousands of jobs, reading them is much cheaper than computing every fire time again."""
    if not home.state_db.exists():
        return {}
    from cron_scheduler.history import History
    with History.opened(home) as history:
        return {job_id: {fp: parse_iso(slot)} for job_id, (fp, slot) in history.job_states().items() if slot}


def show_view(home: Home, job_id: str) -> dict[str, Any]:
    service = JobService(home)
    stored = service.store.load()
    jobs, errors = stored.valid()
    if job_id in errors:
        return invalid_view(job_id, stored.raw(job_id), errors[job_id])
    job = service._get(jobs, job_id)
    nxt = next_runs(job, utcnow(), 1, service.default_zone()) if job.enabled else []
    return job_view(job, nxt[0] if nxt else None, downstream(jobs)[job_id])


def next_view(home: Home, target: str, count: int, tz: str | None, start: str | None) -> list[str]:
    """Fire times of a job id, or of an expression, as ISO instants in the schedule's zone;
    a --from without an offset is read in that zone too."""
    service = JobService(home)
    jobs, errors = service.catalogue() if home.jobs.exists() else ({}, {})
    if target in errors:
        from cron_scheduler.errors import CorruptStore
        raise CorruptStore(f"job {target!r} is invalid, not scheduled: {errors[target]}")
    if target in jobs:
        job = jobs[target]
        zone = schedule.get_zone(tz or job.timezone) if (tz or job.timezone) else service.default_zone()
        if tz:
            job = job.replace(timezone=tz)
        after = instant_option(start, "--from", zone)
        return [t.astimezone(zone).isoformat() for t in next_runs(job, after, count, zone)]
    try:
        sched = schedule.parse(target, strict=True)
    except InvalidSchedule as exc:
        if " " not in target and not target.startswith("@"):
            raise InvalidSchedule(f"{exc} (and no job has the id {target!r})") from None
        raise
    zone = schedule.get_zone(tz) if tz else service.default_zone()
    after = instant_option(start, "--from", zone)
    return [t.astimezone(zone).isoformat() for t in schedule.next_fires(sched, after, count, zone, anchor=after)]


def instant_option(start: str | None, option: str, zone: tzinfo | None = None) -> datetime:
    """An ISO date-time option as a UTC instant; without an offset it is read in `zone` (default:
    the machine's). Now if empty."""
    if not start:
        return utcnow()
    from cron_scheduler.errors import InvalidOption
    try:
        dt = datetime.fromisoformat(start)
        return (dt if dt.tzinfo else dt.replace(tzinfo=zone or schedule.local_zone())).astimezone(schedule.UTC)
    except (ValueError, OverflowError):  # OverflowError: before year 1 or after 9999 in UTC
        raise InvalidOption(f"invalid {option} {start!r}: use an ISO date-time from year 1 to 9999") from None


def status_view(home: Home) -> dict[str, Any]:
    from cron_scheduler.instance import daemon_pid
    jobs, invalid = JobService(home).catalogue() if home.jobs.exists() else ({}, {})
    pid = daemon_pid(home)
    rows = list_view(home) if jobs else []
    due = [r["next_run"] for r in rows if r["next_run"]]
    running: list[int] = []
    if home.state_db.exists():
        from cron_scheduler.history import History
        with History.opened(home) as history:
            running = history.running_ids()
    return {"home": str(home.root), "daemon_running": pid is not None, "pid": pid, "jobs": len(jobs),
            "invalid_jobs": sorted(invalid), "running": running, "next_due": min(due) if due else None}


# --- text forms --------------------------------------------------------------------------

def _local(iso: str | None) -> str:
    return parse_iso(iso).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z") if iso else "-"


def format_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no jobs"
    header = ("ID", "SCHEDULE", "NEXT RUN", "STATE", "DEPENDS", "COMMAND")
    table = [header] + [(printable_id(r["id"]), r["schedule"], _local(r["next_run"]),
                         _state(r),
                         ",".join(r["depends_on"]) or "-", " ".join(r["command"])[:60]) for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1] for row in table]
    lines += [f"invalid job {printable_id(r['id'])}, not scheduled: {r['error']}" for r in rows if r.get("error")]
    return "\n".join(lines)


def _state(row: dict[str, Any]) -> str:
    if row.get("error"):
        return "INVALID"
    if not row["enabled"]:
        return "paused"
    if row["next_run"] is None and schedule.parse(row["schedule"]).kind is schedule.Kind.ONCE:
        return "completed"  # its one slot has passed
    return "enabled"


def format_job(data: dict[str, Any]) -> str:
    lines = [f"{'id':<18}{data['id']}"]
    if data.get("error"):
        lines.append(f"{'error':<18}INVALID, not scheduled: {data['error']}")
    shown = {k: v for k, v in data.items() if k != "error"}
    shown["next_run"] = _local(data["next_run"])
    for key in ("timeout", "retry_delay", "expected_duration"):
        shown[key] = format_duration(data[key])
    shown["command"] = " ".join(data["command"])
    for key in ("depends_on", "downstream", "notify"):
        shown[key] = ", ".join(data[key]) or "-"
    shown["env"] = ", ".join(f"{k}=..." for k in data["env"]) or "-"
    for key, value in shown.items():
        if key != "id":
            lines.append(f"{key:<18}{'-' if value in (None, '') else value}")
    return "\n".join(lines)


def format_status(data: dict[str, Any]) -> str:
    daemon = f"running (pid {data['pid']})" if data["daemon_running"] else "not running"
    invalid = data.get("invalid_jobs") or []
    jobs = f"{data['jobs']}" + (f" (and {len(invalid)} invalid, not scheduled: see list)" if invalid else "")
    return "\n".join([f"home      {data['home']}", f"daemon    {daemon}", f"jobs      {jobs}",
                      f"running   {', '.join(map(str, data['running'])) or '-'}",
                      f"next due  {_local(data['next_due'])}"])


def graph_lines(home: Home, root: str | None) -> list[str]:
    """The dependency tree as text: each job, then what depends on it, indented."""
    from cron_scheduler.errors import UnknownJob
    jobs = JobService(home).all()
    if root is not None and root not in jobs:
        raise UnknownJob(root)
    down = downstream(jobs)
    tops = [root] if root else sorted(j for j in jobs if not jobs[j].depends_on)
    lines: list[str] = []

    def walk(job_id: str, depth: int, path: tuple[str, ...]) -> None:
        job = jobs[job_id]
        others = [d for d in job.depends_on if d not in path[-1:]]
        also = f"  (also needs {', '.join(others)})" if depth and others else ""
        lines.append(f"{'    ' * depth}{'└── ' if depth else ''}{job_id} [{job.schedule}]{also}")
        for child in sorted(down[job_id]):
            walk(child, depth + 1, path + (job_id,))

    for top in tops:
        walk(top, 0, ())
    return lines or ["no jobs"]
