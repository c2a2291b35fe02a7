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


PAGE_LEAF_TABLE = 0x0D


def _fill_history(home, job_id: str, count: int) -> None:
    """Finished runs of a job, as the daemon records them, so the runs table spans many pages."""
    from cron_scheduler.history import History
    from cron_scheduler.home import Home
    with History.opened(Home(home)) as history, history.transaction():
        for i in range(count):
            slot = f"2025-01-01T00:{i // 60:02d}:{i % 60:02d}+00:00"
            run_id = history.conn.execute(
                "INSERT INTO runs (job_id, slot, scheduled_for, trigger, status, queued_at, started_at, "
                "finished_at, exit_code, marker, output_bytes) VALUES (?, ?, ?, 'schedule', 'succeeded', ?, ?, ?, "
                "0, ?, 0)", (job_id, slot, slot, slot, slot, slot, f"m{i}")).lastrowid
            history.update_run(run_id, output_path=str(home / "runs" / job_id / f"{run_id}.log"))


def _damage_a_runs_page(db) -> int:
    """Overwrite the header and cell pointers of a leaf page of the runs table, in the middle of
    the table (found by its content: the run log paths). Returns the page number."""
    data = bytearray(db.read_bytes())
    size = int.from_bytes(data[16:18], "big")
    size = 65536 if size == 1 else size
    leaves = [n for n in range(1, len(data) // size)
              if data[n * size] == PAGE_LEAF_TABLE and b".log" in data[n * size:(n + 1) * size]]
    assert len(leaves) >= 5, f"runs span only {len(leaves)} leaf pages"
    page = leaves[len(leaves) // 2]
    data[page * size:page * size + 64] = b"\xa5" * 64
    db.write_bytes(bytes(data))
    return page


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_damaged_state_db_is_one_clear_error_and_doctor_rebuilds_it(faults):
    faults.cli("add", "tick", "* * * * * *", "/bin/true")
    faults.cli("add", "other", "*/2 * * * * *", "/bin/true")
    daemon = faults.start_daemon()
    faults.wait_runs("a few real runs", lambda runs: len([r for r in runs if r["status"] == "succeeded"]) >= 4)
    assert daemon.terminate() == 0
    _fill_history(faults.home, "old", 600)
    db = faults.home / "state.db"
    assert not (faults.home / "state.db-wal").exists() or (faults.home / "state.db-wal").stat().st_size == 0
    before = {r["run_id"] for r in faults.runs()}
    jobs_before = (faults.home / "jobs.json").read_bytes()
    _damage_a_runs_page(db)

    # the daemon: one clear line at start, exit 1, no traceback, nothing started
    broken = faults.start_daemon(wait_started=False)
    assert broken.wait(30) == 1
    err = broken.stderr().strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert str(db) in err and "damaged" in err and "doctor --repair" in err, err
    # the CLI reading the damaged pages: one line too
    history = faults.cli("history", "--limit", "1000", check=False)
    assert history.returncode == 1 and "Traceback" not in history.stderr, history.stderr
    assert "damaged" in history.stderr and len(history.stderr.strip().splitlines()) == 1, history.stderr

    checked = faults.cli("doctor", check=False)
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert "damaged" in checked.stderr and "doctor --repair" in checked.stderr and "Traceback" not in checked.stderr

    repaired = faults.cli("doctor", "--repair")
    assert "Traceback" not in repaired.stderr
    aside = list(faults.home.glob("state.db.corrupt-*"))
    assert [p for p in aside if not p.name.endswith(("-wal", "-shm"))], list(faults.home.iterdir())
    assert faults.cli("doctor").stdout.strip().endswith(": ok")
    assert faults.query("PRAGMA integrity_check") == [{"integrity_check": "ok"}]
    salvaged = {r["run_id"] for r in faults.runs()}
    assert salvaged < before and len(salvaged) > len(before) // 2, (len(salvaged), len(before))
    assert stat.S_IMODE(os.stat(db).st_mode) == 0o600

    # the daemon starts and runs the jobs again; no slot twice; new runs take new ids
    daemon = faults.start_daemon()
    fresh = faults.wait_runs("tick runs after the repair", lambda runs: [
        r for r in runs if r["run_id"] not in before and r["status"] == "succeeded"], "tick")
    assert min(r["run_id"] for r in fresh) > max(before)
    slots = [(r["job_id"], r["slot"], r["attempt"]) for r in faults.runs() if r["slot"]]
    assert len(slots) == len(set(slots)), "a slot ran twice"
    assert daemon.terminate() == 0
    assert (faults.home / "jobs.json").read_bytes() == jobs_before


@pytest.mark.parametrize("name", ["state.db", "state.db-wal", "state.db-shm", "state.db-journal"])
def test_link_planted_at_state_db_is_refused_and_never_followed(faults, name):
    """SQLite follows links: a link planted at state.db or a side file would make the daemon
    chmod, read or write the file it points to. Refused in one line; the victim, outside the
    home, keeps its bytes and its mode."""
    faults.cli("add", "tick", "* * * * * *", "/bin/true")
    if name != "state.db":  # a home that has run before: state.db exists, its side file is planted
        faults.run_once()
        for suffix in ("-wal", "-shm", "-journal"):
            (faults.home / f"state.db{suffix}").unlink(missing_ok=True)
    victim = faults.tmp / "victim"
    content = b"precious bytes outside the home\n" * 64
    victim.write_bytes(content)
    victim.chmod(0o644)
    (faults.home / name).symlink_to(victim)

    daemon = faults.start_daemon(wait_started=False)
    assert daemon.wait(30) == 1
    assert victim.read_bytes() == content
    assert stat.S_IMODE(victim.stat().st_mode) == 0o644
    err = daemon.stderr().strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert f"refusing {faults.home / name}: it is a symbolic link" in err, err
    cli = faults.cli("history", check=False)
    assert cli.returncode == 1 and "refusing" in cli.stderr and "Traceback" not in cli.stderr, cli.stderr
    doctor = faults.cli("doctor", check=False)
    assert doctor.returncode == 1 and "refusing" in doctor.stderr, doctor.stderr

    assert victim.read_bytes() == content
    assert stat.S_IMODE(victim.stat().st_mode) == 0o644
    assert (faults.home / name).is_symlink()
