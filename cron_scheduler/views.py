"""Read-side views for the CLI: the JSON shapes of list/show/next/status and their text forms."""

from __future__ import annotations

import shlex
from datetime import datetime, tzinfo
from typing import Any

from cron_scheduler import schedule
from cron_scheduler.errors import InvalidSchedule
from cron_scheduler.home import Home, load_config
from cron_scheduler.humanize import one_line
from cron_scheduler.jobs import JobService, job_view, next_runs, zone_of
from cron_scheduler.models import Job, format_duration, parse_iso, utcnow
from cron_scheduler.planner import dependents, fingerprint
from cron_scheduler.validate import printable_id


def list_view(home: Home) -> list[dict[str, Any]]:
    stored = JobService(home).store.load()
    jobs, errors = stored.valid()
    default = load_config(home).timezone
    zone, now, down = schedule.get_zone(default), utcnow().replace(microsecond=0), dependents(jobs)
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
    _add_states(home, rows)
    return sorted(rows, key=lambda r: r["id"])


def _add_states(home: Home, rows: list[dict[str, Any]]) -> None:
    """Each row's `state`: invalid, paused, enabled; an @once job whose one slot has passed is
    `completed` only if its run succeeded, else its run's status (failed, timeout, running...)
    or `not run` (no record: no daemon reached the slot). One read per such job only."""
    done = {r["id"] for r in rows if not r.get("error") and r["enabled"] and r["next_run"] is None
            and schedule.parse(r["schedule"]).kind is schedule.Kind.ONCE}
    latest = {}
    if done and home.state_db.exists():
        from cron_scheduler.history import History
        with History.opened(home) as history:
            latest = {job_id: history.runs(job_id, limit=1) for job_id in done}
    for row in rows:
        row["state"] = "invalid" if row.get("error") else "enabled" if row["enabled"] else "paused"
        if row["id"] in done:
            last = latest.get(row["id"])
            status = last[0].status.value if last else None
            row["state"] = "completed" if status == "succeeded" else status or "not run"


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


def show_view(home: Home, job_id: str, usual: bool = False) -> dict[str, Any]:
    service = JobService(home)
    stored = service.store.load()
    jobs, errors = stored.valid()
    if job_id in errors:
        view = invalid_view(job_id, stored.raw(job_id), errors[job_id])
        _add_states(home, [view])
        return view
    job = service._get(jobs, job_id)
    nxt = next_runs(job, utcnow(), 1, service.default_zone()) if job.enabled else []
    view = job_view(job, nxt[0] if nxt else None, dependents(jobs)[job_id])
    _add_states(home, [view])
    if not usual:  # the JSON shape stays the one of `list --json`
        return view
    if home.state_db.exists():  # its usual duration: p50/p95 of its last 20 successful runs
        from cron_scheduler.control import usual_duration
        from cron_scheduler.history import History
        with History.opened(home) as history:
            usual = usual_duration(history, job_id)
    view["usual_p50"], view["usual_p95"] = usual if isinstance(usual, tuple) else (None, None)
    return view


