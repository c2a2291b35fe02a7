"""Armed runs (pool.py `prepare`, runner.py `arm`): with run cgroups, a prepared run's process is
spawned ahead of its start, joins its cgroup and waits before the run's program; the start is
then one write. The program must never run before the start, nor at all when the run is
discarded or the daemon dies. Real cgroups and processes; skipped where cgroup v2 is unusable
(the `cgroups` fixture of test_cgroup.py says why)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from harness import wait_until
from cron_scheduler import pool as pool_module
from cron_scheduler.pool import LocalPool
from cron_scheduler.runner import RunSpec, find_marked
from test_cgroup import cgroups, run_until_done  # noqa: F401 - the fixture

pytestmark = pytest.mark.timeout(120)


def touch_spec(tmp_path: Path, run_id: int) -> RunSpec:
    """A run whose program leaves <tmp>/ran-<run_id> (a #! script: exec'd through the shim)."""
    (tmp_path / "home").mkdir(exist_ok=True)
    script = tmp_path / "touch.sh"
    script.write_text('#!/bin/sh\necho ran > "$1"\n')
    script.chmod(0o755)
    return RunSpec(run_id=run_id, job_id="j", argv=(str(script), str(tmp_path / f"ran-{run_id}")),
                   env=dict(os.environ), cwd=None, log_path=tmp_path / "home" / "runs" / "j" / f"{run_id}.log",
                   max_output=1 << 16, timeout=None, marker="m" + uuid.uuid4().hex)


def held_process(spec: RunSpec) -> int:
    """The armed process of a prepared run, once it exists."""
    return wait_until("the armed process", lambda: next(iter(find_marked(spec.marker)), None))


@pytest.fixture
def pool(cgroups):
    pool = LocalPool(max_workers=2)
    yield pool
    pool.shutdown(1.0)


def test_a_prepared_run_waits_in_its_cgroup_and_runs_its_program_only_when_submitted(tmp_path, cgroups, pool):
    spec = touch_spec(tmp_path, 1)
    pool.prepare(spec)
    pid = held_process(spec)
    wait_until("it joined its cgroup", lambda: pid in cgroups.pids(spec.marker))
    time.sleep(0.3)  # the program has had every chance to run early: it must not have
    assert not (tmp_path / "ran-1").exists()
    assert pool.submit(spec).pid == pid  # the same process becomes the run
    (result,) = run_until_done(pool)
    assert (result.run_id, result.exit_code) == (1, 0)
    assert (tmp_path / "ran-1").read_text() == "ran\n"


def test_no_more_runs_are_armed_than_the_bound(tmp_path, pool, monkeypatch):
    """ARMED_AHEAD prepared runs at the most (max_workers where that is more), in the order
    they were prepared; a start frees a place for the next one."""
    monkeypatch.setattr(pool_module, "ARMED_AHEAD", 3)  # the pool has 2 workers
    specs = prepare_and_count_armed(pool, [touch_spec(tmp_path, i) for i in range(1, 6)], 3)
    pool.submit_many(specs[:2])
    for spec in specs[3:5]:  # the freed places go to the next prepared runs
        held_process(spec)
    monkeypatch.setattr(pool_module, "ARMED_AHEAD", 1)  # below max_workers: max_workers rules
    other = LocalPool(max_workers=2)
    try:
        prepare_and_count_armed(other, [touch_spec(tmp_path, i) for i in range(6, 9)], 2)
    finally:
        other.shutdown(1.0)


def prepare_and_count_armed(pool: LocalPool, specs: list[RunSpec], armed: int) -> list[RunSpec]:
    """Prepare specs; the first `armed` of them get their process, the others none."""
    for spec in specs:
        pool.prepare(spec)
    for spec in specs[:armed]:
        held_process(spec)
    time.sleep(0.3)  # a process the bound should have refused has had every chance to appear
    assert [bool(find_marked(s.marker)) for s in specs] == [True] * armed + [False] * (len(specs) - armed)
    return specs


def test_a_discarded_armed_run_never_runs_and_leaves_no_process_nor_cgroup(tmp_path, cgroups, pool):
    spec = touch_spec(tmp_path, 1)
    pool.prepare(spec)
    pid = held_process(spec)
    pool.discard(1)
    assert not find_marked(spec.marker)
    with pytest.raises(ChildProcessError):  # reaped: no zombie left behind
        os.waitpid(pid, os.WNOHANG)
    assert not cgroups.path(spec.marker).exists()
    assert not (tmp_path / "ran-1").exists()
    assert not list((tmp_path / "home" / "runs" / "j").glob("*.pipe"))


def test_armed_runs_exit_without_running_when_their_daemon_is_killed(tmp_path, cgroups):
    spec = touch_spec(tmp_path, 1)
    holder = tmp_path / "holder.py"
    holder.write_text(textwrap.dedent(f"""
        import sys, time
        sys.path[:0] = {sys.path!r}
        from pathlib import Path
        from cron_scheduler.cgroup import RunCgroups
        from cron_scheduler.pool import LocalPool
        from cron_scheduler.runner import RunSpec, use_cgroups
        use_cgroups(RunCgroups(Path({str(cgroups.base)!r})))
        pool = LocalPool(max_workers=2)
        pool.prepare(RunSpec(run_id=1, job_id="j", argv={spec.argv!r}, env={{}}, cwd=None,
                             log_path=Path({str(spec.log_path)!r}), max_output=100, timeout=None,
                             marker={spec.marker!r}))
        print("prepared", flush=True)
        time.sleep(600)
    """))
    proc = subprocess.Popen([sys.executable, str(holder)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "prepared\n"
        held_process(spec)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        wait_until("the armed process gone", lambda: not find_marked(spec.marker))
        assert not (tmp_path / "ran-1").exists()
    finally:
        proc.kill()
        proc.wait()
