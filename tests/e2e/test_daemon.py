"""End-to-end: the real daemon running real child processes in a temp home (issue: daemon).

Every expectation is polled for (history --json, scheduler.log, /proc) with a generous
deadline; nothing is asserted after a fixed sleep.
"""

from __future__ import annotations

import os
import signal
from datetime import datetime, timedelta

import pytest

from harness import pid_exists, pid_state, ts, wait_until

MiB = 1024 * 1024

ENV_SCRIPT = """
import os
for key in ("CRON_SCHEDULER_JOB", "CRON_SCHEDULER_RUN_ID", "CRON_SCHEDULER_SCHEDULED_FOR"):
    print(f"{key}={os.environ.get(key)}")
"""

SLEEPER = """
import time
print("sleeping", flush=True)
time.sleep(120)
"""


def latest(runs, **match):
    hits = [r for r in runs if all(r[k] == v for k, v in match.items())]
    return hits[-1] if hits else None


# --- one run, its outcome ----------------------------------------------------------------

def test_every_second_job_succeeds_and_sees_its_environment(e2e, daemon):
    script = e2e.script("env.py", ENV_SCRIPT)
    e2e.create_cron("tick", "* * * * * *", script)
    daemon()
    # slots between create_cron and the daemon's start are caught up (catch-up=latest): wait for
    # an on-time one
    ok = e2e.wait_history("an on-time run of tick to succeed", lambda runs: next(
        (r for r in runs if r["status"] == "succeeded" and r["trigger"] == "schedule"), None), "tick")
    assert ok["exit_code"] == 0 and ok["signal"] is None and ok["attempt"] == 1
    assert not ok["truncated"]
    # no new runs once paused, so that "--run last" names a finished run
    e2e.cli("pause", "tick")
    e2e.wait_history("no active run of tick after pause",
                     lambda runs: runs and all(r["status"] not in ("queued", "running", "waiting") for r in runs)
                     and "job tick changed" in e2e.log_text(), "tick")
    last = [r for r in e2e.history("tick") if r["output_path"]][-1]
    assert last["status"] == "succeeded"
    out = e2e.cli("logs", "tick", "--run", "last").stdout
    assert "CRON_SCHEDULER_JOB=tick" in out
    assert f"CRON_SCHEDULER_RUN_ID={last['run_id']}" in out
    assert f"CRON_SCHEDULER_SCHEDULED_FOR={last['scheduled_for']}" in out
    slot = datetime.fromisoformat(last["scheduled_for"])
    assert slot.utcoffset().total_seconds() == 0 and slot.microsecond == 0


def test_nonzero_exit_is_failed_with_its_code(e2e, daemon):
    script = e2e.script("three.py", "import sys\nprint('bad')\nsys.exit(3)\n")
    e2e.create_cron("three", "@after", script)
    daemon()
    e2e.cli("run", "three")
    run = e2e.wait_status("three", "failed")[0]
    assert run["exit_code"] == 3 and run["signal"] is None and run["trigger"] == "manual"


def test_death_by_signal_is_failed_with_the_signal_name(e2e, daemon):
    script = e2e.script("suicide.py", "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n")
    e2e.create_cron("suicide", "@after", script)
    daemon()
    e2e.cli("run", "suicide")
    run = e2e.wait_status("suicide", "failed")[0]
    assert run["signal"] == "SIGKILL" and run["exit_code"] is None


TREE = """
import os, signal, subprocess, sys, time
role, pids = sys.argv[1], sys.argv[2]
with open(pids, "a") as f:
    f.write(f"{role} {os.getpid()}\\n")
if role == "main":
    subprocess.Popen([sys.executable, __file__, "stubborn", pids])
elif role == "stubborn":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    subprocess.Popen([sys.executable, __file__, "escaper", pids])
elif role == "escaper":
    os.setsid()
time.sleep(120)
"""


