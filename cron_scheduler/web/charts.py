"""Charts as server-rendered SVG strings (no script, no CDN): the jobs' sparklines, a job's
duration chart with its p50/p95 band, the timeline (a Gantt chart of runs, one row per job)
and the dependency graph. Every text put in the SVG is escaped."""

from __future__ import annotations

from datetime import datetime, timedelta
from html import escape
from typing import Any

from cron_scheduler.humanize import span
from cron_scheduler.models import parse_iso

COLOURS = {"succeeded": "#2e9d4f", "failed": "#d03b3b", "timeout": "#e07b00", "killed": "#8e44ad",
           "interrupted": "#b35c00", "running": "#2f74d0", "queued": "#9bb8e8", "waiting": "#c7d3e6",
           "skipped": "#a0a0a0", "blocked": "#6b6b6b", "missed": "#c9a400"}


def colour(status: str) -> str:
    return COLOURS.get(status, "#888")


def sparkline(durations: list[float], width: int = 120, height: int = 24) -> str:
    if len(durations) < 2:
        return f'<svg class="spark" width="{width}" height="{height}" role="img" aria-label="too few runs"></svg>'
    top = max(durations) or 1.0
    step = (width - 4) / (len(durations) - 1)
    points = " ".join(f"{2 + i * step:.1f},{height - 2 - d / top * (height - 4):.1f}" for i, d in enumerate(durations))
    return (f'<svg class="spark" width="{width}" height="{height}" role="img" '
            f'aria-label="durations of the last {len(durations)} runs, longest {escape(span(top))}">'
            f'<polyline fill="none" stroke="#2f74d0" stroke-width="1.5" points="{points}"/></svg>')


def duration_chart(runs: list[dict[str, Any]], usual: tuple[float, float] | None,
                   width: int = 720, height: int = 200) -> str:
    """Each run's duration (oldest left) as a dot in its status colour; the band is the job's
    usual p50..p95."""
    timed = [r for r in runs if r["duration"] is not None]
    if not timed:
        return '<p class="muted">no finished runs yet</p>'
    left, bottom, top_pad = 56, 20, 10
    top = max([r["duration"] for r in timed] + ([usual[1]] if usual else [])) * 1.1 or 1.0
    plot_w, plot_h = width - left - 10, height - bottom - top_pad

    def y(seconds: float) -> float:
        return top_pad + plot_h - seconds / top * plot_h

    parts = [f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
             f'aria-label="run durations">']
    if usual:
        p50, p95 = usual
        parts.append(f'<rect class="band" x="{left}" y="{y(p95):.1f}" width="{plot_w}" '
                     f'height="{max(y(p50) - y(p95), 1):.1f}" fill="#2f74d0" fill-opacity="0.12"/>')
        for label, value in (("p50", p50), ("p95", p95)):
            parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y(value):.1f}" y2="{y(value):.1f}" '
                         f'stroke="#2f74d0" stroke-dasharray="4 3" stroke-width="1"/>'
                         f'<text x="{left + plot_w - 2}" y="{y(value) - 3:.1f}" text-anchor="end" '
                         f'class="axis">{label} {escape(span(value))}</text>')
    for frac in (0, 0.5, 1):
        value = top * frac
        parts.append(f'<text x="{left - 6}" y="{y(value) + 4:.1f}" text-anchor="end" class="axis">'
                     f'{escape(span(value) if value else "0")}</text>')
    parts.append(f'<line x1="{left}" x2="{left}" y1="{top_pad}" y2="{top_pad + plot_h}" stroke="#bbb"/>')
    step = plot_w / max(len(timed), 1)
    for i, r in enumerate(timed):
        x = left + step * (i + 0.5)
        parts.append(f'<a href="/runs/{int(r["run_id"])}"><circle cx="{x:.1f}" cy="{y(r["duration"]):.1f}" r="4" '
                     f'fill="{colour(r["status"])}"><title>run {int(r["run_id"])}: {escape(r["status"])}, '
                     f'{escape(span(r["duration"]))}</title></circle></a>')
    parts.append("</svg>")
    return "".join(parts)


