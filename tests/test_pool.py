"""pool.py: the bounded pool of supervised children. Real processes, deadlines generous,
conditions polled (never asserted after a fixed sleep)."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import pytest

from harness import pid_alive as alive, pid_state
from cron_scheduler.loop import Loop
from cron_scheduler.pool import UNKNOWN_STATUS, LocalPool
from cron_scheduler.executors.base import Claim, Handle
from cron_scheduler.runner import (MARKER_VAR, Outcome, RunResult, RunSpec, find_marked, kill_tree,
                                   process_start_time)

GRACE = 1.0

# A run whose tree resists: a child ignoring SIGTERM, and a grandchild that left the session
# (os.setsid) and ignores SIGTERM too. Each process drops "<role>" = its pid into argv[2].
TREE = """
import os, signal, subprocess, sys, time
role, d = sys.argv[1], sys.argv[2]
def start(r):
    return subprocess.Popen([sys.executable, __file__, r, d])
if role == "main":
    start("stubborn"); start("middle")
elif role == "stubborn":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
elif role == "middle":
    start("escaper")
elif role == "escaper":
    os.setsid()
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
path = os.path.join(d, role)
with open(path + ".tmp", "w") as f:
    f.write(str(os.getpid()))
os.replace(path + ".tmp", path)
print(role, "ready", flush=True)
time.sleep(600)
"""
ROLES = ("main", "stubborn", "middle", "escaper")


def make_spec(tmp_path: Path, run_id: int, code: str | None = None, *, argv=None,
              timeout: float | None = None, max_output: int = 1 << 20) -> RunSpec:
    if argv is None:
        script = tmp_path / f"run{run_id}.py"
        script.write_text(textwrap.dedent(code))
        argv = (sys.executable, str(script))
    return RunSpec(run_id=run_id, job_id=f"job{run_id}", argv=tuple(argv), env=dict(os.environ),
                   cwd=str(tmp_path), log_path=tmp_path / "runs" / f"{run_id}.log",
                   max_output=max_output, timeout=timeout, marker=uuid.uuid4().hex)


def tree_spec(tmp_path: Path, run_id: int, timeout: float | None = None) -> RunSpec:
    (tmp_path / "tree.py").write_text(TREE)
    return make_spec(tmp_path, run_id, argv=(sys.executable, str(tmp_path / "tree.py"),
                                             "main", str(tmp_path)), timeout=timeout)


def sleeper(tmp_path: Path, run_id: int, **kw) -> RunSpec:
    return make_spec(tmp_path, run_id, "import time; time.sleep(600)", **kw)


def wait_for(pool: LocalPool, run_ids, deadline: float = 30.0) -> dict[int, RunResult]:
    wanted, got = set(run_ids), {}
    end = time.monotonic() + deadline
    while not wanted <= got.keys():
        left = end - time.monotonic()
        assert left > 0, f"runs {wanted - got.keys()} did not finish in {deadline}s"
        got.update((r.run_id, r) for r in pool.wait(left))
    return got


def poll_until(predicate, deadline: float = 20.0, pool: LocalPool | None = None) -> bool:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if predicate():
            return True
        pool.wait(0.05) if pool is not None else time.sleep(0.02)
    return predicate()


def tree_pids(tmp_path: Path) -> dict[str, int]:
    return {r: int((tmp_path / r).read_text()) for r in ROLES if (tmp_path / r).exists()}


def assert_nothing_survives(marker: str, pids) -> None:
    assert find_marked(marker) == set()
    assert poll_until(lambda: not any(alive(p) for p in pids)), \
        [p for p in pids if alive(p)]


@pytest.fixture
def pool():
    p = LocalPool(max_workers=10, kill_grace=GRACE)
    yield p
    p.shutdown(0)


def test_exit_codes_recorded(pool, tmp_path):
    pool.submit(make_spec(tmp_path, 1, "pass"))
    pool.submit(make_spec(tmp_path, 2, "import sys; sys.exit(3)"))
    results = wait_for(pool, [1, 2])
    assert (results[1].exit_code, results[1].signal, results[1].error) == (0, None, None)
    assert (results[2].exit_code, results[2].signal, results[2].error) == (3, None, None)
    for r in results.values():
        assert r.pid and r.started_at <= r.finished_at
        assert not (r.timed_out or r.cancelled or r.truncated)


def test_killed_by_signal_recorded_as_signal(pool, tmp_path):
    pool.submit(make_spec(tmp_path, 1, "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"))
    r = wait_for(pool, [1])[1]
    assert (r.exit_code, r.signal) == (None, signal.SIGKILL)


def test_output_captured_to_private_file(pool, tmp_path):
    spec = make_spec(tmp_path, 1, """
        import sys
        print("to stdout", flush=True)
        print("to stderr", file=sys.stderr, flush=True)
        print("stdout again", flush=True)
    """)
    pool.submit(spec)
    r = wait_for(pool, [1])[1]
    text = spec.log_path.read_text()
    assert text == "to stdout\nto stderr\nstdout again\n"
    assert r.output_bytes == len(text) and not r.truncated
    assert stat.S_IMODE(spec.log_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(spec.log_path.parent.stat().st_mode) == 0o700


def test_output_cap_reads_and_discards_without_blocking_the_child(pool, tmp_path):
    cap, total = 100_000, 50 * 1024 * 1024
    spec = make_spec(tmp_path, 1, f"""
        import sys
        block = b"x" * (1024 * 1024)
        for _ in range({total} // len(block)):
            sys.stdout.buffer.write(block)
    """, max_output=cap)
    pool.submit(spec)
    r = wait_for(pool, [1], deadline=60)[1]
    assert r.exit_code == 0
    assert spec.log_path.stat().st_size == cap
    assert r.output_bytes == total and r.truncated


@pytest.mark.slow
def test_timeout_kills_the_whole_tree(pool, tmp_path):
    spec = tree_spec(tmp_path, 1, timeout=2.0)
    pool.submit(spec)
    r = wait_for(pool, [1])[1]
    pids = tree_pids(tmp_path)
    assert set(pids) == set(ROLES), "tree did not start within the timeout"
    assert r.timed_out and not r.cancelled
    assert r.exit_code is None and r.signal == signal.SIGTERM
    assert r.finished_at - r.started_at >= 2.0 + GRACE * 0.9  # the stubborn ones needed SIGKILL
    assert_nothing_survives(spec.marker, pids.values())
    assert "escaper ready" in spec.log_path.read_text()


def test_cancel_kills_the_whole_tree(pool, tmp_path):
    spec = tree_spec(tmp_path, 1)
    handle = pool.submit(spec)
    assert pool.running() == {1} and handle.pid == handle.fields()["pid"] > 0
    assert poll_until(lambda: len(tree_pids(tmp_path)) == len(ROLES), pool=pool)
    pids = tree_pids(tmp_path)
    assert find_marked(spec.marker) == set(pids.values())
    assert os.getsid(pids["escaper"]) != pids["main"]  # left the run's session and group
    pool.cancel(1, "stopped by user")
    r = wait_for(pool, [1])[1]
    assert r.cancelled and r.cancel_reason == "stopped by user" and not r.timed_out
    assert r.signal == signal.SIGTERM
    assert_nothing_survives(spec.marker, pids.values())
    assert pool.running() == set()


def test_cancel_of_a_cooperative_run_does_not_wait_for_the_grace(tmp_path):
    pool = LocalPool(kill_grace=30.0)
    try:
        spec = sleeper(tmp_path, 1)
        pool.submit(spec)
        pool.cancel(1, "stop")
        pool.cancel(1, "second stop is ignored")
        pool.cancel(99, "unknown run is ignored")
        r = wait_for(pool, [1], deadline=20)[1]
        assert r.cancelled and r.cancel_reason == "stop" and r.signal == signal.SIGTERM
        assert r.finished_at - r.started_at < 20
    finally:
        pool.shutdown(0)


def test_max_workers_respected_via_free_slots(tmp_path):
    pool = LocalPool(max_workers=2, kill_grace=GRACE)
    try:
        assert pool.free_slots() == 2
        pool.submit(sleeper(tmp_path, 1))
        assert pool.free_slots() == 1
        pool.submit(sleeper(tmp_path, 2))
        assert pool.free_slots() == 0 and set(pool.running()) == {1, 2}
        pool.cancel(1, "make room")
        wait_for(pool, [1])
        assert pool.free_slots() == 1 and set(pool.running()) == {2}
    finally:
        pool.shutdown(0)
    assert pool.running() == set()


def test_spawn_failure_is_a_result_not_an_exception(pool, tmp_path):
    missing = str(tmp_path / "no-such-program")
    assert pool.submit(make_spec(tmp_path, 1, argv=(missing,))) is None
    assert pool.submit(make_spec(tmp_path, 2, argv=("no-such-program-xyz",))) is None
    assert pool.free_slots() == 10 and pool.running() == set()
    results = wait_for(pool, [1, 2], deadline=5)
    assert results[1].error == f"No such file or directory: {missing!r}"
    assert results[2].error == "No such file or directory: 'no-such-program-xyz'"
    for r in results.values():
        assert r.pid is None and r.exit_code is None and r.signal is None


def test_wake_fd_makes_wait_return_early(tmp_path):
    r, w = os.pipe()
    os.set_blocking(r, False)
    loop = Loop()
    loop.add_wake_fd(r)
    pool = LocalPool(kill_grace=GRACE, loop=loop)
    try:
        pool.submit(sleeper(tmp_path, 1))
        timer = threading.Timer(0.3, os.write, (w, b"\0\0\0"))
        timer.start()
        start = time.monotonic()
        assert pool.wait(60) == []
        assert time.monotonic() - start < 30
        timer.join()
        with pytest.raises(BlockingIOError):  # drained
            os.read(r, 10)
        assert pool.running() == {1}
    finally:
        pool.shutdown(0)
        os.close(r)
        os.close(w)


def test_wait_sleeps_instead_of_polling(pool, tmp_path):
    pool.submit(sleeper(tmp_path, 1))
    cpu, start = time.process_time(), time.monotonic()
    assert pool.wait(0.5) == []
    assert time.monotonic() - start >= 0.45
    assert time.process_time() - cpu < 0.2
    assert LocalPool().wait(None) == []  # nothing could ever happen: returns at once


def test_rusage_present(pool, tmp_path):
    pool.submit(make_spec(tmp_path, 1, """
        import time
        data = bytearray(20 * 1024 * 1024)
        end = time.process_time() + 0.2
        while time.process_time() < end:
            pass
    """))
    r = wait_for(pool, [1])[1]
    assert r.cpu_user >= 0 and r.cpu_sys >= 0 and r.cpu_user + r.cpu_sys > 0.1
    assert r.max_rss_kb > 20 * 1024


def test_run_finishes_although_a_daemonized_grandchild_holds_the_pipe(pool, tmp_path):
    spec = make_spec(tmp_path, 1, """
        import subprocess, sys
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"],
                         start_new_session=True)
        print("main done", flush=True)
    """)
    pool.submit(spec)
    try:
        r = wait_for(pool, [1], deadline=20)[1]
        assert r.exit_code == 0 and r.output_bytes == len("main done\n")
    finally:
        kill_tree(0, spec.marker, signal.SIGKILL)


def test_shutdown_stops_everything(tmp_path):
    pool = LocalPool(kill_grace=30.0)
    a, b = tree_spec(tmp_path, 1), sleeper(tmp_path, 2)
    pool.submit(a)
    pool.submit(b)
    assert poll_until(lambda: len(tree_pids(tmp_path)) == len(ROLES), pool=pool)
    pids = tree_pids(tmp_path)
    results = {r.run_id: r for r in pool.shutdown(GRACE)}
    assert set(results) == {1, 2}
    assert all(r.cancelled and r.cancel_reason == "daemon shutdown" for r in results.values())
    assert_nothing_survives(a.marker, pids.values())
    assert find_marked(b.marker) == set()


def adopt(pool, run_id: int, marker: str, handle: Handle | None, timeout: float | None = None,
          log_path: Path | None = None, max_output: int = 1 << 20) -> bool:
    """Whether pool.recover() re-supervises the claim of run_id."""
    claim = Claim(run_id, marker, handle, time.time(), timeout, log_path, max_output)
    return pool.recover([claim]) == {run_id}


def test_adopt_a_process_of_a_previous_daemon(pool, tmp_path):
    # A launcher that starts the "run" detached and exits: the run is not our child.
    marker = uuid.uuid4().hex
    launcher = f"""
