"""A run's output pipe: the run's end of the FIFO, its end of file, and what a background
writer that outlives its run sees (DESIGN.md section 5, Execution). Real processes and FIFOs."""

from __future__ import annotations

import os
import resource
import sys
import time
import uuid
from pathlib import Path

import pytest

from harness import temp_env, ts
from cron_scheduler.pool import OUTPUT_GRACE, LocalPool
from cron_scheduler.runner import RunSpec


def quick_spec(tmp_path: Path, run_id: int, argv=("/bin/true",)) -> RunSpec:
    return RunSpec(run_id=run_id, job_id="quick", argv=tuple(argv), env=dict(os.environ),
                   cwd=str(tmp_path), log_path=tmp_path / "runs" / f"{run_id}.log",
                   max_output=1 << 20, timeout=None, marker=uuid.uuid4().hex)


@pytest.fixture
def env(tmp_path):
    with temp_env(tmp_path) as e:
        yield e


# --- a quick run ends when it exits, not OUTPUT_GRACE later ----------------------------------

def test_a_quick_run_ends_at_its_exit_when_the_caller_only_calls_wait_zero(tmp_path):
    """A daemon with a due timer calls wait(0): the end of file must still be seen."""
    pool = LocalPool(max_workers=2, kill_grace=1.0)
    try:
        pool.submit(quick_spec(tmp_path, 1))
        results, end = [], time.monotonic() + 30
        while not results and time.monotonic() < end:
            results = pool.wait(0)
            time.sleep(0.005)  # the caller's own work between two calls
        assert results, "the run never finished"
        (result,) = results
        assert result.exit_code == 0, result
        took = result.finished_at - result.started_at
        assert took < OUTPUT_GRACE / 2, f"a /bin/true run took {took:.3f}s (the output grace)"
    finally:
        pool.shutdown(0)


@pytest.mark.timeout(120)
def test_once_runs_a_retry_at_its_speed_without_spinning(env):
    """--once with a retry due 3 s later and an every-second schedule: the slots falling due
    meanwhile are not its to fire; it must sleep, not spin, and record the retry's real length."""
    env.cli("add", "flaky", "--retries", "1", "--retry-delay", "3s", "* * * * * *", "/bin/false")
    env.cli("run", "flaky")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    env.run_once()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    runs = env.runs("flaky")
    retries = [r for r in runs if r["trigger"] == "retry"]
    assert retries and all(r["status"] == "failed" for r in retries), env.describe_runs()
    for r in retries:
        took = ts(r["finished_at"]) - ts(r["started_at"])
        assert took < OUTPUT_GRACE / 2, f"retry run {r['run_id']} took {took:.3f}s\n{env.log_tail()}"
    # start-up (imports) costs about 0.2 s of CPU; 3 s of spinning costs seconds
    assert cpu < 0.8, f"--once used {cpu:.2f}s of CPU waiting 3s for a retry (busy loop)"


# --- a background writer that outlives its run -----------------------------------------------

# main starts a background writer and exits at once; the writer waits for its run to be
# recorded (go file), then writes forever and notes how its writing ended in <dir>/outcome.
BACKGROUND = """
import os, subprocess, sys, time
d = sys.argv[2]
if sys.argv[1] == "main":
    subprocess.Popen([sys.executable, __file__, "writer", d], start_new_session=True)
    sys.exit(0)
while not os.path.exists(os.path.join(d, "go")):
    time.sleep(0.01)
try:
    while True:
        os.write(1, b"x" * 65536)
except BrokenPipeError:
    outcome = "EPIPE"
with open(os.path.join(d, "outcome"), "w") as f:
    f.write(outcome)
"""


def test_a_background_writer_of_a_finished_run_gets_epipe_instead_of_blocking_forever(tmp_path):
    script = tmp_path / "bg.py"
    script.write_text(BACKGROUND)
    pool = LocalPool(max_workers=2, kill_grace=1.0)
    try:
        pool.submit(quick_spec(tmp_path, 1, argv=(sys.executable, str(script), "main", str(tmp_path))))
        results, end = [], time.monotonic() + 30
        while not results and time.monotonic() < end:
            results = pool.wait(1.0)
        assert results and results[0].exit_code == 0, results
        (tmp_path / "go").touch()  # the pool has let go of the output: nobody will drain it
        end = time.monotonic() + 20
        while not (tmp_path / "outcome").exists() and time.monotonic() < end:
            pool.wait(0.05)  # reaps the writer when it exits (the pool is its subreaper's stand-in)
        assert (tmp_path / "outcome").exists(), "the background writer blocks on the FIFO forever"
        assert (tmp_path / "outcome").read_text() == "EPIPE"
    finally:
        pool.shutdown(0)
        for name in os.listdir("/proc"):  # never leave the writer behind
            if name.isdigit():
                try:
                    if str(script).encode() + b"\0writer" in open(f"/proc/{name}/cmdline", "rb").read():
                        os.kill(int(name), 9)
                except OSError:
                    pass