@pytest.mark.slow
def test_timeout_kills_the_whole_tree(e2e, daemon):
    pids_file = e2e.tmp / "pids.txt"
    script = e2e.script("tree.py", TREE)
    e2e.create_cron("tree", "--timeout", "2s", "@after", script, "main", pids_file)
    daemon()
    e2e.cli("run", "tree")
    run = e2e.wait_status("tree", "timeout")[0]
    assert run["trigger"] == "manual"
    assert "2s cap" in (run["reason"] or "")
    pids = {}
    for line in pids_file.read_text().splitlines():
        role, pid = line.split()
        pids[role] = int(pid)
    assert set(pids) == {"main", "stubborn", "escaper"}, pids  # all three started within the cap
    # The run is recorded once no process of it is left; zombies are reaped by the daemon
    # (a child subreaper) right after, so give /proc a moment.
    wait_until("every process of the timed-out run to be gone",
               lambda: not any(pid_exists(p) for p in pids.values()), timeout=10,
               describe=lambda: str({r: (p, pid_state(p)) for r, p in pids.items()}))


def test_stop_kills_a_running_run(e2e, daemon):
    e2e.create_cron("sleeper", "@after", e2e.script("sleep.py", SLEEPER))
    daemon()
    e2e.cli("run", "sleeper")
    running = e2e.wait_status("sleeper", "running")[0]
    assert running["pid"]
    out = e2e.cli("stop", "sleeper").stdout
    assert str(running["run_id"]) in out
    run = e2e.wait_status("sleeper", "killed")[0]
    assert run["run_id"] == running["run_id"]
    assert "stopped by user" in run["reason"]
    wait_until("the stopped run's process to be gone", lambda: not pid_exists(running["pid"]), timeout=10)


def test_manual_run_with_wait(e2e, daemon):
    e2e.create_cron("hello", "0 0 1 1 *", e2e.script("hello.py", "print('hello')\n"))
    daemon()
    result = e2e.cli("run", "hello", "--wait", "--timeout", "30")
    ids = e2e.run_ids(result)
    assert len(ids) == 1
    assert f"run {ids[0]} hello: succeeded" in result.stdout
    run = latest(e2e.history("hello"), run_id=ids[0])
    assert run["status"] == "succeeded" and run["trigger"] == "manual" and run["exit_code"] == 0
    assert e2e.cli("logs", "hello", "--run", str(ids[0])).stdout == "hello\n"


def test_manual_run_with_wait_exits_1_when_the_run_fails(e2e, daemon):
    e2e.create_cron("bad", "@after", e2e.script("bad.py", "raise SystemExit(5)\n"))
    daemon()
    result = e2e.cli("run", "bad", "--wait", "--timeout", "30", check=False)
    assert result.returncode == 1, result
    assert "bad: failed" in result.stdout


def test_output_cap_truncates_the_log_and_counts_every_byte(e2e, daemon):
    script = e2e.script("chatty.py", """
        import sys
        block = b"x" * (1024 * 1024)
        for _ in range(50):
            sys.stdout.buffer.write(block)
        sys.stdout.flush()
    """)
    e2e.create_cron("chatty", "--max-output", "1MB", "@after", script)
    daemon()
    e2e.cli("run", "chatty")
    run = e2e.wait_status("chatty", "succeeded")[0]
    assert run["truncated"] is True
    assert run["output_bytes"] == 50 * MiB
    assert os.path.getsize(run["output_path"]) == 1 * MiB
    logs = e2e.cli("logs", "chatty", "--run", str(run["run_id"]))
    assert len(logs.stdout) == 1 * MiB
    assert "truncated" in logs.stderr


# --- the store is watched ----------------------------------------------------------------