import os, subprocess, sys
env = dict(os.environ, {MARKER_VAR}={marker!r})
p = subprocess.Popen([sys.executable, "-c", "import sys, time; time.sleep(1); sys.exit(5)"],
                     env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL)
print(p.pid)
"""
    pid = int(subprocess.run([sys.executable, "-c", launcher], capture_output=True, text=True,
                             check=True).stdout)
    start_time = process_start_time(pid)
    assert start_time is not None
    handle = Handle.of({"pid": pid, "pid_start": start_time}, pid)
    assert not adopt(pool, 7, marker, Handle.of({"pid": pid, "pid_start": start_time + 1}), max_output=0)
    assert adopt(pool, 7, marker, handle, log_path=tmp_path / "none.log")
    assert pool.running() == {7} and pool.free_slots() == 9
    r = wait_for(pool, [7])[7]
    if r.error is None:  # only if this process happened to inherit it as a subreaper
        assert r.exit_code == 5
    else:
        assert r.outcome is Outcome.UNKNOWN and r.error == UNKNOWN_STATUS
        assert r.exit_code is None and r.signal is None
    assert not adopt(pool, 8, marker, handle, max_output=0)  # gone now


def test_adopted_run_gets_its_timeout(pool, tmp_path):
    marker = uuid.uuid4().hex
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"],
                            env=dict(os.environ, **{MARKER_VAR: marker}),
                            start_new_session=True)
    try:
        handle = Handle.of({"pid": proc.pid, "pid_start": process_start_time(proc.pid)})
        assert adopt(pool, 3, marker, handle, timeout=0.2, max_output=0)
        r = wait_for(pool, [3])[3]
        assert r.timed_out and find_marked(marker) == set()
    finally:
        proc.returncode = proc.returncode or 0  # reaped by the pool, not by Popen


def test_the_pool_never_takes_the_status_of_a_child_that_is_not_its_run(pool, tmp_path):
    # Another child of the same process exits 7 next to a run that exits 3: each status stays
    # with its own process (wait4(-1) in the pool used to reap the other child, whose owner
    # then read 0).
    other = subprocess.Popen([sys.executable, "-c", "import sys; sys.exit(7)"])
    assert poll_until(lambda: pid_state(other.pid) == "Z")
    pool.submit(make_spec(tmp_path, 1, "import sys; sys.exit(3)"))
    r = wait_for(pool, [1])[1]
    assert (r.outcome, r.exit_code) == (Outcome.EXITED, 3)
    assert other.wait(10) == 7


SUBREAPER = """
import json, os, signal, sys, time, uuid
from pathlib import Path
from cron_scheduler.loop import Loop
from cron_scheduler.pool import LocalPool
from cron_scheduler.runner import RunSpec, set_child_subreaper

