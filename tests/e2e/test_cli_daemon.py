"""The run commands against the real daemon: stop with nothing to stop, a removed job's
history, logs --follow right after run, and run --with-upstream."""

from __future__ import annotations

from harness import ts

ECHO = """
import os, sys, time
print("start of run", os.environ["CRON_SCHEDULER_RUN_ID"], flush=True)
time.sleep(float(sys.argv[1]))
print("end of run", os.environ["CRON_SCHEDULER_RUN_ID"], flush=True)
"""


def test_stop_with_nothing_running_exits_0_and_says_so(e2e, daemon):
    e2e.create_cron("idle", "@daily", "/bin/true")
    daemon()
    result = e2e.cli("stop", "idle")
    assert result.stdout.strip() == "stop: nothing to stop: no run of idle is queued, waiting or running"
    result = e2e.cli("stop", "--all")
    assert result.stdout.strip() == "stop: nothing to stop: no run is queued, waiting or running"


def test_a_removed_job_keeps_its_history_and_logs(e2e, daemon):
    echo = e2e.script("echo.py", ECHO)
    e2e.create_cron("gone", "@daily", echo, "0")
    daemon()
    [run_id] = e2e.run_ids(e2e.cli("run", "gone", "--wait"))
    e2e.cli("remove", "gone")
    assert [r["run_id"] for r in e2e.history("gone")] == [run_id]
    assert f"end of run {run_id}" in e2e.cli("logs", "gone").stdout
    assert "nothing to stop" in e2e.cli("stop", "gone").stdout


def test_logs_follow_right_after_run_follows_the_new_run(e2e, daemon):
    echo = e2e.script("echo.py", ECHO)
    e2e.create_cron("blocker", "@daily", echo, "3")
    e2e.create_cron("job", "@daily", echo, "0.5")
    daemon("--max-workers", "1")
    [old] = e2e.run_ids(e2e.cli("run", "job", "--wait"))
    e2e.cli("run", "blocker")  # holds the only worker: the next run of job stays queued a while
    [new] = e2e.run_ids(e2e.cli("run", "job"))
    result = e2e.cli("logs", "job", "--follow", timeout=60)
    assert result.stderr.splitlines()[0] in (f"following run {new} (queued)", f"following run {new} (running)")
    assert result.stdout.splitlines() == [f"start of run {new}", f"end of run {new}"]
    assert f"run {old}" not in result.stdout


def test_run_with_upstream_runs_the_chain_in_order_in_one_wave(e2e, daemon):
    echo = e2e.script("echo.py", ECHO)
    e2e.create_cron("a", "@daily", echo, "0.3")
    e2e.create_cron("b", "--depends-on", "a", "@after", echo, "0.2")
    e2e.create_cron("c", "--depends-on", "b", "@after", echo, "0.1")
    e2e.create_cron("side", "--depends-on", "a", "@after", echo, "0")  # downstream of a, not of c
    e2e.create_cron("other", "@daily", echo, "0")
    daemon()
    result = e2e.cli("run", "c", "--with-upstream", "--wait")
    assert result.stdout.splitlines()[0].startswith("run a b c: runs ")
    assert sorted(line.split()[-2:] for line in result.stdout.splitlines()[1:]) == [
        ["a:", "succeeded"], ["b:", "succeeded"], ["c:", "succeeded"], ["side:", "succeeded"]]
    runs = {r["job_id"]: r for r in e2e.history()}
    # like any run, the wave holds what is downstream of its jobs: side, after a (README)
    assert sorted(runs) == ["a", "b", "c", "side"]
    assert len({r["wave"] for r in runs.values()}) == 1
    assert {runs[j]["trigger"] for j in "abc"} == {"manual"}
    assert ts(runs["side"]["started_at"]) >= ts(runs["a"]["finished_at"])
    assert ts(runs["b"]["started_at"]) >= ts(runs["a"]["finished_at"])
    assert ts(runs["c"]["started_at"]) >= ts(runs["b"]["finished_at"])
