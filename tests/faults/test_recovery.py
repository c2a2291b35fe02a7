"""Recovery after kill -9 is gentle and exact: a run that still lives is re-supervised even if
its job was removed meanwhile; what a run that ended while no daemon ran left behind is not
chased; output a dead daemon discarded uncounted makes the record say "lower bound"."""

from __future__ import annotations

import time

import pytest

from cron_scheduler.runner import find_marked

from harness import ACTIVE, pid_alive, wait_until


def running_with_pid(env, job_id: str) -> dict:
    return env.wait_runs(f"{job_id} running with a pid", lambda runs: next(
        (r for r in runs if r["status"] == "running" and r["pid"]), None), job_id)


def final(env, run_id: int, timeout: float = 30) -> dict:
    return env.wait_runs(f"run {run_id} resolved", lambda runs: next(
        (r for r in runs if r["run_id"] == run_id and r["status"] not in ACTIVE), None), timeout=timeout)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_live_run_of_a_job_removed_while_the_daemon_was_down_finishes(faults):
    script = faults.script("slow.py", """
        import sys, time
        print("started", flush=True)
        time.sleep(4)
        print("finished", flush=True)
    """)
    faults.create_cron("slow", "@after", script)
    daemon = faults.start_daemon()
    faults.cli("run", "slow")
    run = running_with_pid(faults, "slow")
    wait_until("its first line", lambda: "started" in open(run["output_path"]).read())
    daemon.kill9()
    faults.cli("remove", "slow")
    faults.start_daemon()
    done = final(faults, run["run_id"])
    assert f"run {run['run_id']} job slow re-supervised" in faults.log_text()
    assert open(run["output_path"]).read() == "started\nfinished\n", "the run was killed at recovery"
    assert done["status"] == "interrupted" and done["signal"] is None, done  # its status is not ours
    assert not pid_alive(run["pid"])


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_what_a_run_that_ended_while_the_daemon_was_down_left_is_not_chased(faults):
    # Without the crash the run would have ended with its main process and its detached
    # helper would have lived on: a crash must not change that.
    script = faults.script("spawner.py", """
        import subprocess, sys, time
        helper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"],
                                  start_new_session=True)
        print(helper.pid, flush=True)
        time.sleep(2)
    """)
    faults.create_cron("spawner", "@after", script)
    daemon = faults.start_daemon()
    faults.cli("run", "spawner")
    run = running_with_pid(faults, "spawner")
    helper = int(wait_until("the helper's pid", lambda: open(run["output_path"]).read().strip()))
    daemon.kill9()
    wait_until("the run's main process to end", lambda: not pid_alive(run["pid"]))
    faults.start_daemon()
    done = final(faults, run["run_id"])
    assert done["status"] == "interrupted", done
    time.sleep(0.5)  # a kill sent at recovery lands well within this
    assert pid_alive(helper), "recovery killed what a finished run left behind"
    assert helper in find_marked(run["marker"])


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_output_discarded_before_a_restart_makes_the_count_a_lower_bound(faults):
    script = faults.script("loud.py", """
        import sys, time
        sys.stdout.write("x" * 50000)
        sys.stdout.flush()
        time.sleep(3)
    """)
    faults.create_cron("loud", "--max-output", "1KB", "@after", script)
    daemon = faults.start_daemon()
    faults.cli("run", "loud")
    run = running_with_pid(faults, "loud")
    wait_until("the log at its cap", lambda: len(open(run["output_path"]).read()) >= 1000)
    daemon.kill9()
    faults.start_daemon()
    done = final(faults, run["run_id"])
    assert f"run {run['run_id']} job loud re-supervised" in faults.log_text()
    assert done["output_bytes"] >= 1000, done
    assert "lower bound" in (done["reason"] or ""), done
