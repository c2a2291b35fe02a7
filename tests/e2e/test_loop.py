"""The daemon's loop never spins: work that is due but cannot start (no free worker, its job
still running) waits for a run to end, while output keeps being drained. Real daemon, real
processes; CPU time read from /proc/PID/stat."""

from __future__ import annotations

import os
import time

import pytest

from harness import Env, ts, wait_until

BIG = 256 * 1024  # well past a pipe's 64 KiB buffer: the run blocks unless the daemon reads


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def printer(env: Env, name: str, delay: float) -> str:
    """A job script: sleeps `delay` seconds, then prints BIG bytes and exits 0."""
    return str(env.script(name, f"""
        import sys, time
        time.sleep({delay})
        sys.stdout.write("x" * {BIG})
    """))


def block_a_retry(env: Env, hog: str) -> dict:
    """With one worker: `flaky` fails and has a retry 1 s later; `hog` takes the worker first.
    Returns the retry once it is due and still queued (blocked)."""
    env.create_cron("flaky", "--retries", "1", "--retry-delay", "1s", "@after", "/bin/false")
    env.create_cron("hog", "@after", hog)
    env.cli("run", "flaky")
    env.wait_runs("flaky failed", lambda runs: any(r["status"] == "failed" for r in runs), "flaky")
    env.cli("run", "hog")
    env.wait_runs("hog running", lambda runs: any(r["status"] == "running" for r in runs), "hog")
    retry = env.wait_runs("the retry queued", lambda runs: next(
        (r for r in runs if r["trigger"] == "retry"), None), "flaky")
    wait_until("the retry due", lambda: time.time() > ts(retry["not_before"]) + 0.3, interval=0.05)
    assert env.runs("flaky")[-1]["status"] == "queued", env.describe_runs()
    return retry


@pytest.mark.timeout(120)
def test_a_due_retry_blocked_by_a_busy_pool_does_not_spin(e2e):
    daemon = e2e.start_daemon("--max-workers", "1")
    block_a_retry(e2e, str(e2e.script("hog.py", "import time; time.sleep(600)\n")))
    window = 3.0
    c0, t0 = cpu_seconds(daemon.pid), time.monotonic()
    time.sleep(window)
    used, elapsed = cpu_seconds(daemon.pid) - c0, time.monotonic() - t0
    assert used < 0.2 * elapsed, f"daemon used {used:.2f}s CPU in {elapsed:.2f}s while a retry waited"
    assert e2e.runs("flaky")[-1]["status"] == "queued"
    e2e.cli("stop", "hog")  # the worker frees up: that, not a timeout, starts the retry
    e2e.wait_runs("the retry ran", lambda runs: runs[-1]["trigger"] == "retry"
                  and runs[-1]["status"] == "failed", "flaky")


@pytest.mark.timeout(120)
def test_a_run_printing_past_the_pipe_buffer_finishes_while_a_retry_is_blocked(e2e):
    e2e.start_daemon("--max-workers", "1")
    block_a_retry(e2e, printer(e2e, "hog.py", 3.0))
    hog = e2e.wait_runs("hog finished", lambda runs: next(
        (r for r in runs if r["status"] not in ("queued", "running")), None), "hog", timeout=40)
    assert hog["status"] == "succeeded" and hog["output_bytes"] == BIG, hog
    e2e.wait_runs("the retry ran", lambda runs: runs[-1]["trigger"] == "retry"
                  and runs[-1]["status"] == "failed", "flaky")


@pytest.mark.timeout(120)
def test_once_with_a_timed_job_drains_output_and_exits(e2e):
    # A job due every second keeps falling due while --once waits for its runs (it takes due
    # slots only once, at start): that must not turn into a zero timeout.
    e2e.create_cron("tick", "@every 1s", "/bin/true")
    e2e.create_cron("big", "@after", printer(e2e, "big.py", 2.5))
    e2e.cli("run", "big")
    e2e.run_once(timeout=60)
    big = e2e.runs("big")[-1]
    assert big["status"] == "succeeded" and big["output_bytes"] == BIG, big