def next_times(home: Home, target: str, count: int, tz: str | None, start: str | None) -> list[datetime]:
    """Fire times of a job id, or of an expression, as aware datetimes in the zone they are shown in. A job's are its real fire
    times (in its own zone, zone_of), shown in --tz if given, else in the job's zone; an
    expression is read in --tz, else the default zone. A --from without an offset is read in
    the zone the times are shown in."""
    service = JobService(home)
    jobs, errors = service.catalogue() if home.jobs.exists() else ({}, {})
    if target in errors:
        from cron_scheduler.errors import CorruptStore
        raise CorruptStore(f"job {target!r} is invalid, not scheduled: {errors[target]}")
    if target in jobs:
        job = jobs[target]
        zone = zone_of(job, service.default_zone())
        shown = schedule.get_zone(tz) if tz else zone
        after = instant_option(start, "--from", shown)
        return [t.astimezone(shown) for t in next_runs(job, after, count, zone)]
    try:
        sched = schedule.parse(target, strict=True)
    except InvalidSchedule as exc:
        if " " not in target and not target.startswith("@"):
            raise InvalidSchedule(f"{exc} (and no job has the id {target!r})") from None
        raise
    zone = schedule.get_zone(tz) if tz else service.default_zone()
    after = instant_option(start, "--from", zone)
    return [t.astimezone(zone) for t in schedule.next_fires(sched, after, count, zone, anchor=after)]


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
    from cron_scheduler.instance import daemon_pid, read_daemon_info
    jobs, invalid = JobService(home).catalogue() if home.jobs.exists() else ({}, {})
    pid = daemon_pid(home)
    info = read_daemon_info(home) if pid is not None else {}
    rows = list_view(home) if jobs else []
    due = [r["next_run"] for r in rows if r["next_run"]]
    running: list[int] = []
    if home.state_db.exists():
        from cron_scheduler.history import History
        with History.opened(home) as history:
            running = history.running_ids()
    return {"home": str(home.root), "log": str(home.log), "daemon_running": pid is not None, "pid": pid,
            "jobs": len(jobs), "invalid_jobs": sorted(invalid), "running": running, "next_due": min(due) if due else None,
            "kill_method": info.get("kill_method"), "kill_detail": info.get("kill_detail")}


# --- text forms --------------------------------------------------------------------------

def text_zone(home: Home) -> tzinfo:
    """The zone text output shows times in (humanize.viewer_zone: $TZ, config, machine)."""
    from cron_scheduler.humanize import viewer_zone
    return viewer_zone(load_config(home).timezone)


def format_table(rows: list[dict[str, Any]], zone: tzinfo | None = None, now: datetime | None = None, *,
                 headers: bool = True, colour: bool = False, width: int | None = None) -> str:
    """`list` as text, one line per job whatever its command holds. Where the table is wider
    than the terminal, the times go short (no year) and the command keeps its program's name."""
    from cron_scheduler.humanize import fits, short_command, table, when
    if not rows:
        return "no jobs"
    zone, now = zone or schedule.local_zone(), now or utcnow()
    titles = ("ID", "SCHEDULE", "NEXT RUN", "CAP", "STATE", "DEPENDS", "COMMAND")

    def body(short: bool) -> list[tuple[str, ...]]:
        return [(printable_id(r["id"]), one_line(r["schedule"]), when(parse_iso(r["next_run"]), zone, now, short),
                 format_duration(r["timeout"]) if r["timeout"] else "-", _state(r),
                 ",".join(r["depends_on"]) or "-", one_line(shown_command(r))) for r in rows]

    cells = body(short=False)
    if not fits(titles, cells, width):
        cells = body(short=True)
    lines = table(titles, cells, max_width=width, show_headers=headers, status_col=4, colour=colour,
                  shorten=short_command)
    lines += [f"invalid job {printable_id(r['id'])}, not scheduled: {r['error']}" for r in rows if r.get("error")]
    return "\n".join(lines)


def shown_command(data: dict[str, Any]) -> str:
    """A job's command as its author wrote it: a shell command (`--shell`, crontab lines) as
    the one string the shell reads, an argv shell-quoted (what `--shell` would run the same)."""
    command = data["command"]
    return command[0] if data.get("shell") is True and len(command) == 1 else shlex.join(command)


def _state(row: dict[str, Any]) -> str:
    if row.get("error"):
        return "INVALID"
    return row.get("state") or ("enabled" if row["enabled"] else "paused")