def _lanes(bars: list[tuple[datetime, datetime, dict]]) -> list[list[tuple[datetime, datetime, dict]]]:
    """Overlapping bars of one job go to separate lanes, so overlaps show as stacked bars."""
    lanes: list[list[tuple[datetime, datetime, dict]]] = []
    for bar in sorted(bars, key=lambda b: b[0]):
        for lane in lanes:
            if lane[-1][1] <= bar[0]:
                lane.append(bar)
                break
        else:
            lanes.append([bar])
    return lanes or [[]]


def gantt(runs: list[dict[str, Any]], job_ids: list[str], start: datetime, end: datetime,
          now: datetime, width: int = 1100, zone=None) -> str:
    """One row per job (a lane per overlapping run). A bar is a run from its start to its end
    (or now), preceded by a pale stretch while it was queued or waiting; a retry has a dashed
    outline; a run that never started (skipped, missed, blocked) is a tick at its slot."""
    label_w, lane_h, head = 150, 16, 22
    plot_w = width - label_w - 10
    total = (end - start).total_seconds() or 1.0

    def x(t: datetime) -> float:
        return label_w + max(0.0, min(1.0, (t - start).total_seconds() / total)) * plot_w

    by_job: dict[str, list] = {j: [] for j in job_ids}
    for r in runs:
        by_job.setdefault(r["job_id"], [])
    rows, body, y = sorted(by_job), [], head
    for r in runs:
        began = parse_iso(r["started_at"])
        queued = parse_iso(r["queued_at"]) or began
        finish = parse_iso(r["finished_at"]) or (now if r["status"] in ("running", "queued", "waiting") else None)
        first = queued or parse_iso(r["scheduled_for"])
        by_job[r["job_id"]].append((first, max(finish or first, first), r))
    for job_id in rows:
        lanes = _lanes(by_job[job_id])
        row_h = lane_h * len(lanes)
        body.append(f'<text x="4" y="{y + 12}" class="label"><a href="/jobs/{escape(job_id)}">{escape(job_id)}</a></text>'
                    f'<line x1="{label_w}" x2="{label_w + plot_w}" y1="{y + row_h}" y2="{y + row_h}" stroke="#eee"/>')
        for n, lane in enumerate(lanes):
            top = y + n * lane_h + 2
            for first, last, r in lane:
                body.append(_bar(r, first, last, x, top, lane_h - 4))
        y += row_h
    grid = []
    step = tick_step(total)
    label = "%H:%M:%S" if step < 60 else "%H:%M" if step < 86400 else "%m-%d"
    for tick in ticks(start, end, step, zone):
        grid.append(f'<line x1="{x(tick):.1f}" x2="{x(tick):.1f}" y1="{head - 4}" y2="{y}" stroke="#f0f0f0"/>'
                    f'<text x="{x(tick):.1f}" y="{head - 8}" text-anchor="middle" class="axis">'
                    f'{tick.astimezone(zone).strftime(label)}</text>')
    grid.append(f'<line x1="{x(now):.1f}" x2="{x(now):.1f}" y1="{head - 4}" y2="{y}" stroke="#d03b3b" '
                f'stroke-dasharray="2 2"><title>now</title></line>')
    return (f'<svg class="gantt" viewBox="0 0 {width} {y + 4}" width="{width}" height="{y + 4}" role="img" '
            f'aria-label="runs per job over time">{"".join(grid)}{"".join(body)}</svg>')


STEPS = (1, 5, 10, 30, 60, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800)


def tick_step(total: float, most: int = 12) -> int:
    """Seconds between two axis ticks: the smallest step giving at most `most` ticks."""
    return next((s for s in STEPS if total / s <= most), STEPS[-1])


