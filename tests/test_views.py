"""Text views: state column and dependency graph."""

import json
import subprocess
import sys

from cron_scheduler.history import History
from cron_scheduler.home import Home
from cron_scheduler.models import Job, RunStatus
from cron_scheduler.store import Store


def cli(home, *args):
    return subprocess.run([sys.executable, "-m", "cron_scheduler", "--home", str(home), *args],
                          capture_output=True, text=True)


def _once_run(home, status: RunStatus, **values) -> None:
    slot = "2020-01-01T00:00:00+00:00"
    with History.opened(Home(home)) as history:
        run_id = history.add_run(RunStatus.QUEUED, slot, job_id="past", scheduled_for=slot, trigger="schedule",
                                 priority=0)
        history.transition(run_id, RunStatus.RUNNING, slot, started_at=slot, pid=42)
        history.transition(run_id, status, slot, finished_at=slot, **values)


def test_once_job_shows_completed_only_after_its_run_succeeded(tmp_path):
    """An @once job past its slot is `completed` only once its run succeeded: a failed one
    shows `failed`, one no daemon ran shows `not run` (text and the JSON `state`)."""
    home = tmp_path / "home"
    # added in 2019 for 2020 (add refuses a time already past)
    with Store(Home(home)).transaction() as jobs:
        jobs["past"] = Job(id="past", schedule="@once", command=("/bin/true",),
                           start_at="2020-01-01T00:00:00+00:00", created_at="2019-12-01T00:00:00+00:00")
    assert cli(home, "add", "future", "--start-at", "2099-01-01T00:00", "@once", "/bin/true").returncode == 0
    assert cli(home, "add", "held", "--paused", "@daily", "/bin/true").returncode == 0

    def states():
        text = {line.split("  ")[0]: line for line in cli(home, "list").stdout.splitlines()[1:]}
        listed = {row["id"]: row["state"] for row in json.loads(cli(home, "list", "--json").stdout)}
        assert json.loads(cli(home, "show", "past", "--json").stdout)["state"] == listed["past"]
        assert all(f"  {listed[j]}  " in text[j] for j in listed), text
        return listed

    assert states() == {"past": "not run", "future": "enabled", "held": "paused"}
    _once_run(home, RunStatus.FAILED, exit_code=1)
    assert states()["past"] == "failed"
    _once_run(home, RunStatus.SUCCEEDED, exit_code=0)
    assert states()["past"] == "completed"
    # editing the past job's other fields is fine; moving it to another past time is not
    assert cli(home, "update", "past", "--description", "kept").returncode == 0
    moved = cli(home, "update", "past", "--start-at", "2021-01-01T00:00")
    assert moved.returncode == 2 and "in the past: an @once job would never run" in moved.stderr


def test_graph_prints_downstream_jobs_indented_under_their_upstream(tmp_path):
    home = tmp_path / "home"
    cli(home, "add", "extract", "@daily", "/bin/true")
    cli(home, "add", "transform", "--depends-on", "extract", "@after", "/bin/true")
    cli(home, "add", "load", "--depends-on", "transform", "@after", "/bin/true")
    out = cli(home, "graph").stdout.splitlines()
    assert out[0].startswith("extract [@daily]")
    assert out[1].strip().startswith("└── transform") and out[1].startswith("    ")
    assert out[2].strip().startswith("└── load") and out[2].startswith("        ")
    unknown = cli(home, "graph", "nope")
    assert unknown.returncode == 1 and "nope" in unknown.stderr
