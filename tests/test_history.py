"""history.py against a real state.db: start order of queued runs."""

from datetime import datetime, timedelta, timezone

from cron_scheduler.history import History
from cron_scheduler.home import Home
from cron_scheduler.models import RunStatus

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=timezone.utc)


def test_queued_runs_come_by_priority_then_slot_then_age_and_page(tmp_path):
    with History.opened(Home(tmp_path / "home")) as history:
        t1, t2 = T0.isoformat(), (T0 + timedelta(minutes=1)).isoformat()

        def queue(name, priority, scheduled_for, **extra):
            return history.add_run(RunStatus.QUEUED, scheduled_for, job_id=name, scheduled_for=scheduled_for,
                                   trigger="manual", priority=priority, **extra)
        low = queue("low", 1, t1)
        high_late = queue("high_late", 5, t2)
        mid_b_first = queue("mid_a", 3, t1)
        neg = queue("neg", -2, t1)
        mid_b_second = queue("mid_b", 3, t1)
        high_early = queue("high_early", 5, t1)
        queue("later", 9, t1, not_before=(T0 + timedelta(hours=1)).isoformat())  # not due yet
        now = T0.isoformat()
        order = [r.run_id for r in history.queued(now, 100)]
        assert order == [high_early, high_late, mid_b_first, mid_b_second, low, neg]
        assert [r.run_id for r in history.queued(now, 2, offset=2)] == order[2:4]


def test_changed_sees_writes_by_this_connection_and_by_others(tmp_path):
    """The daemon's idle pass skips its queries while changed() is False: it must report every
    commit, its own (a finished run recorded) and the CLI's (a request)."""
    home = Home(tmp_path / "home")
    with History.opened(home) as daemon, History.opened(home) as cli:
        assert daemon.changed()  # the first call has nothing to compare with
        assert not daemon.changed()
        with daemon.transaction():
            daemon.add_run(RunStatus.QUEUED, T0.isoformat(), job_id="a", scheduled_for=T0.isoformat(),
                           trigger="manual")
        assert daemon.changed() and not daemon.changed()
        cli.add_request("run", {"jobs": ["a"]}, T0.isoformat())
        assert daemon.changed() and not daemon.changed()
        daemon.queued(T0.isoformat(), 10)  # reads change nothing
        assert not daemon.changed()


def test_commits_are_durable_synchronous_full_in_wal_mode(tmp_path):
    """synchronous=NORMAL in WAL mode may lose the last commits on power loss (a slot's claim,
    then its process would start again): the CLI's connections commit with FULL."""
    with History.opened(Home(tmp_path / "home")) as history:
        assert history.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert history.conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_the_daemon_fsyncs_only_the_commits_that_claim_a_run(tmp_path):
    """sync_on_claims: plain commits are NORMAL (no fsync; a crash of the process loses none of
    them); a transaction that claims a run commits with FULL (opened durable), or else ends
    with a FULL commit of its own, which fsyncs the WAL with every commit before it, before the
    caller goes on to spawn the run."""
    with History.opened(Home(tmp_path / "home")) as history:
        history.sync_on_claims()
        run_id = history.add_run(RunStatus.QUEUED, "2026-01-01T00:00:00+00:00", job_id="a",
                                 scheduled_for="2026-01-01T00:00:00+00:00", trigger="manual",
                                 queued_at="2026-01-01T00:00:00+00:00")
        statements: list[str] = []
        history.conn.set_trace_callback(statements.append)
        with history.transaction():
            history.update_run(run_id, output_path="/x.log")
        assert not [s for s in statements if "synchronous" in s]  # a plain commit: NORMAL
        assert history.conn.execute("PRAGMA synchronous").fetchone()[0] == 1
        statements.clear()
        with history.transaction():
            history.claim(run_id, marker="m1", output_path="/x.log")
        tail = statements[statements.index("COMMIT"):]
        assert tail[1] == "PRAGMA synchronous=FULL" and tail[-1] == "PRAGMA synchronous=NORMAL"
        assert any(s.startswith("PRAGMA user_version =") for s in tail)  # the write FULL fsyncs
        statements.clear()
        with history.transaction():  # the claim's sync was taken: the next plain commit is NORMAL
            history.update_run(run_id, output_path="/y.log")
        assert not [s for s in statements if "synchronous" in s]
        statements.clear()
        with history.transaction(durable=True):  # where claims are made: FULL in its own COMMIT
            history.claim(run_id, marker="m2", output_path="/x.log")
        assert statements[:2] == ["PRAGMA synchronous=FULL", "BEGIN IMMEDIATE"]
        assert statements[-2:] == ["COMMIT", "PRAGMA synchronous=NORMAL"]  # no second write after it
        assert history.conn.execute("PRAGMA synchronous").fetchone()[0] == 1


def test_a_write_locked_by_another_process_fails_fast_with_a_clear_message(tmp_path):
    """The daemon's short busy timeout: a write behind another writer's lock is a
    StateWriteError after about that long (not 30 s), and says what holds it."""
    import sqlite3
    import time

    import pytest

    from cron_scheduler.errors import StateWriteError
    home = Home(tmp_path / "home")
    with History.opened(home) as daemon:
        daemon.set_busy_timeout(0.2)
        holder = sqlite3.connect(home.state_db, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            start = time.monotonic()
            with pytest.raises(StateWriteError, match="locked by another process for more than 0.2s"):
                with daemon.transaction():
                    daemon.add_run(RunStatus.QUEUED, T0.isoformat(), job_id="a", scheduled_for=T0.isoformat(),
                                   trigger="manual")
            assert time.monotonic() - start < 5
            assert daemon.runs() == []  # reads still work while another process writes (WAL)
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        with daemon.transaction():  # and writes again once the lock is gone
            daemon.add_run(RunStatus.QUEUED, T0.isoformat(), job_id="a", scheduled_for=T0.isoformat(),
                                   trigger="manual")
        assert len(daemon.runs()) == 1
