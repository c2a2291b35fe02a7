"""The HTML pages: jobs, job, run, timeline. Each renders its live part as a fragment too
(`?fragment=1`), which the page's script fetches again when a run event arrives."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse

from cron_scheduler.humanize import plural, size, span, stamp, when
from cron_scheduler.models import ACTIVE, parse_iso, utcnow
from cron_scheduler.views import shown_command
from cron_scheduler.web import charts, data
from cron_scheduler.web.api import LOG_TAIL, home_of, int_param, job_id_of, read_log, run_id_of
from cron_scheduler.web.words import in_words

PAGE = 50            # runs per page of a job's history
MAX_HOURS = 24 * 14  # the timeline's widest window
DEFAULT_HOURS = 6    # the window whose runs the timeline fits itself to, without ?hours
MIN_WINDOW = timedelta(minutes=2)


def _render(request: Request, name: str, context: dict[str, Any]) -> HTMLResponse:
    from cron_scheduler.views import text_zone
    home = home_of(request)
    zone, now = text_zone(home), utcnow()
    fragment = request.query_params.get("fragment") == "1"
    context.update(request=request, zone=zone, now=now, fragment=fragment, read_only=request.app.state.read_only,
                   when=lambda iso: when(parse_iso(iso).replace(microsecond=0), zone, now) if iso else "-",
                   stamp=lambda iso: stamp(parse_iso(iso).replace(microsecond=0), zone) if iso else "-",
                   span=span, size=size, plural=plural, colour=charts.colour, home=str(home.root))
    template = request.app.state.templates.get_template(name)
    return HTMLResponse(template.render(context), headers={"Cache-Control": "no-store"})


def _words(job: dict[str, Any], default_zone: str | None) -> str:
    return in_words(job["schedule"], job["timezone"] or default_zone, job["depends_on"])


def _dot(job: dict[str, Any], summary: dict[str, Any]) -> str:
    if summary.get("active") and summary["active"]["status"] == "running":
        return "running"
    if not job["enabled"]:
        return "paused"
    last = summary.get("last")
    return last["status"] if last else "never"


def jobs(request: Request) -> HTMLResponse:
    from cron_scheduler.home import load_config
    from cron_scheduler.views import list_view
    home = home_of(request)
    zone_name = load_config(home).timezone
    summaries = data.job_summaries(home)
    rows = []
    for job in list_view(home):
        summary = summaries.get(job["id"], {})
        rows.append({"job": job, "words": _words(job, zone_name), "dot": _dot(job, summary),
                     "last": summary.get("last"), "active": summary.get("active"),
                     "rate": summary.get("success_rate"),
                     "spark": charts.sparkline(summary.get("durations", []))})
    failing = sum(r["dot"] in ("failed", "timeout", "killed", "interrupted", "blocked") for r in rows)
    return _render(request, "jobs.html", {"rows": rows, "failing": failing, "title": "Jobs"})


def job(request: Request) -> HTMLResponse:
    from cron_scheduler.control import usual_duration
    from cron_scheduler.history import History
    from cron_scheduler.home import load_config
    from cron_scheduler.views import graph_view, show_view
    home, job_id = home_of(request), job_id_of(request)
    view = show_view(home, job_id)
    before = int_param(request, "before", None, 1)
    runs = data.job_runs(home, job_id, PAGE, before)
    usual = None
    if home.state_db.exists():
        with History.opened(home) as history:
            usual = usual_duration(history, job_id)
    recent = list(reversed(data.job_runs(home, job_id, 100, None)))
    context = {"job": view, "words": _words(view, load_config(home).timezone), "runs": runs,
               "older": runs[-1]["run_id"] if len(runs) == PAGE else None, "before": before,
               "chart": charts.duration_chart(recent, usual), "usual": usual,
               "graph": charts.dependency_graph(graph_view(home, job_id)),
               "alerts": data.job_alerts(home, job_id), "command": shown_command(view),
               "title": job_id}
    return _render(request, "job.html", context)


def run(request: Request) -> HTMLResponse:
    from cron_scheduler.control import require_run, run_view
    home, run_id = home_of(request), run_id_of(request)
    view = run_view(require_run(home, run_id))
    log, offset = read_log(home, run_id, None)
    context = {"run": view, "active": view["status"] in ACTIVE, "log": log.decode("utf-8", "replace"),
               "offset": offset, "clipped": offset > len(log), "tail": LOG_TAIL, "title": f"run {run_id}",
               "lag": data.seconds_between(view["scheduled_for"], view["started_at"])}
    return _render(request, "run.html", context)


def timeline(request: Request) -> HTMLResponse:
    from cron_scheduler.jobs import JobService
    from cron_scheduler.views import text_zone
    home = home_of(request)
    hours = int_param(request, "hours", None, 1, MAX_HOURS)
    now = utcnow()
    start = now - timedelta(hours=hours or DEFAULT_HOURS)
    runs = data.runs_between(home, start, now)
    if hours is None:
        start = fitted_start(runs, start, now)
    window = now - start
    job_ids = sorted(JobService(home).all()) if home.jobs.exists() else []
    svg = charts.gantt(runs, job_ids, start, now + window / 40, now, zone=text_zone(home))
    counts = {}
    for r in runs:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    return _render(request, "timeline.html", {"svg": svg, "hours": hours or DEFAULT_HOURS, "fitted": hours is None,
                                              "window": span(window.total_seconds(), whole=True),
                                              "counts": sorted(counts.items()), "title": "Timeline"})


def fitted_start(runs: list[dict[str, Any]], start, now):
    """Without ?hours, the window starts a little before the first of the runs of the last
    DEFAULT_HOURS (at least MIN_WINDOW wide), so a few runs of seconds are not slivers."""
    firsts = [t for t in (parse_iso(r["queued_at"] or r["started_at"] or r["scheduled_for"]) for r in runs) if t]
    if not firsts:
        return start
    earliest = max(min(firsts), start)
    return max(start, now - max(MIN_WINDOW, (now - earliest) * 1.05))