def ticks(start: datetime, end: datetime, step: int, zone=None) -> list[datetime]:
    """The instants in (start, end) on whole multiples of `step` of the wall clock of `zone`."""
    local = start.astimezone(zone)
    offset = local.utcoffset().total_seconds() if local.utcoffset() else 0.0
    first = (int(start.timestamp() + offset) // step + 1) * step - offset
    out, t = [], first
    while t < end.timestamp() and len(out) < 100:
        out.append(datetime.fromtimestamp(t, start.tzinfo))
        t += step
    return out


def _bar(r: dict[str, Any], first: datetime, last: datetime, x, top: float, h: float) -> str:
    status, run_id = r["status"], int(r["run_id"])
    title = (f"run {run_id} {escape(r['job_id'])}: {escape(status)}, {escape(r['trigger'])}, attempt {r['attempt']}"
             + (f", wave {r['wave']}" if r["wave"] else "") + (f" - {escape(r['reason'])}" if r["reason"] else ""))
    began = parse_iso(r["started_at"])
    if began is None and status in ("skipped", "missed", "blocked"):
        at = x(parse_iso(r["scheduled_for"]))
        return (f'<a href="/runs/{run_id}"><rect class="tick {escape(status)}" x="{at - 1.5:.1f}" y="{top}" width="3" '
                f'height="{h}" fill="{colour(status)}"><title>{title}</title></rect></a>')
    parts = [f'<a href="/runs/{run_id}"><g class="run {escape(status)}" data-run="{run_id}"><title>{title}</title>']
    wait_end = began or last
    if wait_end > first:  # queued or waiting for dependencies
        parts.append(f'<rect x="{x(first):.1f}" y="{top + h / 4:.1f}" width="{max(x(wait_end) - x(first), 1):.1f}" '
                     f'height="{h / 2:.1f}" fill="{colour("queued")}"/>')
    if began is not None:
        dash = ' stroke="#333" stroke-dasharray="3 2"' if r["attempt"] > 1 else ""
        parts.append(f'<rect x="{x(began):.1f}" y="{top}" width="{max(x(last) - x(began), 2):.1f}" height="{h}" '
                     f'rx="2" fill="{colour(status)}"{dash}/>')
    parts.append("</g></a>")
    return "".join(parts)


def dependency_graph(view: dict[str, Any]) -> str:
    """show's upstream and downstream trees as columns: upstreams left, the job, downstreams right."""
    columns: dict[int, list[str]] = {}
    edges: list[tuple[str, int, str, int]] = []

    def walk(node: dict[str, Any], key: str, depth: int, sign: int) -> None:
        for child in node.get(key, []):
            level = (depth + 1) * sign
            if child["id"] not in columns.setdefault(level, []):
                columns[level].append(child["id"])
            edges.append((node["id"], depth * sign, child["id"], level))
            walk(child, key, depth + 1, sign)

    columns[0] = [view["id"]]
    walk(view, "upstream", 0, -1)
    walk(view, "downstream", 0, 1)
    if len(columns) == 1:
        return '<p class="muted">no dependencies</p>'
    levels = sorted(columns)
    box_w, box_h, gap_x, gap_y = 150, 26, 50, 12
    height = max(len(c) for c in columns.values()) * (box_h + gap_y) + gap_y
    pos = {}
    for i, level in enumerate(levels):
        for j, job_id in enumerate(columns[level]):
            pos[(job_id, level)] = (10 + i * (box_w + gap_x), gap_y + j * (box_h + gap_y))
    width = 20 + len(levels) * (box_w + gap_x) - gap_x
    parts = [f'<svg class="graph" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
             f'aria-label="dependency graph">']
    for a, la, b, lb in edges:
        (ax, ay), (bx, by) = pos[(a, la)], pos[(b, lb)]
        x1, x2 = (ax + box_w, bx) if lb > la else (bx + box_w, ax)
        y1, y2 = (ay, by) if lb > la else (by, ay)
        parts.append(f'<line x1="{x1}" y1="{y1 + box_h / 2}" x2="{x2}" y2="{y2 + box_h / 2}" stroke="#888" '
                     f'marker-end="url(#arrow)"/>')
    parts.append('<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="6" markerHeight="6" '
                 'orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#888"/></marker></defs>')
    for (job_id, level), (bx, by) in pos.items():
        cls = "node self" if level == 0 else "node"
        parts.append(f'<a href="/jobs/{escape(job_id)}"><rect class="{cls}" x="{bx}" y="{by}" width="{box_w}" '
                     f'height="{box_h}" rx="4"/><text x="{bx + box_w / 2}" y="{by + 17}" text-anchor="middle">'
                     f'{escape(job_id)}</text></a>')
    parts.append("</svg>")
    return "".join(parts)
