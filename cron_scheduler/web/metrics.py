"""/metrics: Prometheus text, computed from state.db at each scrape (a custom collector on a
registry of its own, so nothing is counted in this process's memory and a restart of the
daemon or of the web loses nothing).

- cron_scheduler_runs_total{job,status}: runs that reached each final status (from the
  run_events outbox, never pruned: they survive restarts and history retention);
- cron_scheduler_missed_slots_total{job}: slots missed while no daemon ran (coalesced ranges
  count each slot while their run is still in the history, else one);
- cron_scheduler_run_duration_seconds{job} and cron_scheduler_start_lag_seconds{job}
  (histograms over the runs in the history: start - scheduled slot, for timer slots);
- cron_scheduler_queued_runs, cron_scheduler_waiting_runs, cron_scheduler_running_runs;
- cron_scheduler_last_success_timestamp_seconds{job};
- cron_scheduler_alerts_total{channel,status}: alerts sent, failed, suppressed, pending.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import Response

from cron_scheduler.models import parse_iso
from cron_scheduler.web.data import metric_rows, seconds_between

DURATION_BUCKETS = (0.1, 0.5, 1, 5, 10, 30, 60, 300, 600, 1800, 3600, 7200, 21600, 86400)
LAG_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300)
TIMER_TRIGGERS = ("schedule", "catch-up")


def _histogram(name: str, doc: str, values: dict[str, list[float]], buckets) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, doc, labels=["job"])
    for job_id, seen in sorted(values.items()):
        counts = [sum(v <= b for v in seen) for b in buckets]
        family.add_metric([job_id], [(str(float(b)), c) for b, c in zip(buckets, counts)] + [("+Inf", len(seen))],
                          sum(seen))
    return family


class StateCollector:
    def __init__(self, home):
        self.home = home

    def collect(self):
        rows = metric_rows(self.home)
        runs = CounterMetricFamily("cron_scheduler_runs", "Runs that reached each final status.",
                                   labels=["job", "status"])
        for job_id, status, count in rows.get("outcomes", []):
            runs.add_metric([job_id, status], count)
        yield runs
        missed = CounterMetricFamily("cron_scheduler_missed_slots", "Slots missed while no daemon ran.",
                                     labels=["job"])
        for job_id, count in rows.get("missed", []):
            missed.add_metric([job_id], count or 0)
        yield missed
        durations: dict[str, list[float]] = {}
        lags: dict[str, list[float]] = {}
        for job_id, scheduled, started, finished, trigger in rows.get("timings", []):
            took = seconds_between(started, finished)
            if took is not None:
                durations.setdefault(job_id, []).append(max(took, 0.0))
            lag = seconds_between(scheduled, started)
            if lag is not None and trigger in TIMER_TRIGGERS:
                lags.setdefault(job_id, []).append(max(lag, 0.0))
        yield _histogram("cron_scheduler_run_duration_seconds", "Duration of the runs in the history.",
                         durations, DURATION_BUCKETS)
        yield _histogram("cron_scheduler_start_lag_seconds", "Start minus scheduled slot of timer runs in the history.",
                         lags, LAG_BUCKETS)
        active = dict(rows.get("active", []))
        for status in ("queued", "waiting", "running"):
            yield GaugeMetricFamily(f"cron_scheduler_{status}_runs", f"Runs {status} now.", value=active.get(status, 0))
        last = GaugeMetricFamily("cron_scheduler_last_success_timestamp_seconds",
                                 "When each job last succeeded (Unix time).", labels=["job"])
        for job_id, at in rows.get("last_success", []):
            last.add_metric([job_id], parse_iso(at).timestamp())
        yield last
        alerts = CounterMetricFamily("cron_scheduler_alerts", "Alerts by channel and status.",
                                     labels=["channel", "status"])
        for channel, status, count in rows.get("alerts", []):
            alerts.add_metric([channel, status], count)
        yield alerts


def endpoint(request: Request) -> Response:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StateCollector(request.app.state.home))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