assert set_child_subreaper()
r, w = os.pipe()
os.set_blocking(r, False); os.set_blocking(w, False)
signal.set_wakeup_fd(w)
signal.signal(signal.SIGCHLD, lambda *a: None)
loop = Loop()
loop.add_wake_fd(r)
pool = LocalPool(max_workers=8, loop=loop, reap_orphans=True)
tmp = Path(sys.argv[1])
# each run leaves a detached grandchild that exits 0 soon after the run exits 3
code = ("import subprocess, sys; p = subprocess.Popen(['/bin/sh', '-c', 'sleep 0.3'], start_new_session=True); "
        "print(p.pid, flush=True); sys.exit(3)")
for i in range(1, 7):
    pool.submit(RunSpec(i, "j", (sys.executable, "-c", code), dict(os.environ), None,
                        tmp / f"{i}.log", 1000, None, uuid.uuid4().hex))
got = {}
while len(got) < 6:
    got.update((res.run_id, res.exit_code) for res in pool.wait(30))
orphans = [int((tmp / f"{i}.log").read_text()) for i in range(1, 7)]
end = time.monotonic() + 20
while time.monotonic() < end and any(os.path.exists(f"/proc/{p}") for p in orphans):
    loop.run(end - time.monotonic())  # SIGCHLD wakes the loop; the orphans are reaped
