"""state.db on a full disk while the daemon runs (DESIGN.md section 7; issue: "disk full: a
clear error in the log, the daemon keeps running the jobs it has, no partial files").

A full disk is simulated per process, without root or a special filesystem: RLIMIT_FSIZE is
lowered on the running daemon (prlimit), so its files cannot grow past their current size plus
a little room; a write beyond fails (EFBIG) just as on a full disk, and SQLite reports a disk
I/O error. Raising the limit again is the disk getting space back.
"""

from __future__ import annotations

import resource

import pytest

from harness import ACTIVE, pid_alive, wait_until

ROOM = 16 * 1024  # bytes each daemon file may still grow: the WAL fills it in a few seconds


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_state_db_unwritable_keeps_the_daemon_and_its_runs_alive(faults):
    faults.cli("add", "tick", "* * * * * *", "/bin/true")
    faults.cli("add", "long", "--shell", "@after", "sleep 4")
    daemon = faults.start_daemon()
    faults.wait_runs("tick running", lambda runs: sum(r["status"] == "succeeded" for r in runs) >= 2, "tick")
    faults.cli("run", "long")
    long_run = faults.wait_runs("long running", lambda runs: next(
        (r for r in runs if r["status"] == "running" and r["pid"]), None), "long")

    files = [faults.home / name for name in ("state.db-wal", "scheduler.log")]
    limit = max(f.stat().st_size for f in files) + ROOM
    resource.prlimit(daemon.pid, resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
    try:
        wait_until("the write error in scheduler.log",
                   lambda: "cannot write" in faults.log_text() and "retrying" in faults.log_text(),
                   timeout=60, describe=faults.log_tail)
        assert daemon.alive(), daemon.stderr()
        wait_until("the long run to end on its own while state.db is unwritable",
                   lambda: not pid_alive(long_run["pid"]), timeout=30)
        assert daemon.alive() and "Traceback" not in daemon.stderr()
    finally:
        resource.prlimit(daemon.pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))

    final = faults.wait_runs("the long run recorded once space is back", lambda runs: next(
        (r for r in runs if r["run_id"] == long_run["run_id"] and r["status"] not in ACTIVE), None), "long")
    assert final["status"] == "succeeded" and final["exit_code"] == 0, final
    resumed = faults.wait_runs("tick runs again", lambda runs: [
        r for r in runs if r["status"] == "succeeded" and r["queued_at"] > final["finished_at"]], "tick")
    assert resumed
    ticks = faults.runs("tick")
    slots = [(r["slot"], r["attempt"]) for r in ticks]
    assert len(slots) == len(set(slots)), "a slot ran twice"
    assert not [r for r in ticks if r["status"] == "running" and r["run_id"] < resumed[0]["run_id"]]
    assert faults.query("PRAGMA integrity_check") == [{"integrity_check": "ok"}]
    assert daemon.terminate() == 0