@pytest.mark.slow
def test_hot_reload_add_pause_resume(e2e, daemon):
    ok = e2e.script("ok.py", "print('ok')\n")
    e2e.create_cron("clock", "* * * * * *", ok)  # a second job, used as a clock
    daemon()
    e2e.create_cron("late", "* * * * * *", ok)
    e2e.wait_status("late", "succeeded")

    e2e.cli("pause", "late")
    wait_until("the daemon to see the pause", lambda: "job late changed" in e2e.log_text())
    before = {r["run_id"] for r in e2e.history("late")}
    clock_before = max(r["run_id"] for r in e2e.history("clock"))
    # let time pass, measured by the clock job: three more of its slots
    e2e.wait_history("three more clock runs",
                     lambda runs: len([r for r in runs if r["run_id"] > clock_before
                                       and r["status"] == "succeeded"]) >= 3, "clock")
    after = e2e.history("late")
    assert {r["run_id"] for r in after} == before, "a paused job got new runs"
    assert all(r["status"] not in ("queued", "running", "waiting") for r in after)

    e2e.cli("resume", "late")
    e2e.wait_history("a run of late after resume",
                     lambda runs: any(r["run_id"] not in before and r["status"] == "succeeded" for r in runs),
                     "late")


# --- signals, instances, permissions ----------------------------------------------------

def test_sigterm_during_a_run_records_it_killed_and_exits_0(e2e, daemon):
    e2e.create_cron("long", "@after", e2e.script("sleep.py", SLEEPER))
    d = daemon()
    e2e.cli("run", "long")
    running = e2e.wait_status("long", "running")[0]
    d.proc.send_signal(signal.SIGTERM)
    assert d.wait(30) == 0, d.stderr()
    run = latest(e2e.history("long"), run_id=running["run_id"])
    assert run["status"] == "killed"
    assert "shutdown" in run["reason"]
    assert "daemon stopped" in e2e.log_text()
    wait_until("the run's process to be gone", lambda: not pid_exists(running["pid"]), timeout=10)


def test_second_daemon_on_the_same_home_exits_1(e2e, daemon):
    first = daemon()
    second = daemon(wait_started=False)
    assert second.wait(30) == 1
    assert f"already running (pid {first.pid})" in second.stderr()
    assert first.alive()
    assert e2e.json("status")["pid"] == first.pid


def test_once_processes_a_pending_run_request_and_exits_0(e2e):
    e2e.create_cron("once", "0 0 1 1 *", e2e.script("once.py", "print('done')\n"))
    queued = e2e.cli("run", "once")
    assert "no daemon is running" in queued.stderr
    d = e2e.start_daemon("--once", wait_started=False)
    assert d.wait(30) == 0, d.stderr()
    runs = e2e.history("once")
    assert [(r["status"], r["trigger"]) for r in runs] == [("succeeded", "manual")]


def test_daemon_refuses_a_group_writable_home(e2e):
    e2e.home.chmod(0o770)
    try:
        d = e2e.start_daemon(wait_started=False)
        assert d.wait(30) == 1
        err = d.stderr()
        assert "insecure" in err and "writable by group or others" in err and str(e2e.home) in err
        assert "Traceback" not in err
        assert "daemon started" not in e2e.log_text()
    finally:
        e2e.home.chmod(0o700)


def test_daemon_refuses_a_group_writable_store(e2e):
    e2e.create_cron("x", "@after", e2e.script("x.py", "pass\n"))
    (e2e.home / "jobs.json").chmod(0o620)
    d = e2e.start_daemon(wait_started=False)
    assert d.wait(30) == 1
    assert "jobs.json" in d.stderr() and "writable by group or others" in d.stderr()


def test_status_shows_the_running_daemon(e2e, daemon):
    assert e2e.json("status")["daemon_running"] is False
    d = daemon()
    status = e2e.json("status")
    assert status["daemon_running"] is True
    assert status["pid"] == d.pid
    assert status["home"] == str(e2e.home)
    assert d.terminate() == 0
    assert e2e.json("status")["daemon_running"] is False


# --- crash recovery ------------------------------------------------------------------------