zombies = [p for p in orphans if os.path.exists(f"/proc/{p}")]  # a zombie still has its entry
print(json.dumps({"codes": sorted(got.values()), "zombies": zombies}))
"""


def test_a_subreaper_pool_reaps_orphans_and_keeps_each_runs_status(tmp_path):
    out = subprocess.run([sys.executable, "-c", SUBREAPER, str(tmp_path)], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report == {"codes": [3] * 6, "zombies": []}


def test_the_pool_runs_a_py_script_with_its_own_interpreter(pool, tmp_path):
    script = tmp_path / "plain.py"  # not executable, no shebang
    script.write_text("import sys; print(sys.executable)\n")
    spec = make_spec(tmp_path, 1, argv=(str(script),))
    pool.submit(spec)
    r = wait_for(pool, [1])[1]
    assert r.exit_code == 0 and spec.log_path.read_text().strip() == sys.executable


def test_adopt_finds_a_run_whose_pid_was_never_recorded_by_its_marker(pool, tmp_path):
    # The previous daemon died between spawning the run and recording its pid: the run's main
    # process leads its own session and carries the marker; it is re-supervised, not killed.
    marker = uuid.uuid4().hex
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"],
                            env=dict(os.environ, **{MARKER_VAR: marker}), start_new_session=True)
    try:
        assert poll_until(lambda: find_marked(marker) == {proc.pid})
        assert adopt(pool, 4, marker, None)  # no handle recorded
        assert pool.running() == {4} and alive(proc.pid)
        pool.cancel(4, "stop")
        r = wait_for(pool, [4])[4]
        assert r.outcome is Outcome.CANCELLED and find_marked(marker) == set()
    finally:
        proc.returncode = proc.returncode or 0  # reaped by the pool, not by Popen


def test_a_stop_waiting_for_a_stubborn_descendant_sleeps(tmp_path):
    # The main process exits on SIGTERM; a child ignoring it keeps the output pipe open until
    # SIGKILL at the end of the grace. Those seconds are spent asleep, not spinning.
    pool = LocalPool(kill_grace=2.0)
    try:
        spec = tree_spec(tmp_path, 1)
        pool.submit(spec)
        assert poll_until(lambda: len(tree_pids(tmp_path)) == len(ROLES), pool=pool)
        pool.cancel(1, "stop")
        cpu, start = time.process_time(), time.monotonic()
        r = wait_for(pool, [1])[1]
        wall = time.monotonic() - start
        assert r.cancelled and wall >= 1.8
        assert time.process_time() - cpu < 0.3 * wall, f"{time.process_time() - cpu:.2f}s CPU in {wall:.2f}s"
    finally:
        pool.shutdown(0)
