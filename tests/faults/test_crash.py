"""kill -9 of the daemon at random moments of a busy schedule, and re-supervision of a run
whose process outlived its daemon (DESIGN.md sections 5 and 7: exactly once, after a crash).

The kill moments are random but seeded (SEED), so a failure can be replayed.
"""

from __future__ import annotations

import json
import os
import random
import re
import resource
import signal
import sqlite3
import time
from collections import Counter, defaultdict
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone

import pytest

from cron_scheduler.home import Home
from cron_scheduler.runner import find_marked
from cron_scheduler.store import Store

from harness import ACTIVE, marked_processes, pid_alive, wait_until

SEED = 20260308
KILLS = 30
FINAL = ("succeeded", "failed", "timeout", "killed", "skipped", "blocked", "missed", "interrupted")


def _ts(iso: str | None) -> float | None:
    return None if iso is None else datetime.fromisoformat(iso).timestamp()


@contextmanager
def _lock_held(home):
    """Another process holds state.db's write lock (an sqlite3 shell in a transaction)."""
    holder = sqlite3.connect(home / "state.db", isolation_level=None, timeout=30)
    holder.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        holder.execute("ROLLBACK")
        holder.close()


@contextmanager
def _disk_full(pid: int, home):
    """The daemon's files cannot grow (tests/faults/test_disk_full.py: RLIMIT_FSIZE)."""
    files = [home / name for name in ("state.db-wal", "scheduler.log")]
    limit = max(f.stat().st_size for f in files if f.exists()) + 1024
    try:
        resource.prlimit(pid, resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
    except ProcessLookupError:
        pass  # dead already: the check after the window says so
    try:
        yield
    finally:
        try:
            resource.prlimit(pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        except ProcessLookupError:
            pass


def _setup_busy_schedule(faults) -> None:
    every = "* * * * * *"
    tick = faults.script("tick.py", "print('tick')\n")
    faults.cli("add", "tick-a", every, "/bin/true")
    faults.cli("add", "tick-b", every, "/bin/true")
    faults.cli("add", "tick-py", every, tick)
    # 1.5 s runs on a 1 s schedule: every other slot meets a running run (overlap=skip)
    faults.cli("add", "slow", "--overlap", "skip", every, "/bin/sleep", "1.5")
    # an @after chain opened by an every-second upstream
    faults.cli("add", "up", every, "/bin/true")
    faults.cli("add", "mid", "--depends-on", "up", "@after", "/bin/true")
    faults.cli("add", "down", "--depends-on", "mid", "@after", "/bin/true")
    # fails every time: each slot has attempt 1 and one retry 1 s later
    faults.cli("add", "flaky", "--retries", "1", "--retry-delay", "1s", every, "/bin/false")


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_kill9_storm_keeps_every_slot_exactly_once(faults):
    """30 kills at random moments, half of them after a window in which state.db refused the
    daemon's writes (another process's lock, a full disk): no daemon exits on its own, every
    slot runs at most once, every run ends legally."""
    _setup_busy_schedule(faults)
    rng = random.Random(SEED)
    running_at_kill: dict[int, int] = {}   # run_id -> index of the kill that left it running
    for i in range(KILLS):
        daemon = faults.start_daemon(wait_started=False)
        # 1 kill in 5 lands during start-up (imports, recovery); the others while it is busy
        delay = rng.uniform(0.05, 0.5) if rng.random() < 0.2 else rng.uniform(0.5, 2.5)
        time.sleep(delay)   # the fault's moment, not a wait for a condition
        fault = rng.random()
        if daemon.alive() and fault < 0.5:  # a write refused for a while: locked, or disk full
            with (_lock_held(faults.home) if fault < 0.25 else _disk_full(daemon.pid, faults.home)):
                time.sleep(rng.uniform(0.5, 2.5))
        if not daemon.alive():
            pytest.fail(f"kill {i}: the daemon exited {daemon.proc.returncode} on its own\n"
                        f"{daemon.stderr()}\n{faults.describe_runs()}")
        if rng.random() < 0.15:  # some kills land in the middle of a clean shutdown
            daemon.proc.send_signal(signal.SIGTERM)
            time.sleep(rng.uniform(0.0, 0.3))
        daemon.kill9()
        for row in faults.query("SELECT run_id FROM runs WHERE status = 'running'"):
            running_at_kill.setdefault(row["run_id"], i)
        time.sleep(rng.uniform(0.0, 0.5))  # the daemon stays down a little while

    # A clean run after the storm: it makes progress and stops cleanly on SIGTERM.
    seen = max((r["run_id"] for r in faults.runs()), default=0)
    daemon = faults.start_daemon()
    faults.wait_runs("new successful runs after the storm",
                     lambda runs: [r for r in runs if r["run_id"] > seen and r["status"] == "succeeded"
                                   and r["job_id"] == "down"], timeout=30)
    assert daemon.terminate() == 0, daemon.stderr()
    # And one --once pass: whatever is left queued (retries, catch-up) runs; then all is final.
    faults.run_once()

    runs = faults.runs()
    assert runs, "nothing ran"
    log = faults.log_text()
    problems: list[str] = []

    # nothing left queued / waiting / running
    left = [r for r in runs if r["status"] in ACTIVE]
    if left:
        problems.append(f"runs never finished: {[(r['run_id'], r['job_id'], r['status']) for r in left]}")
    odd = [r for r in runs if r["status"] not in FINAL]
    if odd:
        problems.append(f"unknown statuses: {[(r['run_id'], r['status']) for r in odd]}")

    # a (job, slot, attempt) has one row, and state.db enforces it (the unique slot index, which
    # tests/test_engine_flow.py::test_a_slot_already_claimed_is_never_run_again_even_with_a_rewound_cursor
    # shows to be what stops a lagging cursor)
    index = faults.query("SELECT sql FROM sqlite_master WHERE name = 'runs_slot'")
    if not index or "UNIQUE" not in index[0]["sql"]:
        problems.append(f"state.db lacks the unique slot index: {index}")
    keys = Counter((r["job_id"], r["slot"], r["attempt"]) for r in runs if r["slot"] is not None)
    dup = [k for k, n in keys.items() if n > 1]
    if dup:
        problems.append(f"(job, slot, attempt) with two rows: {dup[:10]}")

    # a (job, slot) has at most one started first attempt, and attempts within the retry budget
    retries = {"flaky": 1}
    started = defaultdict(list)
    for r in runs:
        if r["slot"] is not None and r["started_at"] is not None:
            started[(r["job_id"], r["slot"])].append(r)
    for (job_id, slot), rs in started.items():
        first = [r for r in rs if r["trigger"] != "retry"]
        if len(first) > 1:
            problems.append(f"{job_id} slot {slot}: {len(first)} non-retry runs started "
                            f"{[r['run_id'] for r in first]}")
        attempts = Counter(r["attempt"] for r in rs)
        if any(n > 1 for n in attempts.values()):
            problems.append(f"{job_id} slot {slot}: an attempt started twice {dict(attempts)}")
        if max(attempts) > retries.get(job_id, 0) + 1:
            problems.append(f"{job_id} slot {slot}: attempt {max(attempts)} beyond its retries")

    # a retry follows a failed/timeout/interrupted attempt of the same slot, never a success
    by_key = {(r["job_id"], r["slot"], r["attempt"]): r for r in runs if r["slot"] is not None}
    for (job_id, slot, attempt), r in by_key.items():
        if attempt > 1:
            prev = by_key.get((job_id, slot, attempt - 1))
            if prev is None or prev["status"] not in ("failed", "timeout", "interrupted"):
                problems.append(f"retry run {r['run_id']} of {job_id} follows "
                                f"{prev and (prev['run_id'], prev['status'])}")

    # downstream jobs: one started run per wave (their retries are 0)
    per_wave = Counter((r["wave"], r["job_id"]) for r in runs
                       if r["job_id"] in ("mid", "down") and r["started_at"] is not None)
    dup = [k for k, n in per_wave.items() if n > 1]
    if dup:
        problems.append(f"downstream job started twice in one wave: {dup[:10]}")

    # overlap=skip: no two `slow` runs overlapped in time
    slow = sorted((r for r in runs if r["job_id"] == "slow" and r["started_at"]), key=lambda r: r["started_at"])
    for a, b in zip(slow, slow[1:]):
        end_a = _ts(a["finished_at"])
        if end_a is not None and _ts(b["started_at"]) < end_a - 0.05:
            problems.append(f"slow runs {a['run_id']} and {b['run_id']} overlapped "
                            f"({a['started_at']}..{a['finished_at']} vs {b['started_at']})")

    # every run left running by a kill was resolved: interrupted, or re-supervised then final
    resupervised = {int(m) for m in re.findall(r"run (\d+) job \S+ re-supervised", log)}
    by_id = {r["run_id"]: r for r in runs}
    for run_id, kill in sorted(running_at_kill.items()):
        r = by_id.get(run_id)
        if r is None:
            continue  # pruned (retention); never with these numbers
        if r["status"] != "interrupted" and not (run_id in resupervised and r["status"] in FINAL):
            problems.append(f"run {run_id} ({r['job_id']}) running at kill {kill} ended {r['status']!r} "
                            f"without being re-supervised: {r['reason']}")
    assert running_at_kill, "no kill landed while a run was running: the storm tested nothing"

    # no process of any run is left
    markers = {r["marker"] for r in runs if r["marker"]}
    alive = {m: p for m, p in marked_processes().items() if m in markers}
    if alive:
        problems.append(f"processes of runs still alive: {alive}")

    # the files: state.db intact, jobs.json parses
    conn = sqlite3.connect(faults.home / "state.db")
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()
    json.loads((faults.home / "jobs.json").read_text())
    assert set(Store(Home(faults.home)).load().decode_all()) == {
        "tick-a", "tick-b", "tick-py", "slow", "up", "mid", "down", "flaky"}

    # a refused write never stopped a daemon nor recorded a run illegally
    if "illegal run transition" in log:
        problems.append("an illegal run transition in scheduler.log")

    assert not problems, "\n".join(problems[:40]) + "\n" + faults.describe_runs()
    # sanity: the storm really ran things and really crashed some of them
    statuses = Counter(r["status"] for r in runs)
    print(f"storm: {len(runs)} runs {dict(statuses)}; {len(running_at_kill)} running at a kill, "
          f"{len(resupervised)} re-supervised")
    assert statuses["succeeded"] > 20 and statuses["interrupted"] >= 1, statuses


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_run_outliving_its_daemon_is_resupervised_and_its_cap_still_enforced(faults):
    faults.cli("add", "long", "--timeout", "3s", "@after", "/bin/sleep", "30")
    daemon = faults.start_daemon()
    faults.cli("run", "long")
    run = faults.wait_runs("long running with a pid",
                           lambda runs: next((r for r in runs if r["status"] == "running" and r["pid"]), None))
    pid, marker = run["pid"], run["marker"]
    daemon.kill9()
    assert pid_alive(pid), "the run died with its daemon (it should live in its own session)"
    assert find_marked(marker) == {pid}

    faults.start_daemon()
    final = faults.wait_runs("the re-supervised run to end",
                             lambda runs: next((r for r in runs if r["run_id"] == run["run_id"]
                                                and r["status"] not in ACTIVE), None), timeout=30)
    assert f"run {run['run_id']} job long re-supervised" in faults.log_text()
    assert final["status"] == "timeout", final
    assert "3s cap" in (final["reason"] or ""), final
    # 3 s cap from its real start (not from the restart), + 2 s kill grace at most, + slack
    duration = _ts(final["finished_at"]) - _ts(final["started_at"])
    assert 2.5 <= duration < 12, final
    assert not pid_alive(pid)
    assert find_marked(marker) == set()
    assert len(faults.runs("long")) == 1, "the re-supervised run must not be run again"


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_run_whose_process_died_with_the_daemon_down_is_interrupted_and_retried(faults):
    faults.cli("add", "victim", "--retries", "1", "--retry-delay", "1s", "@after", "/bin/sleep", "30")
    daemon = faults.start_daemon()
    faults.cli("run", "victim")
    run = faults.wait_runs("victim running with a pid",
                           lambda runs: next((r for r in runs if r["status"] == "running" and r["pid"]), None))
    daemon.kill9()
    # the process dies while no daemon looks (reboot, OOM killer, ...)
    os.kill(run["pid"], signal.SIGKILL)
    wait_until("the orphan to die", lambda: not pid_alive(run["pid"]))
    daemon = faults.start_daemon()
    first = faults.wait_runs("the run resolved",
                             lambda runs: next((r for r in runs if r["run_id"] == run["run_id"]
                                                and r["status"] not in ACTIVE), None))
    assert first["status"] == "interrupted", first
    retry = faults.wait_runs("its retry running",
                             lambda runs: next((r for r in runs if r["attempt"] == 2 and r["status"] == "running"),
                                               None))
    assert retry["trigger"] == "retry" and retry["job_id"] == "victim"
    assert daemon.terminate() == 0
    assert faults.runs("victim")[-1]["status"] == "killed"


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_run_that_keeps_printing_survives_its_daemons_death(faults):
    """A re-supervised run is one that outlives its daemon: a job writing output all the time
    must not die of SIGPIPE/EPIPE when the daemon (the reader of its output pipe) is killed."""
    faults.cli("add", "chatty", "--shell", "@after",
               "i=0; while [ $i -lt 30 ]; do echo tick $i; i=$((i+1)); sleep 0.2; done")
    daemon = faults.start_daemon()
    faults.cli("run", "chatty")
    run = faults.wait_runs("chatty running with a pid",
                           lambda runs: next((r for r in runs if r["status"] == "running" and r["pid"]), None))
    wait_until("some output", lambda: "tick 2" in open(run["output_path"]).read())
    daemon.kill9()
    faults.start_daemon()
    final = faults.wait_runs("the run to end", lambda runs: next(
        (r for r in runs if r["run_id"] == run["run_id"] and r["status"] not in ACTIVE), None), timeout=30)
    duration = _ts(final["finished_at"]) - _ts(final["started_at"])
    assert duration >= 5.5, (f"the run died {duration:.1f}s after it started, soon after its daemon was "
                             f"killed: {final}")


@pytest.mark.timeout(120)
def test_kill9_between_prepare_and_spawn_never_runs_a_slot_twice_nor_loses_it(faults):
    """Slots are claimed and prepared ~250 ms ahead (queued, not_before the slot, a marker):
    a kill -9 in that window leaves a claim with no process. The restarted daemon re-plans it
    (queued again, started at its time) or, once its slot has passed, records it interrupted:
    every slot has exactly one run, none stays claimed, none ran twice."""
    stamp = faults.script("stamp.sh", "#!/bin/sh\necho \"$CRON_SCHEDULER_SCHEDULED_FOR\" >> \"$1\"\n")
    os.chmod(stamp, 0o755)
    out = faults.home / "stamps"
    faults.cli("add", "tick", "* * * * * *", str(stamp), str(out))
    for _ in range(3):
        daemon = faults.start_daemon()

        def prepared():
            rows = faults.query("SELECT run_id, not_before FROM runs WHERE status = 'queued' AND marker IS NOT NULL "
                                "AND not_before IS NOT NULL")
            return [r for r in rows if _ts(r["not_before"]) > time.time() + 0.02]
        wait_until("a run prepared ahead of its slot", prepared, timeout=30, interval=0.005)
        daemon.kill9()
        daemon.wait()
    daemon = faults.start_daemon()
    time.sleep(2.5)
    daemon.terminate()
    rows = faults.query("SELECT run_id, slot, status, marker, not_before FROM runs WHERE job_id = 'tick'")
    per_slot = Counter(r["slot"] for r in rows)
    assert all(n == 1 for n in per_slot.values()), per_slot
    stamps = Counter(out.read_text().split()) if out.exists() else Counter()
    assert all(n == 1 for n in stamps.values()), f"a slot ran twice: {stamps}"
    claimed = [r for r in rows if r["status"] == "queued" and r["marker"]]
    assert not claimed, f"claims left behind: {claimed}"
    assert {r["status"] for r in rows} <= {"succeeded", "interrupted", "queued"}, rows


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_fifos_of_runs_ended_before_a_kill9_are_swept_at_the_next_start(faults):
    """FIFOs of ended runs are removed once no run is live; a kill -9 while one is live left
    them forever. The next daemon sweeps them, and keeps the live run's."""
    faults.cli("add", "tick", "* * * * * *", "/bin/true")
    faults.cli("add", "long", "@after", "/bin/sleep", "40")
    daemon = faults.start_daemon()
    faults.cli("run", "long")
    long_run = faults.wait_runs("long running", lambda runs: next(
        (r for r in runs if r["status"] == "running" and r["pid"]), None), "long")
    faults.wait_runs("ticks ended while long runs", lambda runs: sum(
        r["status"] == "succeeded" and r["run_id"] > long_run["run_id"] for r in runs) >= 2, "tick")
    pipes = faults.home / "runs" / "tick"
    daemon.kill9()
    if not list(pipes.glob("*.pipe")):  # tidied before the kill (a busy machine): leave one as a crash does
        ended = next(r for r in faults.runs("tick") if r["status"] == "succeeded")
        os.mkfifo(pipes / f"{ended['run_id']}.pipe", 0o600)
    faults.cli("pause", "tick")
    daemon = faults.start_daemon()
    wait_until("the ended runs' FIFOs swept", lambda: not list(pipes.glob("*.pipe")), timeout=20,
               describe=faults.log_tail)
    assert (faults.home / "runs" / "long" / f"{long_run['run_id']}.pipe").exists()  # re-supervised
    assert "left under runs/" in faults.log_text()
    assert daemon.terminate() == 0


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_runs_waiting_for_the_only_worker_at_a_kill9_run_after_the_restart(faults):
    """max_workers 1; a, b and c due at one slot: a takes the worker, b and c wait. A kill -9
    then must not lose b and c as `interrupted: ... may not have started`: they never started,
    so the next daemon runs them."""
    slot = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(seconds=4)
    at = f"{slot.second} {slot.minute} {slot.hour} {slot.day} {slot.month} *"
    faults.cli("add", "a", "--tz", "UTC", at, "/bin/sleep", "6")
    for job_id in ("b", "c"):
        faults.cli("add", job_id, "--tz", "UTC", at, "/bin/true")
    daemon = faults.start_daemon("--max-workers", "1")
    faults.wait_runs("a running and b, c waiting", lambda runs: sorted(
        (r["job_id"], r["status"]) for r in runs) == [("a", "running"), ("b", "queued"), ("c", "queued")],
        timeout=30)
    daemon.kill9()
    daemon = faults.start_daemon("--max-workers", "1")
    done = faults.wait_runs("b and c succeeded", lambda runs: [
        r for r in runs if r["job_id"] in ("b", "c") and r["status"] == "succeeded"], timeout=60)
    assert sorted(r["job_id"] for r in done) == ["b", "c"]
    assert [r["status"] for r in faults.runs("b") + faults.runs("c")] == ["succeeded", "succeeded"]
    assert daemon.terminate() == 0
