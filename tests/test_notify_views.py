"""history and show: a run's duration against the job's usual p50/p95; `alerts` on a home."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from cron_scheduler.control import history_view
from cron_scheduler.history import History
from cron_scheduler.home import Home
from cron_scheduler.jobs import JobService, job_from_options
from cron_scheduler.models import RunStatus, to_iso
from cron_scheduler.notify.views import alert_rows
from cron_scheduler.views import show_view

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def seed(home: Home, seconds: list[float]) -> None:
    with History.opened(home) as history:
        for i, took in enumerate(seconds):
            start = T0 + timedelta(minutes=i)
            run_id = history.add_run(RunStatus.QUEUED, to_iso(start), job_id="backup", scheduled_for=to_iso(start),
                                     trigger="manual", queued_at=to_iso(start))
            history.transition(run_id, RunStatus.RUNNING, to_iso(start), started_at=to_iso(start))
            history.transition(run_id, RunStatus.SUCCEEDED, to_iso(start), exit_code=0,
                               finished_at=to_iso(start + timedelta(seconds=took)))


def test_history_and_show_give_the_usual_duration(home):
    h = Home.at(home).ensure()
    JobService(h).add(job_from_options("backup", {"schedule": "@daily", "command": ["true"]}))
    seed(h, [4.0])
    assert show_view(h, "backup", usual=True)["usual_p50"] is None  # fewer than 5 successful runs: not learned
    seed(h, [1.0, 2.0, 3.0, 10.0, 5.0])  # with the 4s run: p50 3s (nearest rank), p95 10s
    rows = history_view(h, "backup", 50, None)
    assert {(r["usual_p50"], r["usual_p95"]) for r in rows} == {(3.0, 10.0)}
    shown = show_view(h, "backup", usual=True)
    assert (shown["usual_p50"], shown["usual_p95"]) == (3.0, 10.0)


def test_alerts_of_a_home_without_a_sender_is_empty(home):
    h = Home.at(home).ensure()
    assert alert_rows(h, 10) == []
    History.open(h).close()
    assert alert_rows(h, 10) == []
