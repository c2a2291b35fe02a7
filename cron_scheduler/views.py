"""Read-side views for the CLI: the JSON shapes of list/show/next/status and their text forms."""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import Any

from cron_scheduler import schedule
from cron_scheduler.errors import InvalidSchedule
from cron_scheduler.home import Home, load_config
from cron_scheduler.jobs import JobService, downstream, job_view, next_runs, zone_of
from cron_scheduler.models import format_duration, parse_iso, utcnow
from cron_scheduler.planner import fingerprint


def list_view(home: Home) -> list[dict[str, Any]]:
    jobs = JobService(home).all()
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
    return rows


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
    jobs = service.all()
    job = service._get(jobs, job_id)
    nxt = next_runs(job, utcnow(), 1, service.default_zone()) if job.enabled else []
    view = job_view(job, nxt[0] if nxt else None, downstream(jobs)[job_id])
    if not usual:  # the JSON shape stays the one of `list --json`
        return view
    if home.state_db.exists():  # its usual duration: p50/p95 of its last 20 successful runs
        from cron_scheduler.control import usual_duration
        from cron_scheduler.history import History
        with History.opened(home) as history:
            usual = usual_duration(history, job_id)
    view["usual_p50"], view["usual_p95"] = usual if isinstance(usual, tuple) else (None, None)
    return view


def next_view(home: Home, target: str, count: int, tz: str | None, start: str | None) -> list[str]:
    """Fire times of a job id, or of an expression, as ISO instants. A job's are its real fire
    times (in its own zone, zone_of), shown in --tz if given, else in the job's zone; an
    expression is read in --tz, else the default zone. A --from without an offset is read in
    the zone the times are shown in."""
    service = JobService(home)
    jobs = service.all() if home.jobs.exists() else {}
    if target in jobs:
        job = jobs[target]
        zone = zone_of(job, service.default_zone())
        shown = schedule.get_zone(tz) if tz else zone
        after = instant_option(start, "--from", shown)
        return [t.astimezone(shown).isoformat() for t in next_runs(job, after, count, zone)]
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
    from cron_scheduler.instance import daemon_pid, read_daemon_info
    jobs = JobService(home).all() if home.jobs.exists() else {}
    pid = daemon_pid(home)
    info = read_daemon_info(home) if pid is not None else {}
    rows = list_view(home) if jobs else []
    due = [r["next_run"] for r in rows if r["next_run"]]
    running: list[int] = []
    if home.state_db.exists():
        from cron_scheduler.history import History
        with History.opened(home) as history:
            running = history.running_ids()
    return {"home": str(home.root), "daemon_running": pid is not None, "pid": pid, "jobs": len(jobs),
            "running": running, "next_due": min(due) if due else None,
            "kill_method": info.get("kill_method"), "kill_detail": info.get("kill_detail")}


# --- text forms --------------------------------------------------------------------------

def _local(iso: str | None) -> str:
    return parse_iso(iso).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z") if iso else "-"


def format_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no jobs"
    header = ("ID", "SCHEDULE", "NEXT RUN", "STATE", "DEPENDS", "COMMAND")
    table = [header] + [(r["id"], r["schedule"], _local(r["next_run"]),
                         _state(r),
                         ",".join(r["depends_on"]) or "-", " ".join(r["command"])[:60]) for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1]
                     for row in table)


def _state(row: dict[str, Any]) -> str:
    if not row["enabled"]:
        return "paused"
    if row["next_run"] is None and schedule.parse(row["schedule"]).kind is schedule.Kind.ONCE:
        return "completed"  # its one slot has passed
    return "enabled"


def format_job(data: dict[str, Any]) -> str:
    lines = [f"{'id':<18}{data['id']}"]
    shown = dict(data)
    shown["next_run"] = _local(data["next_run"])
    for key in ("timeout", "retry_delay", "expected_duration"):
        shown[key] = format_duration(data[key])
    for key in ("usual_p50", "usual_p95"):
        if key in data:
            shown[key] = "-" if data[key] is None else f"{data[key]:.2f}s"
    shown["command"] = " ".join(data["command"])
    for key in ("depends_on", "downstream", "notify", "notify_to"):
        shown[key] = ", ".join(data[key]) or "-"
    shown["env"] = ", ".join(f"{k}=..." for k in data["env"]) or "-"
    for key, value in shown.items():
        if key != "id":
            lines.append(f"{key:<18}{'-' if value in (None, '') else value}")
    return "\n".join(lines)


def format_status(data: dict[str, Any]) -> str:
    daemon = f"running (pid {data['pid']})" if data["daemon_running"] else "not running"
    return "\n".join([f"home      {data['home']}", f"daemon    {daemon}", f"jobs      {data['jobs']}",
                      f"running   {', '.join(map(str, data['running'])) or '-'}",
                      f"next due  {_local(data['next_due'])}"]
                     + ([f"kill      {data['kill_method']} ({data['kill_detail']})"]
                        if data.get("kill_method") else []))


def graph_lines(home: Home, root: str | None) -> list[str]:
    """The dependency graph as text. Without a job: each job without upstreams, then what
    depends on it, indented. With a job: the job, its upstream chain (what runs before it, each
    with its own upstreams indented under it) and its downstream tree (what runs after it)."""
    jobs = _graph_jobs(home, root)
    down = downstream(jobs)
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
    down = downstream(jobs)
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
