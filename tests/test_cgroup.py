"""cgroup.py and the cgroup kill method: a run's whole tree, including a descendant that left
the session AND cleared its environment (DESIGN.md section 5). Real cgroups, real processes.

Where cgroup v2 is not usable (no cgroup2 mount, not root and no delegation, no cgroup.kill),
the tests that need it are skipped with detect()'s reason; the marker-mode tests still run.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import uuid
from pathlib import Path

import pytest

from harness import pid_alive, temp_env, wait_until
from cron_scheduler import runner
from cron_scheduler.cgroup import RunCgroups, detect
from cron_scheduler.pool import LocalPool
from cron_scheduler.runner import RunSpec, kill_method, spawn, use_cgroups

# main starts a child that re-execs itself through `env -i` (no marker left) and setsid()s
# away from the run's session; it ignores SIGTERM. Each process writes its pid to <dir>/<role>.
ESCAPER = """
import os, signal, subprocess, sys, time
role, d = sys.argv[1], sys.argv[2]
if role == "main":
    subprocess.Popen(["env", "-i", sys.executable, __file__, "escaper", d])
elif role == "escaper":
    os.setsid()
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    assert "CRON_SCHEDULER_RUN_MARKER" not in os.environ
path = os.path.join(d, role)
with open(path + ".tmp", "w") as f:
    f.write(str(os.getpid()))
os.replace(path + ".tmp", path)
time.sleep(600)
"""


def escaper_spec(tmp_path: Path, run_id: int = 1, timeout: float | None = None) -> RunSpec:
    script = tmp_path / "escaper.py"
    script.write_text(ESCAPER)
    return RunSpec(run_id=run_id, job_id="esc", argv=(sys.executable, str(script), "main", str(tmp_path)),
                   env=dict(os.environ), cwd=str(tmp_path), log_path=tmp_path / "runs" / f"{run_id}.log",
                   max_output=1 << 20, timeout=timeout, marker=uuid.uuid4().hex)


def pid_of(tmp_path: Path, role: str) -> int:
    wait_until(f"{role} started", lambda: (tmp_path / role).exists())
    return int((tmp_path / role).read_text())


@pytest.fixture
def cgroups(tmp_path):
    """Run cgroups for a home in tmp_path, in force for spawn(); skipped where unusable."""
    found, why = detect(tmp_path / "home")
    if found is None:
        pytest.skip(f"cgroup v2 not usable here: {why}")
    use_cgroups(found)
    try:
        yield found
    finally:
        use_cgroups(None)
        found.close()


def run_until_done(pool: LocalPool, deadline: float = 30.0):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        results = pool.wait(0.5)
        if results:
            return results
    pytest.fail("the run did not finish")


def test_a_run_joins_its_own_cgroup_before_exec(tmp_path, cgroups):
    spec = RunSpec(run_id=1, job_id="j", argv=("/bin/cat", "/proc/self/cgroup"), env={}, cwd=None,
                   log_path=tmp_path / "1.log", max_output=100, timeout=None, marker="m" + uuid.uuid4().hex)
    pid, fd = spawn(spec)
    os.set_blocking(fd, True)
    out = b""
    while chunk := os.read(fd, 4096):
        out += chunk
    os.close(fd)
    os.waitpid(pid, 0)
    line = next(l for l in out.decode().splitlines() if l.startswith("0::"))
    assert line.endswith(f"/{cgroups.base.name}/run-{spec.marker}"), line
    assert cgroups.remove(spec.marker) and not cgroups.path(spec.marker).exists()


@pytest.mark.parametrize("how", ["cancel", "timeout"])
def test_stop_and_cap_kill_a_descendant_that_left_the_session_and_cleared_its_env(tmp_path, cgroups, how):
    pool = LocalPool(max_workers=2, kill_grace=0.5)
    spec = escaper_spec(tmp_path, timeout=None if how == "cancel" else 1.0)
    try:
        pool.submit(spec)
        main, escaper = pid_of(tmp_path, "main"), pid_of(tmp_path, "escaper")
        assert runner.find_marked(spec.marker) == {main}, "the escaper still carries the marker"
        if how == "cancel":
            pool.cancel(1, "stopped by user")
        (result,) = run_until_done(pool)
        assert result.cancelled if how == "cancel" else result.timed_out
        assert wait_until("escaper gone", lambda: not pid_alive(escaper), timeout=10)
        assert not cgroups.path(spec.marker).exists(), "the run's cgroup was not removed"
    finally:
        pool.shutdown(0)
        for role in ("main", "escaper"):
            if (tmp_path / role).exists():
                try:
                    os.kill(int((tmp_path / role).read_text()), signal.SIGKILL)
                except ProcessLookupError:
                    pass


def test_marker_mode_cannot_see_an_env_cleared_escaper(tmp_path):
    """Why the cgroup matters: without it the sweep has nothing to find the escaper by."""
    use_cgroups(None)
    assert kill_method() == "marker"
    spec = escaper_spec(tmp_path)
    spec.log_path.parent.mkdir()
    pid, fd = spawn(spec)
    try:
        escaper = pid_of(tmp_path, "escaper")
        assert runner.survivors(spec.marker) == {pid}, "the escaper is found: nothing to fix"
        runner.kill_tree(pid, spec.marker, signal.SIGKILL)
        os.waitpid(pid, 0)
        time.sleep(0.2)  # the fault being shown: nothing will come for the escaper
        assert pid_alive(escaper)
    finally:
        for p in (pid, int((tmp_path / "escaper").read_text()) if (tmp_path / "escaper").exists() else None):
            if p:
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
        os.close(fd)


def test_detect_says_why_not_without_cgroup2(tmp_path):
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text("22 1 0:21 / /proc rw - proc proc rw\n")
    assert detect(tmp_path, mountinfo=str(mountinfo)) == (None, "no cgroup2 file system mounted")


def test_remove_waits_for_the_last_process_and_prune_clears_empty_ones(tmp_path, cgroups):
    marker = uuid.uuid4().hex
    pid, fd = spawn(RunSpec(run_id=1, job_id="j", argv=("/bin/sleep", "60"), env={}, cwd=None,
                            log_path=tmp_path / "1.log", max_output=10, timeout=None, marker=marker))
    os.close(fd)
    try:
        # the run joins its cgroup before its program starts (spawn() does not wait for that)
        end = time.monotonic() + 10
        while cgroups.pids(marker) != {pid} and time.monotonic() < end:
            time.sleep(0.01)
        assert cgroups.pids(marker) == {pid}
        assert not cgroups.remove(marker), "removed a cgroup a process lives in"
        assert cgroups.path(marker).exists()
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    other = RunCgroups(cgroups.base)
    os.close(other.create("left-by-a-crash"))
    assert cgroups.prune() >= 2
    assert not cgroups.path(marker).exists() and not cgroups.path("left-by-a-crash").exists()


# --- through the daemon ------------------------------------------------------------------------

@pytest.mark.timeout(120)
def test_daemon_stop_kills_the_env_cleared_escaper_and_status_says_how(tmp_path):
    usable, why = detect(tmp_path / "probe")
    if usable is not None:
        usable.close()
    else:
        pytest.skip(f"cgroup v2 not usable here: {why}")
    work = tmp_path / "w"
    work.mkdir()
    with temp_env(tmp_path) as env:
        script = env.script("escaper.py", ESCAPER)
        env.cli("add", "esc", "@after", sys.executable, str(script), "main", str(work))
        env.start_daemon()
        status = json.loads(env.cli("status", "--json").stdout)
        assert status["kill_method"] == "cgroup", status
        assert "cron-scheduler-" in status["kill_detail"], status
        assert "kill      cgroup (" in env.cli("status").stdout
        env.cli("run", "esc")
        escaper = pid_of(work, "escaper")
        try:
            env.cli("stop", "esc")
            env.wait_runs("the run killed", lambda runs: [r for r in runs if r["status"] == "killed"])
            assert wait_until("escaper gone", lambda: not pid_alive(escaper), timeout=15)
        finally:  # it carries no marker: the harness's cleanup cannot find it
            try:
                os.kill(escaper, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_with_cgroups_an_unstartable_program_still_fails_to_spawn_with_its_own_error(tmp_path, cgroups):
    """The cgroup join goes through a small shell only where its exec behaves as execve: a
    missing program or a script without #! is a spawn failure naming it, as without cgroups."""
    script = tmp_path / "noshebang"
    script.write_text("echo hi\n")
    script.chmod(0o755)
    for argv, error in (((str(tmp_path / "missing"),), FileNotFoundError), ((str(script),), OSError)):
        spec = RunSpec(run_id=1, job_id="j", argv=argv, env={}, cwd=None, log_path=tmp_path / "1.log",
                       max_output=10, timeout=None, marker=uuid.uuid4().hex)
        with pytest.raises(error) as info:
            spawn(spec)
        assert info.value.filename == argv[0] or "Exec format error" in str(info.value)


