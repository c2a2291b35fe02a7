"""The Pool contract (DESIGN.md section 5): what the engine may rely on from any pool. The same
tests run against LocalPool (real processes), FakePool (tests/fake_pool.py, loop timers) and
DaskPool (a real Dask scheduler and two workers on 127.0.0.1, tests/dask_cluster.py), so another
executor can be dropped in and checked the same way."""

from __future__ import annotations

import os
import json
import time
import uuid
from pathlib import Path

import pytest

from fake_pool import FakePool
from cron_scheduler.loop import Loop
from cron_scheduler.pool import LocalPool, Pool
from cron_scheduler.executors.base import Claim, Handle, Outcome, RunResult, RunSpec


def _dask_pool(request, **kwargs):
    from cron_scheduler.executors.dask import DaskPool
    return DaskPool(request.getfixturevalue("dask_cluster").address, **kwargs)


@pytest.fixture(params=[LocalPool, FakePool, _dask_pool], ids=["local", "fake", "dask"])
def pool(request):
    make = request.param
    p = make(request, max_workers=2, kill_grace=1.0, loop=Loop()) if make is _dask_pool else \
        make(max_workers=2, kill_grace=1.0, loop=Loop())
    yield p
    p.shutdown(0)
    p.loop.close()


def spec(tmp_path: Path, run_id: int, *argv: str, timeout: float | None = None) -> RunSpec:
    return RunSpec(run_id=run_id, job_id=f"job{run_id}", argv=argv, env=dict(os.environ), cwd=None,
                   log_path=tmp_path / "runs" / f"{run_id}.log", max_output=1 << 20,
                   timeout=timeout, marker=uuid.uuid4().hex)


def results(pool: Pool, run_ids, deadline: float = 30.0) -> dict[int, RunResult]:
    got: dict[int, RunResult] = {}
    end = time.monotonic() + deadline
    while not set(run_ids) <= got.keys():
        assert time.monotonic() < end, f"no result for {set(run_ids) - got.keys()} in {deadline}s"
        got.update((r.run_id, r) for r in pool.wait(end - time.monotonic()))
    return got


def test_submit_gives_a_storable_handle_and_a_result_with_its_outcome(pool, tmp_path):
    a, b = spec(tmp_path, 1, "/bin/true"), spec(tmp_path, 2, "/bin/false")
    handle = pool.submit(a)
    assert isinstance(handle, Handle) and isinstance(json.loads(handle.state), dict)  # one JSON column
    assert pool.submit(b) is not None
    got = results(pool, [1, 2])
    assert (got[1].outcome, got[1].exit_code) == (Outcome.EXITED, 0)
    assert (got[2].outcome, got[2].exit_code) == (Outcome.EXITED, 1)
    assert pool.running() == set() and pool.free_slots() == 2


def test_a_run_that_cannot_start_is_a_spawn_failed_result(pool, tmp_path, request):
    handle = pool.submit(spec(tmp_path, 1, "/no/such/program"))
    if "dask" not in request.node.callspec.id:  # a cluster learns it on the worker, after submit
        assert handle is None
    r = results(pool, [1])[1]
    assert r.outcome is Outcome.SPAWN_FAILED and r.error and r.exit_code is None
    assert pool.free_slots() == 2


def test_free_slots_and_running(pool, tmp_path):
    pool.submit(spec(tmp_path, 1, "/bin/sleep", "30"))
    assert pool.free_slots() == 1 and pool.running() == {1}
    pool.submit(spec(tmp_path, 2, "/bin/sleep", "30"))
    assert pool.free_slots() == 0 and pool.running() == {1, 2}
    pool.cancel(1, "make room")
    results(pool, [1])
    assert pool.free_slots() == 1 and pool.running() == {2}


def test_cancel_gives_cancelled_with_its_reason(pool, tmp_path):
    pool.submit(spec(tmp_path, 1, "/bin/sleep", "30"))
    pool.cancel(1, "stopped by user")
    pool.cancel(1, "a second cancel is ignored")
    pool.cancel(99, "an unknown run is ignored")
    r = results(pool, [1])[1]
    assert r.outcome is Outcome.CANCELLED and r.cancelled and r.cancel_reason == "stopped by user"


def test_timeout_gives_timed_out(pool, tmp_path):
    pool.submit(spec(tmp_path, 1, "/bin/sleep", "30", timeout=0.3))
    r = results(pool, [1])[1]
    assert r.outcome is Outcome.TIMED_OUT and r.timed_out and not r.cancelled


def test_recover_of_an_unknown_run_finds_nothing(pool, tmp_path):
    gone = Claim(7, uuid.uuid4().hex, None, time.time(), None, None, 1 << 20)  # never started
    assert pool.recover([gone]) == set()  # and forgetting it is harmless
    assert pool.running() == set() and pool.free_slots() == 2


def test_wait_sleeps_on_the_loop_until_a_result(pool, tmp_path):
    pool.submit(spec(tmp_path, 1, "/bin/sleep", "0.5"))
    cpu, start = time.process_time(), time.monotonic()
    r = results(pool, [1])[1]
    assert r.outcome is Outcome.EXITED and time.monotonic() - start >= 0.4
    assert time.process_time() - cpu < 0.3


def test_shutdown_returns_every_outstanding_run(pool, tmp_path):
    pool.submit(spec(tmp_path, 1, "/bin/sleep", "30"))
    pool.submit(spec(tmp_path, 2, "/bin/sleep", "30"))
    got = {r.run_id: r for r in pool.shutdown(1.0)}
    assert set(got) == {1, 2}
    assert all(r.outcome is Outcome.CANCELLED and r.cancel_reason == "daemon shutdown" for r in got.values())