def format_job(data: dict[str, Any], zone: tzinfo | None = None, now: datetime | None = None) -> str:
    from cron_scheduler.humanize import size, span, stamp, when
    zone, now = zone or schedule.local_zone(), now or utcnow()
    lines = [f"{'id':<18}{data['id']}"]
    if data.get("error"):
        lines.append(f"{'error':<18}INVALID, not scheduled: {data['error']}")
    shown = {k: v for k, v in data.items() if k != "error"}
    shown["next_run"] = when(parse_iso(data["next_run"]), zone, now)
    for key in ("start_at", "end_at", "created_at"):
        if data.get(key):
            shown[key] = stamp(parse_iso(data[key]).replace(microsecond=0), zone)
    for key in ("timeout", "retry_delay", "expected_duration"):
        shown[key] = format_duration(data[key])
    for key in ("max_output", "memory_max"):
        if data.get(key) is not None:
            shown[key] = size(data[key])
    for key in ("usual_p50", "usual_p95"):
        if key in data:
            shown[key] = "-" if data[key] is None else span(data[key])
    shown["command"] = one_line(shown_command(data))
    shown["env"] = ", ".join(f"{k}=..." for k in data["env"]) or "-"  # values may be secrets
    for key, value in shown.items():
        if key != "id":
            lines.append(f"{key:<18}{_text(value)}")
    return "\n".join(lines)


def _text(value: Any) -> str:
    """A field's value for people, never a Python literal: yes/no, `a, b`, `cpu=2, mem=4GB`, `-`."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict):
        value = ", ".join(f"{k}={v}" for k, v in value.items())
    elif isinstance(value, (list, tuple)):
        value = ", ".join(map(str, value))
    return "-" if value in (None, "") else one_line(str(value))


def format_status(data: dict[str, Any], names: dict[int, str] | None = None, zone: tzinfo | None = None,
                  now: datetime | None = None, colour: bool = False) -> str:
    """`names`: the job of each running run id, shown next to it."""
    from cron_scheduler.humanize import paint, when
    zone, now, names = zone or schedule.local_zone(), now or utcnow(), names or {}
    daemon = (paint("running", "running", colour) + f" (pid {data['pid']})" if data["daemon_running"]
              else paint("not running", "failed", colour))
    running = ", ".join(f"{i} ({names[i]})" if i in names else str(i) for i in data["running"])
    invalid = data.get("invalid_jobs") or []
    jobs = f"{data['jobs']}" + (f" (and {len(invalid)} invalid, not scheduled: see list)" if invalid else "")
    return "\n".join([f"home      {data['home']}", f"log       {data['log']}", f"daemon    {daemon}",
                      f"jobs      {jobs}",
                      f"running   {running or '-'}",
                      f"next due  {when(parse_iso(data['next_due']), zone, now)}"]
                     + ([f"kill      {data['kill_method']} ({data['kill_detail']})"]
                        if data.get("kill_method") else []))


def format_next(times: list[datetime], now: datetime | None = None, show_relative: bool = True,
                zone: tzinfo | None = None) -> list[str]:
    """`next` as text: each time in `zone` (the viewer's, as `list` and `status` show it; None:
    the zone each time is given in, --tz), with how far from now (not with --from, where now is
    beside the point). Where the schedule's own zone reads another wall time, it follows."""
    from cron_scheduler.humanize import relative, stamp
    now = now or utcnow()
    lines = []
    for t in times:
        line = stamp(t, zone or t.tzinfo)
        if zone is not None and stamp(t, t.tzinfo)[11:] != line[11:]:
            line += f" ({stamp(t, t.tzinfo)} in the schedule's zone)"
        lines.append(f"{line}  {relative(t, now)}" if show_relative else line)
    return lines