def test_one_keeper_process_holds_the_pipes_of_all_runs(tmp_path):
    """The FIFO read ends are held by one long-lived keeper, not by a fork of the caller per run."""
    pids = []
    try:
        for n in range(3):
            spec = RunSpec(run_id=n, job_id="j", argv=("/bin/sleep", "30"), env={}, cwd=None,
                           log_path=tmp_path / f"{n}.log", max_output=10, timeout=None, marker=uuid.uuid4().hex)
            pid, fd = spawn(spec)
            os.close(fd)
            pids.append(pid)
        me = str(os.getpid())
        children = [name for name in os.listdir("/proc") if name.isdigit()
                    and _ppid(name) == me and int(name) not in pids]
        keepers = [c for c in children if b"keeper.py" in Path(f"/proc/{c}/cmdline").read_bytes()]
        assert len(keepers) == 1, children
        # the keeper holds a read end of each run's FIFO
        end = time.monotonic() + 10
        while time.monotonic() < end:
            held = {os.readlink(f"/proc/{keepers[0]}/fd/{fd}") for fd in os.listdir(f"/proc/{keepers[0]}/fd")}
            if all(any(str(tmp_path / f"{n}.pipe") in h for h in held) for n in range(3)):
                break
            time.sleep(0.02)
        else:
            pytest.fail(f"the keeper does not hold the pipes: {held}")
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)


def _ppid(pid: str) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]
    except (OSError, IndexError):
        return None
