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


def test_run_wait_without_a_daemon_exits_1_says_so_and_queues_nothing(e2e, daemon):
    e2e.create_cron("hello", "*/5 * * * *", "/bin/echo", "hello")
    result = e2e.cli("run", "hello", "--wait", "--timeout", "3", check=False)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.splitlines() == [
        f"cron-scheduler: error: no daemon is running for {e2e.home}: nothing ran and nothing was queued; "
        "start one with `cron-scheduler daemon` (or `python -m cron_scheduler.scheduler`, or its systemd unit)"]
    daemon()  # a daemon started later finds no request to run
    assert e2e.query("SELECT * FROM requests") == [] and e2e.runs("hello") == []
    # without --wait the request is queued for the daemon to come, as before
    assert "queued; no daemon" not in e2e.cli("run", "hello").stderr


def test_the_daemons_start_line_and_status_show_the_log_path(e2e, daemon):
    d = daemon()
    log = e2e.home / "scheduler.log"
    assert f"daemon started: pid {d.pid}, home {e2e.home}, log {log}, " in d.stderr()
    assert f"\nlog       {log}\n" in e2e.cli("status").stdout and e2e.json("status")["log"] == str(log)


def test_add_warns_when_no_daemon_serves_the_home_and_not_when_one_does(e2e, daemon):
    result = e2e.create_cron("early", "*/5 * * * *", "/bin/true")
    assert result.returncode == 0 and "early: saved" in result.stdout
    assert result.stderr.splitlines() == [
        f"create_cron: warning: early: no daemon is running for {e2e.home}, so nothing will run it until one "
        "starts; start one with `cron-scheduler daemon` (or `python -m cron_scheduler.scheduler`, or its systemd unit)"]
    daemon()
    result = e2e.create_cron("later", "*/5 * * * *", "/bin/true")
    assert result.returncode == 0 and result.stderr == ""


def test_explain_says_what_comes_next_and_why(e2e, daemon):
    """For a job never run and a slot still to come, explain says what will happen and why:
    the next slot, not a slot (the next one after it), paused, the upstreams it waits for,
    before start_at, no daemon; --json holds the same lines and the runs."""
    e2e.create_cron("up", "0 3 * * *", "/bin/false")
    e2e.create_cron("down", "--depends-on", "up", "30 3 * * *", "/bin/true")
    lines = e2e.cli("explain", "down").stdout.splitlines()
    assert lines[0] == "down: no runs recorded yet"
    assert lines[1].startswith("next: slot ") and "T03:30:00+00:00 (in " in lines[1]
    assert lines[2] == "it then runs once its upstreams succeeded: up (no run yet: it waits for one that succeeds)"
    assert lines[3] == "no daemon is running for this home: nothing fires until one starts"
    coming = e2e.cli("explain", "down", "--at", "2099-01-01T03:30:00+00:00").stdout.splitlines()[0]
    assert coming.startswith("2099-01-01T03:30:00+00:00 is a slot still to come (in ")
    assert e2e.cli("explain", "down", "--at", "2099-01-01T03:31:00+00:00").stdout.splitlines()[0] == (
        "2099-01-01T03:31:00+00:00 is not a slot of this schedule; its next slot after it is 2099-01-02T03:30:00+00:00")

    e2e.cli("remove", "down")
    daemon()
    failed = e2e.run_ids(e2e.cli("run", "up", "--wait", check=False))[0]
    e2e.create_cron("after-up", "--depends-on", "up", "30 3 * * *", "/bin/true")
    lines = e2e.cli("explain", "after-up").stdout.splitlines()
    assert lines[-1] == f"it then runs once its upstreams succeeded: up (its last run {failed} failed: it would be blocked)"
    e2e.cli("pause", "after-up")
    view = e2e.json("explain", "after-up")
    assert view["state"] == "paused" and view["next_run"] is None and view["runs"] == []
    assert view["lines"][0] == "after-up: paused, so it gets no new slots (`cron-scheduler resume after-up`)"
    assert view["lines"][-1].startswith("next: nothing while it is paused (its next slot would be ")

    e2e.create_cron("later", "--start-at", "2099-06-01T00:00:00+00:00", "0 0 * * *", "/bin/true")
    assert e2e.cli("explain", "later", "--at", "2098-01-01T00:00:00+00:00").stdout.splitlines()[0] == (
        "2098-01-01T00:00:00+00:00 is before the job's start_at (2099-06-01T00:00:00+00:00); "
        "its next slot after it is 2099-06-01T00:00:00+00:00")
    up = e2e.json("explain", "up")
    assert [r["run_id"] for r in up["runs"]] == [failed] and up["runs"][0]["status"] == "failed"
    assert up["lines"][0].startswith(f"run {failed} (manual, slot ") and up["lines"][0].endswith("): failed - exit 1")