def test_kill_9_then_restart_records_the_run_interrupted(e2e, daemon):
    e2e.create_cron("victim", "@after", e2e.script("sleep.py", SLEEPER))
    d = daemon()
    e2e.cli("run", "victim")
    running = e2e.wait_status("victim", "running")[0]
    pid = running["pid"]
    assert pid and pid_exists(pid)
    d.kill9()
    os.kill(pid, signal.SIGKILL)  # the run dies with the machine's daemon, say
    wait_until("the run's process to die", lambda: pid_state(pid) in (None, "Z"), timeout=10)
    assert latest(e2e.history("victim"), run_id=running["run_id"])["status"] == "running"

    daemon()
    run = e2e.wait_history("the orphaned run to be resolved",
                           lambda runs: (lambda r: r if r and r["status"] != "running" else None)(
                               latest(runs, run_id=running["run_id"])), "victim")
    assert run["status"] == "interrupted"
    assert "daemon stopped" in run["reason"]
    assert run["finished_at"] is not None
    assert not [r for r in e2e.history("victim") if r["status"] in ("running", "queued")]


def test_timeout_of_a_job_edited_while_it_runs_does_not_crash_the_daemon(e2e, daemon):
    """Regression: recording a timeout read the job's *current* timeout, None after the edit."""
    e2e.create_cron("edited", "--timeout", "2s", "@after", e2e.script("sleep.py", SLEEPER))
    d = daemon()
    e2e.cli("run", "edited")
    e2e.wait_status("edited", "running")
    e2e.cli("update", "edited", "--timeout", "none")
    wait_until("the daemon to see the edit", lambda: "job edited changed" in e2e.log_text())
    run = e2e.wait_status("edited", "timeout")[0]  # the cap in force when it started still applies
    assert "cap" in run["reason"]
    assert d.alive(), d.stderr()
    assert "Traceback" not in d.stderr()


def test_sighup_with_a_broken_config_keeps_the_daemon_running(e2e, daemon):
    """Regression: SIGHUP re-read config.toml unguarded; a typo in it killed the daemon."""
    e2e.create_cron("ok", "@after", e2e.script("ok.py", "print('ok')\n"))
    d = daemon()
    (e2e.home / "config.toml").write_text("max_wrokers = 3\n")
    d.proc.send_signal(signal.SIGHUP)
    wait_until("the bad config to be reported", lambda: "config not reloaded" in e2e.log_text())
    assert "max_wrokers" in e2e.log_text()
    assert d.alive(), d.stderr()
    result = e2e.cli("run", "ok", "--wait", "--timeout", "30")
    assert "ok: succeeded" in result.stdout


GATED = """
import os, sys, time
while not os.path.exists(sys.argv[1]):   # silent: no output to a pipe the old daemon held
    time.sleep(0.05)
"""


def test_kill_9_then_restart_re_supervises_a_live_run(e2e, daemon):
    gate = e2e.tmp / "gate"
    e2e.create_cron("survivor", "@after", e2e.script("gated.py", GATED), gate)
    d = daemon()
    e2e.cli("run", "survivor")
    running = e2e.wait_status("survivor", "running")[0]
    d.kill9()
    assert pid_state(running["pid"]) not in (None, "Z")  # the run outlived its daemon

    daemon()
    wait_until("the run to be re-supervised",
               lambda: f"run {running['run_id']} job survivor re-supervised" in e2e.log_text())
    assert latest(e2e.history("survivor"), run_id=running["run_id"])["status"] == "running"
    gate.touch()
    run = e2e.wait_history("the re-supervised run to end",
                           lambda runs: (lambda r: r if r and r["status"] != "running" else None)(
                               latest(runs, run_id=running["run_id"])), "survivor")
    # not our child any more: its exit status is unknowable
    assert run["status"] == "interrupted", run
    assert "unknown" in run["reason"]