def format_history(rows: list[dict[str, Any]], zone: tzinfo | None = None, now: datetime | None = None, *,
                   headers: bool = True, colour: bool = False, width: int | None = None) -> str:
    from cron_scheduler.humanize import span, table, when
    if not rows:
        return "no runs"
    zone, now = zone or schedule.local_zone(), now or utcnow()
    body = []
    for r in rows:
        result = r["signal"] or ("" if r["exit_code"] is None else f"exit {r['exit_code']}")
        took = span(r["duration"])
        if r["duration"] is not None and r.get("usual_p50") is not None:  # against the job's usual
            took += f" (p50 {span(r['usual_p50'])}, p95 {span(r['usual_p95'])})"
        body.append((str(r["run_id"]), r["job_id"], r["status"], r["trigger"],
                     when(parse_iso(r["scheduled_for"]), zone, now), took, result or "-", r["reason"] or ""))
    return "\n".join(table(("RUN", "JOB", "STATUS", "TRIGGER", "SCHEDULED", "TOOK", "RESULT", "REASON"), body,
                           max_width=width, show_headers=headers, status_col=2, colour=colour))


def graph_lines(home: Home, root: str | None) -> list[str]:
    """The dependency graph as text. Without a job: each job without upstreams, then what
    depends on it, indented. With a job: the job, its upstream chain (what runs before it, each
    with its own upstreams indented under it) and its downstream tree (what runs after it)."""
    jobs = _graph_jobs(home, root)
    down = dependents(jobs)
    lines: list[str] = []

    def label(job_id: str) -> str:
        return f"{job_id} [{jobs[job_id].schedule}]"

    def walk(job_id: str, depth: int, path: tuple[str, ...], children, note) -> None:
        lines.append(f"{'    ' * depth}{'└── ' if depth else ''}{label(job_id)}{note(job_id, depth, path)}")
        for child in sorted(children(job_id)):
            if child not in path:  # a hand-edited cycle must not recurse forever
                walk(child, depth + 1, path + (job_id,), children, note)

    def also_needs(job_id: str, depth: int, path: tuple[str, ...]) -> str:
        others = [d for d in jobs[job_id].depends_on if d not in path[-1:]]
        return f"  (also needs {', '.join(others)})" if depth and others else ""

    def upstreams(job_id: str) -> list[str]:
        return [d for d in jobs[job_id].depends_on if d in jobs]

    if root is None:
        for top in sorted(j for j in jobs if not jobs[j].depends_on):
            walk(top, 0, (), down.__getitem__, also_needs)
        return lines or ["no jobs"]
    lines.append(label(root))
    for title, children, note in ((f"upstream (runs before {root}):", upstreams, lambda *a: ""),
                                  (f"downstream (runs after {root}):", down.__getitem__, also_needs)):
        start = len(lines)
        lines.append(title)
        for child in sorted(children(root)):
            walk(child, 1, (root,), children, note)
        if len(lines) == start + 1:
            lines[-1] += " none"
    return lines


def graph_view(home: Home, root: str | None) -> dict[str, Any]:
    """`graph --json`: every job with its direct upstreams and downstreams; with a job, its
    upstream and downstream trees (nested {id, schedule, upstream|downstream})."""
    jobs = _graph_jobs(home, root)
    down = dependents(jobs)
    if root is None:
        return {"jobs": [{"id": j, "schedule": jobs[j].schedule, "depends_on": list(jobs[j].depends_on),
                          "downstream": sorted(down[j])} for j in sorted(jobs)]}

    def tree(job_id: str, key: str, children, path: tuple[str, ...]) -> dict[str, Any]:
        return {"id": job_id, "schedule": jobs[job_id].schedule,
                key: [tree(c, key, children, path + (job_id,)) for c in sorted(children(job_id))
                      if c in jobs and c not in path]}

    up = tree(root, "upstream", lambda j: jobs[j].depends_on, ())
    return dict(up, downstream=tree(root, "downstream", down.__getitem__, ())["downstream"])


def _graph_jobs(home: Home, root: str | None) -> dict[str, Any]:
    from cron_scheduler.errors import UnknownJob
    jobs = JobService(home).all() if home.jobs.exists() else {}
    if root is not None and root not in jobs:
        raise UnknownJob(root)
    return jobs
