"""state.db under another writer's lock, with damaged pages, and with links planted at its
names (issue 11, items 9, 12 and 4): the real daemon and CLI on a temp home.

Sleeps here only choose how long a fault lasts; outcomes are polled with generous deadlines.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import time

import pytest

from harness import ACTIVE, pid_alive, wait_until

LOCKED = "locked by another process"


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_a_writer_holding_state_db_does_not_stall_supervision(faults):
    """Another process holds state.db's write lock while a run's cap expires: the daemon still
    kills the run on time (its loop is not stuck waiting for the lock), says once why it cannot
    record, and records the run `timeout` exactly once when the lock is released."""
    faults.cli("add", "tick", "* * * * * *", "/bin/true")  # a write every second
    faults.cli("add", "capped", "--timeout", "2s", "@after", "/bin/sleep", "60")
    daemon = faults.start_daemon()
    faults.wait_runs("tick to run", lambda runs: any(r["status"] == "succeeded" for r in runs), "tick")
    faults.cli("run", "capped")
    run = faults.wait_runs("capped running", lambda runs: next(
        (r for r in runs if r["status"] == "running" and r["pid"]), None), "capped")

    holder = sqlite3.connect(faults.home / "state.db", isolation_level=None, timeout=30)
    holder.execute("BEGIN IMMEDIATE")
    locked_at = time.monotonic()
    try:
        # the cap ends within 2 s of the start; with the daemon blocked on the lock (30 s busy
        # timeout) nothing would kill it before the lock is released
        wait_until("the capped run's process to be killed while state.db is locked",
                   lambda: not pid_alive(run["pid"]), timeout=12, interval=0.05, describe=faults.log_tail)
        assert time.monotonic() - locked_at < 12
        wait_until("the lock reported in scheduler.log", lambda: LOCKED in faults.log_text(),
                   timeout=10, describe=faults.log_tail)
        # reads work while another process holds the write lock (WAL): the CLI still answers
        rows = faults.history("capped")
        assert [r["status"] for r in rows] == ["running"], rows
        time.sleep(3)  # several retries while still locked
        assert daemon.alive(), daemon.stderr()
    finally:
        holder.execute("ROLLBACK")
        holder.close()

    final = faults.wait_runs("the capped run recorded after the lock is released", lambda runs: next(
        (r for r in runs if r["status"] not in ACTIVE), None), "capped")
    assert final["status"] == "timeout" and final["run_id"] == run["run_id"], final
    assert len(faults.runs("capped")) == 1
    resumed = faults.wait_runs("tick runs again", lambda runs: [
        r for r in runs if r["status"] == "succeeded" and r["queued_at"] > final["finished_at"]], "tick")
    assert resumed
    log = faults.log_text()
    lock_lines = [line for line in log.splitlines() if LOCKED in line]
    assert len(lock_lines) == 1, lock_lines  # said once, not at every retry
    assert "state.db accepts writes again" in log
    assert "Traceback" not in daemon.stderr()
    slots = [(r["slot"], r["attempt"]) for r in faults.runs("tick")]
    assert len(slots) == len(set(slots)), "a slot ran twice"
    assert daemon.terminate() == 0