STUBBORN = """
import signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("ignoring SIGTERM", flush=True)
time.sleep(300)
"""


def test_sighup_applies_kill_grace_and_log_rotation_settings(e2e, daemon):
    """Regression: SIGHUP re-read config.toml but kept the old kill_grace, log_max_bytes and
    log_backups in force until a restart."""
    (e2e.home / "config.toml").write_text("kill_grace = 120.0\nshutdown_grace = 5.0\n")
    e2e.create_cron("stubborn", "--timeout", "1s", "@after", e2e.script("stubborn.py", STUBBORN))
    e2e.create_cron("chatty", "* * * * * *", "/bin/true")
    d = daemon()
    (e2e.home / "config.toml").write_text(
        "kill_grace = 1.0\nshutdown_grace = 5.0\nlog_max_bytes = 4096\nlog_backups = 1\n")
    d.proc.send_signal(signal.SIGHUP)
    wait_until("the reload", lambda: "reloaded store and config" in e2e.log_text())
    e2e.cli("run", "stubborn")
    run = e2e.wait_status("stubborn", "timeout", timeout=30)[0]  # SIGKILL 1 s after the cap, not 120 s
    took = datetime.fromisoformat(run["finished_at"]) - datetime.fromisoformat(run["started_at"])
    assert took < timedelta(seconds=30)
    wait_until("scheduler.log to rotate at 4 KiB", lambda: (e2e.home / "scheduler.log.1").exists())
    assert not (e2e.home / "scheduler.log.2").exists()  # log_backups = 1


def test_the_log_says_when_a_cap_is_hit_and_warns_of_failed_runs(e2e, daemon):
    """scheduler.log: a WARNING at the moment a run hits its cap (before it ends: the run
    ignores SIGTERM for the grace), and failed/timeout runs finish at WARNING, successes at INFO."""
    (e2e.home / "config.toml").write_text("kill_grace = 3.0\nshutdown_grace = 5.0\n")
    e2e.create_cron("stubborn", "--timeout", "1s", "@after", e2e.script("stubborn.py", STUBBORN))
    e2e.create_cron("bad", "@after", "/bin/false")
    e2e.create_cron("good", "@after", "/bin/true")
    daemon()
    e2e.cli("run", "stubborn", "bad", "good")
    wait_until("the cap to be logged", lambda: "hit its time cap" in e2e.log_text())
    capped = next(line for line in e2e.log_text().splitlines() if "hit its time cap" in line)
    assert " WARNING " in capped
    assert e2e.history("stubborn")[-1]["status"] == "running"  # logged at the cap, not at the end
    e2e.wait_status("stubborn", "timeout")
    e2e.wait_status("good", "succeeded")
    e2e.wait_status("bad", "failed")
    finished = {line.split(" job ", 1)[1].split()[0]: line for line in e2e.log_text().splitlines()
                if " finished: " in line}
    assert " WARNING " in finished["stubborn"] and " WARNING " in finished["bad"]
    assert " INFO " in finished["good"]


def test_retries_wait_the_retry_delay_doubling_per_attempt(e2e, daemon):
    """--retries 3 --retry-delay 1s: attempts 2, 3 and 4 are held 1 s, 2 s and 4 s after the
    failure before them (README: the delay doubles per attempt), as the daemon recorded them."""
    e2e.create_cron("flaky", "--retries", "3", "--retry-delay", "1s", "@after", "/bin/false")
    daemon()
    e2e.cli("run", "flaky")
    runs = e2e.wait_status("flaky", "failed", count=4, timeout=60)
    assert [r["attempt"] for r in runs] == [1, 2, 3, 4]
    for before, after, delay in zip(runs, runs[1:], (1, 2, 4)):
        assert after["reason"] == f"retry of run {before['run_id']} after {delay}s"
        assert delay <= ts(after["started_at"]) - ts(before["finished_at"]) < delay + 1.5, (before, after)
