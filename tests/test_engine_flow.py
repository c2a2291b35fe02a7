"""The engine driven in-process: real state.db and job store, a fake pool, `now` a parameter.

Each test names one promise of the README (waves, catch-up, requests, the run lifecycle) and
checks it through the engine's own passes (fire_due, advance_waves, start_queued, record),
without processes or sleeps.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from datetime import datetime, timedelta, timezone

import pytest

from cron_scheduler.engine import Engine, Requests
from cron_scheduler.executors.base import Handle
from cron_scheduler.errors import IllegalTransition, StateWriteError
from cron_scheduler.history import History
from cron_scheduler.home import Config, Home
from cron_scheduler.jobs import JobService
from cron_scheduler.models import CatchUp, Job, Overlap, RunStatus, Trigger, to_iso
from cron_scheduler.pool import Pool
from cron_scheduler.runner import Outcome, RunResult

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=timezone.utc)
S = RunStatus


class ManualPool(Pool):
    """Accepts runs and keeps them 'running' until the test finishes them (the contract tests'
    tests/fake_pool.py ends runs on loop timers instead)."""

    def __init__(self, max_workers: int = 10):
        self.max_workers = max_workers
        self.specs: dict[int, object] = {}
        self.cancelled: list[int] = []

    def free_slots(self) -> int:
        return self.max_workers - len(self.specs)

    def submit(self, spec):
        self.specs[spec.run_id] = spec
        return Handle.of({})

    def cancel(self, run_id: int, reason: str) -> None:
        self.cancelled.append(run_id)

    def running(self) -> set[int]:
        return set(self.specs)

    def results(self):
        return []

    def shutdown(self, grace):
        return []

    def finish(self, run_id: int, at: datetime, exit_code: int = 0) -> RunResult:
        self.specs.pop(run_id)
        return RunResult(run_id=run_id, pid=None, started_at=at.timestamp() - 1, finished_at=at.timestamp(),
                         exit_code=exit_code, outcome=Outcome.EXITED)


def job(job_id: str, schedule: str = "@after", **kw) -> Job:
    kw.setdefault("created_at", to_iso(T0))
    return Job(id=job_id, schedule=schedule, command=("/bin/true",), **kw)


@pytest.fixture
def site(tmp_path):
    return Site(Home(tmp_path / "home").ensure())


class Site:
    def __init__(self, home: Home):
        self.home = home
        self.pool = ManualPool()
        self.history = History.open(home)
        self.engine: Engine | None = None

    def add(self, *jobs: Job) -> None:
        service = JobService(self.home)
        for j in jobs:
            service.add(j, replace=True)

    def start(self, now: datetime, started: datetime | None = None) -> Engine:
        self.engine = Engine(self.home, Config(), self.pool, self.history, started=started or now)
        self.engine.reload(now, force=True)
        return self.engine

    def step(self, now: datetime) -> None:
        """One pass of the daemon's loop (without requests)."""
        self.engine.reload(now)
        self.engine.fire_due(now)
        self.engine.advance_waves(now)
        self.engine.start_queued(now)

    def finish(self, job_id: str, now: datetime, exit_code: int = 0) -> None:
        run_id = next(r for r, spec in self.pool.specs.items() if spec.job_id == job_id)
        self.engine.record_all([self.pool.finish(run_id, now, exit_code)], now)

    def runs(self, job_id: str | None = None):
        return list(reversed(self.history.runs(job_id, limit=None)))

    def statuses(self, job_id: str) -> list[str]:
        return [r.status.value for r in self.runs(job_id)]


# --- the run lifecycle -------------------------------------------------------------------

def test_every_status_change_appends_one_run_event_in_the_same_transaction(site):
    at = to_iso(T0)
    run_id = site.history.add_run(S.QUEUED, at, job_id="a", scheduled_for=at, trigger=Trigger.MANUAL.value)
    site.history.transition(run_id, S.RUNNING, at, started_at=at)
    site.history.transition(run_id, S.FAILED, at, finished_at=at, reason="exit 3")
    events = site.history.events()
    assert [(e.run_id, e.old_status, e.new_status) for e in events] == [
        (run_id, None, S.QUEUED), (run_id, S.QUEUED, S.RUNNING), (run_id, S.RUNNING, S.FAILED)]
    assert events[-1].reason == "exit 3" and events[-1].job_id == "a"
    assert site.history.events(after=events[0].event_id)[0] == events[1]


@pytest.mark.parametrize("path", [
    (S.RUNNING,),                      # a new run never starts as running
    (S.QUEUED, S.SUCCEEDED),           # a queued run did not run
    (S.QUEUED, S.RUNNING, S.FAILED, S.RUNNING),  # a final status never changes
    (S.WAITING, S.RUNNING),            # released runs queue first
])
def test_illegal_transitions_are_refused_and_write_nothing(site, path):
    at = to_iso(T0)
    with pytest.raises(IllegalTransition):
        run_id = site.history.add_run(path[0], at, job_id="a", scheduled_for=at, trigger="manual")
        for status in path[1:-1]:
            site.history.transition(run_id, status, at)
        before = (site.history.get_run(run_id), len(site.history.events()))
        site.history.transition(run_id, path[-1], at, reason="x")
    if len(path) > 1:
        assert (site.history.get_run(run_id), len(site.history.events())) == before


def test_an_unknown_run_column_is_an_error_not_a_silent_no_op(site):
    at = to_iso(T0)
    with pytest.raises(ValueError, match="finishd_at"):
        site.history.add_run(S.QUEUED, at, job_id="a", scheduled_for=at, trigger="manual", finishd_at=at)
    run_id = site.history.add_run(S.QUEUED, at, job_id="a", scheduled_for=at, trigger="manual")
    with pytest.raises(ValueError, match="status"):
        site.history.update_run(run_id, status="running")  # only transition() changes a status
    assert site.history.get_run(run_id).status is S.QUEUED


def test_a_run_through_the_engine_leaves_its_whole_story_in_run_events(site):
    site.add(job("a", "* * * * *"))
    site.start(T0)
    site.step(T0 + timedelta(minutes=1))
    site.finish("a", T0 + timedelta(minutes=1, seconds=2), exit_code=2)
    (run,) = site.runs("a")
    assert [(e.old_status, e.new_status) for e in site.history.events()] == [
        (None, S.QUEUED), (S.QUEUED, S.RUNNING), (S.RUNNING, S.FAILED)]
    assert run.status is S.FAILED and run.exit_code == 2


# --- waves -------------------------------------------------------------------------------

def test_a_skipped_upstream_slot_skips_its_downstream_instead_of_blocking_it(site):
    site.add(job("up", "* * * * *", overlap=Overlap.SKIP), job("down", depends_on=("up",)))
    site.start(T0)
    site.step(T0 + timedelta(minutes=1))            # up runs (and keeps running), down waits
    site.step(T0 + timedelta(minutes=2))            # up's next slot is skipped: still running
    assert site.statuses("up") == ["running", "skipped"]
    down = site.runs("down")
    assert [r.status for r in down] == [S.WAITING, S.SKIPPED]
    assert "upstream up" in down[1].reason and "skipped" in down[1].reason
    assert S.BLOCKED not in {e.new_status for e in site.history.events()}
    site.finish("up", T0 + timedelta(minutes=2, seconds=5))
    site.step(T0 + timedelta(minutes=2, seconds=5))  # the first wave goes on as usual
    assert site.statuses("down") == ["running", "skipped"]


def test_run_on_a_paused_job_with_upstreams_runs_it(site):
    site.add(job("up"), job("down", depends_on=("up",), enabled=False))
    site.start(T0)
    requests = Requests(site.engine)
    assert str(requests.do_run({"jobs": ["up"]}, T0)).startswith("runs ")
    site.step(T0)
    site.finish("up", T0 + timedelta(seconds=1))    # up succeeded; paused down was skipped in that wave
    assert site.statuses("down") == ["skipped"]
    requests.do_run({"jobs": ["down"]}, T0 + timedelta(seconds=2))
    site.step(T0 + timedelta(seconds=2))
    assert site.statuses("down") == ["skipped", "running"]


def _run_alone(site, job_id: str, now: datetime) -> None:
    """A manual run of `job_id` only: a wave its upstreams are not members of."""
    Requests(site.engine).do_run({"jobs": [job_id]}, now)
    site.step(now)


def _own_runs(site, job_id: str) -> list:
    """The runs of `job_id`'s own (manual) waves; paused, it is skipped in its upstreams' waves."""
    return [r for r in site.runs(job_id) if r.trigger is Trigger.MANUAL]


@pytest.mark.parametrize("active", ["running", "queued"])
def test_an_active_upstream_outside_the_wave_is_pending_then_its_result_decides(site, active):
    """README: an upstream outside the wave counts as pending while it is queued or runs (not
    by its earlier success), and once it ended its latest result decides."""
    site.add(job("up"), job("down", depends_on=("up",), enabled=False))
    site.start(T0)
    _run_alone(site, "up", T0)
    site.finish("up", T0 + timedelta(seconds=1))             # up has succeeded before
    if active == "queued":
        site.pool.max_workers = 0                            # no free worker: up stays queued
    _run_alone(site, "up", T0 + timedelta(seconds=2))
    _run_alone(site, "down", T0 + timedelta(seconds=3))      # its wave: down only
    assert site.statuses("up")[-1] == active and [r.status for r in _own_runs(site, "down")] == [S.WAITING]
    site.pool.max_workers = 10
    site.step(T0 + timedelta(seconds=4))
    assert site.statuses("up")[-1] == "running" and [r.status for r in _own_runs(site, "down")] == [S.WAITING]
    site.finish("up", T0 + timedelta(seconds=5), exit_code=4)
    site.step(T0 + timedelta(seconds=5))
    (down,) = _own_runs(site, "down")
    assert down.status is S.BLOCKED and "blocked by up run" in down.reason and "exit 4" in down.reason


def test_an_idle_upstream_outside_the_wave_is_judged_by_its_latest_final_run(site):
    site.add(job("up"), job("down", depends_on=("up",), enabled=False))
    site.start(T0)
    _run_alone(site, "down", T0)
    assert [(r.status, r.reason) for r in _own_runs(site, "down")] == [
        (S.BLOCKED, "blocked: upstream up has never succeeded")]
    _run_alone(site, "up", T0 + timedelta(seconds=1))
    site.finish("up", T0 + timedelta(seconds=2))
    _run_alone(site, "down", T0 + timedelta(seconds=3))
    assert [r.status for r in _own_runs(site, "down")] == [S.BLOCKED, S.RUNNING]


# --- catch-up: slots that fell while no daemon ran ---------------------------------------

def _after_outage(site, catch_up: CatchUp, down_for: int = 7):
    """A per-second job whose slots T0+1s .. T0+`down_for`s fell while no daemon ran."""
    site.add(job("tick", "* * * * * *", catch_up=catch_up))
    started = T0 + timedelta(seconds=down_for)
    site.start(started)
    site.step(started)
    return site.runs("tick")


def test_catch_up_none_runs_no_slot_of_a_short_outage(site):
    runs = _after_outage(site, CatchUp.NONE)
    assert [(r.status, r.trigger) for r in runs] == [(S.MISSED, Trigger.SCHEDULE), (S.RUNNING, Trigger.SCHEDULE)]
    assert runs[0].missed_count == 6 and runs[1].scheduled_for == to_iso(T0 + timedelta(seconds=7))


def test_catch_up_all_runs_every_slot_of_a_short_outage_without_skipping_any(site):
    runs = _after_outage(site, CatchUp.ALL)
    assert [r.trigger for r in runs] == [Trigger.CATCH_UP] * 6 + [Trigger.SCHEDULE]
    assert S.SKIPPED not in {r.status for r in runs} and S.MISSED not in {r.status for r in runs}


def test_catch_up_all_under_overlap_skip_runs_every_missed_slot_one_after_the_other(site):
    """overlap=skip does not apply between the catch-up runs of one outage (waves.open's
    `planned`): each missed slot runs, after the one before it, and none is skipped."""
    site.add(job("tick", "* * * * * *", catch_up=CatchUp.ALL, overlap=Overlap.SKIP))
    started = T0 + timedelta(seconds=4)
    site.start(started)
    site.step(started)
    now = started
    for _ in range(4):  # T0+1s .. T0+3s caught up, then the on-time T0+4s
        assert [r.status for r in site.runs("tick")].count(S.RUNNING) == 1
        site.finish("tick", now)
        site.engine.advance_waves(now)
        site.engine.start_queued(now)
    runs = site.runs("tick")
    assert [(r.scheduled_for, r.status) for r in runs] == [
        (to_iso(T0 + timedelta(seconds=n)), S.SUCCEEDED) for n in (1, 2, 3, 4)]
    assert [r.trigger for r in runs] == [Trigger.CATCH_UP] * 3 + [Trigger.SCHEDULE]


def test_catch_up_latest_runs_one_slot_of_a_short_outage_and_records_the_rest_once(site):
    """The newest missed slot runs; the on-time slot after it waits for it (overlap=skip does
    not apply against a catch-up run of the same plan)."""
    runs = _after_outage(site, CatchUp.LATEST)
    assert [(r.status, r.trigger) for r in runs] == [
        (S.MISSED, Trigger.SCHEDULE), (S.RUNNING, Trigger.CATCH_UP), (S.QUEUED, Trigger.SCHEDULE)]
    assert runs[0].missed_count == 5
    assert runs[1].scheduled_for == to_iso(T0 + timedelta(seconds=6))


def test_a_running_daemon_still_tolerates_lateness_up_to_a_minute(site):
    site.add(job("tick", "* * * * *", catch_up=CatchUp.NONE))
    site.start(T0)
    site.step(T0 + timedelta(minutes=1, seconds=30))  # 30 s late (a stall), not an outage
    assert [(r.status, r.trigger) for r in site.runs("tick")] == [(S.RUNNING, Trigger.SCHEDULE)]


# --- retries and dependencies survive a failed state.db write ---------------------------

def test_a_result_recorded_after_a_failed_write_keeps_its_retry_and_releases_downstream(site):
    site.add(job("r", retries=1, retry_delay=5.0), job("ok"), job("after", depends_on=("ok",)))
    site.start(T0)
    requests = Requests(site.engine)
    requests.do_run({"jobs": ["r", "ok"]}, T0)
    site.step(T0)
    now = T0 + timedelta(seconds=3)
    site.engine.forget()  # what the loop does after state.db refused a write
    site.engine.record_all([site.pool.finish(r, now, 1 if s.job_id == "r" else 0)
                            for r, s in list(site.pool.specs.items())], now)
    retry = site.runs("r")[-1]
    assert (retry.status, retry.trigger, retry.attempt) == (S.QUEUED, Trigger.RETRY, 2)
    site.step(now)
    assert site.statuses("after") == ["running"]


def test_each_retry_waits_the_retry_delay_doubled_per_attempt(site):
    """--retries 3 --retry-delay 10s: attempts 2, 3, 4 are held until 10 s, 20 s, 40 s after the
    failure before them (planner.retry_delay of the failed attempt), and start then."""
    site.add(job("r", retries=3, retry_delay=10.0))
    site.start(T0)
    _run_alone(site, "r", T0)
    now = T0
    for attempt, delay in ((2, 10), (3, 20), (4, 40)):
        now += timedelta(seconds=1)
        site.finish("r", now, exit_code=1)
        retry = site.runs("r")[-1]
        due = now + timedelta(seconds=delay)
        assert (retry.trigger, retry.attempt, retry.not_before) == (Trigger.RETRY, attempt, to_iso(due))
        site.step(due - timedelta(milliseconds=1))
        assert site.runs("r")[-1].status is S.QUEUED
        now = due
        site.step(now)
        assert site.runs("r")[-1].status is S.RUNNING
    site.finish("r", now + timedelta(seconds=1), exit_code=1)
    assert site.statuses("r") == ["failed"] * 4  # retries 3: four attempts in all


# --- requests ----------------------------------------------------------------------------

CRASH_IN_REQUEST = """
import os, signal, sys
from pathlib import Path
from datetime import datetime, timezone
from cron_scheduler.engine import Engine, Requests
from cron_scheduler.history import History
from cron_scheduler.home import Config, Home
from cron_scheduler.pool import LocalPool

home = Home(Path(sys.argv[1]))
history = History.open(home)
engine = Engine(home, Config(), LocalPool(), history)
now = datetime.now(timezone.utc)
engine.reload(now)
history.finish_request = lambda *args: os.kill(os.getpid(), signal.SIGKILL)  # die right there
Requests(engine).handle(now)
"""


def test_a_run_request_runs_its_job_once_across_a_kill_between_effect_and_completion(site, tmp_path):
    site.add(job("a"))
    site.history.add_request("run", {"jobs": ["a"]}, to_iso(T0))
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(CRASH_IN_REQUEST), str(site.home.root)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert site.runs("a") == [] and len(site.history.pending_requests()) == 1
    site.start(T0)
    Requests(site.engine).handle(T0)
    assert site.statuses("a") == ["queued"] and site.history.pending_requests() == []


def test_a_malformed_request_row_is_answered_with_an_error_and_the_others_still_run(site):
    site.add(job("a"))
    site.history.conn.execute("INSERT INTO requests (kind, args, created_at) VALUES ('run', 'not json', ?)",
                              (to_iso(T0),))
    bad = site.history.pending_requests()[0].id
    site.history.add_request("run", {"jobs": ["a"]}, to_iso(T0))
    site.start(T0)
    Requests(site.engine).handle(T0)
    assert site.history.request_result(bad).startswith("error: malformed request")
    assert site.statuses("a") == ["queued"]


# --- a slot runs at most once ------------------------------------------------------------

def test_a_slot_already_claimed_is_never_run_again_even_with_a_rewound_cursor(site):
    """The unique (job, slot, attempt) index is the last line of defence: a cursor that lags
    behind the claims (a lost write, a hand-edited state.db) must not run a slot twice."""
    site.add(job("a", "* * * * *"))
    site.start(T0)
    slot = T0 + timedelta(minutes=1)
    site.step(slot)
    site.finish("a", slot + timedelta(seconds=1))
    fp = site.history.job_states()["a"][0]
    site.history.set_job_state("a", fp, to_iso(slot))   # rewound to the slot just run
    site.start(slot + timedelta(seconds=2), started=T0)  # a new daemon reads the old cursor
    site.step(slot + timedelta(seconds=2))
    assert [r.scheduled_for for r in site.runs("a")] == [to_iso(slot)]


# --- unreadable rows in state.db ---------------------------------------------------------

BAD_ROWS = [
    # (status, trigger, job_id, scheduled_for, started_at, pid)
    ("running", "schedule", "a", to_iso(T0), "not a time", 1234),        # recovery parsed it: crash
    ("queued", "bogus", "a", to_iso(T0), None, None),                    # unknown trigger
    ("waiting", "manual", "../../x", to_iso(T0), None, None),            # an id that is a path
    ("running", "manual", "a", "0001-01-01T00:30:00+05:00", to_iso(T0), 1),  # before year 1 in UTC
    ("running", "manual", "a", to_iso(T0), to_iso(T0), "pid 12"),       # a pid that is text
    ("nonsense", "manual", "a", to_iso(T0), None, None),                 # unknown status
]


def test_unreadable_run_rows_are_isolated_and_never_stop_the_daemon(site, caplog):
    from cron_scheduler.control import history_view
    from cron_scheduler.engine import recover
    site.add(job("a"))
    for row in BAD_ROWS:
        site.history.conn.execute("INSERT INTO runs (status, trigger, job_id, scheduled_for, started_at, pid) "
                                  "VALUES (?, ?, ?, ?, ?, ?)", row)
    site.history.repairs = True
    engine = site.start(T0)
    recover(engine, T0)
    Requests(engine).do_run({"jobs": ["a"]}, T0)
    site.step(T0)
    site.step(T0)
    assert "a" in {spec.job_id for spec in site.pool.specs.values()}  # the good run started
    raw = site.history.conn.execute("SELECT status FROM runs ORDER BY run_id").fetchall()
    assert [r[0] for r in raw[:len(BAD_ROWS)]] == ["interrupted"] * 5 + ["nonsense"]  # active ones closed
    assert not site.history.has_active() or {r.job_id for r in site.history.with_status(*S)} == {"a"}
    assert caplog.text.count("in state.db is unreadable") == 5  # once each; the 6th is never read
    rows = history_view(site.home, None, 100, None)  # the CLI's history lists the readable runs
    assert [r["job_id"] for r in rows] == ["a"]


def test_a_run_is_spawned_only_after_its_claim_was_fsynced(site):
    """Write-ahead under the daemon's sync mode (plain commits not fsynced): by the time the pool
    spawns a run, its claim (marker) was committed by a FULL commit, fresh or prepared ahead."""
    site.history.sync_on_claims()
    statements: list[str] = []
    site.history.conn.set_trace_callback(statements.append)
    seen: dict[int, list[str]] = {}
    submit = site.pool.submit

    def spy(spec):
        seen[spec.run_id] = list(statements)
        return submit(spec)
    site.pool.submit = spy
    site.add(job("now"), job("every", "* * * * * *"))
    engine = site.start(T0)
    engine.open_wave(["now"], Trigger.MANUAL, T0, T0)
    site.step(T0)  # "now": claimed at its start
    site.step(T0 + timedelta(milliseconds=800))  # the T0 + 1 s slot of "every": claimed ahead
    assert len(seen) == 1 and site.engine.launcher.prepared
    site.step(T0 + timedelta(seconds=1))  # and spawned at its instant
    assert len(seen) == 2
    for run_id, before in seen.items():
        claim = max(i for i, s in enumerate(before) if s.startswith("UPDATE runs SET marker")
                    and s.endswith(f"WHERE run_id = {run_id}"))
        assert _fsynced_after(before, claim), f"run {run_id} spawned before its claim was fsynced"


def _fsynced_after(statements: list[str], index: int) -> bool:
    """Whether a commit made with synchronous=FULL follows statements[index] (a COMMIT, or an
    autocommit write outside a transaction: either fsyncs the WAL with everything before it)."""
    full = in_transaction = False
    for i, sql in enumerate(statements):
        if sql.startswith("PRAGMA synchronous="):
            full = sql.endswith("FULL")
        elif sql.startswith("BEGIN"):
            in_transaction = True
        elif sql == "COMMIT":
            in_transaction = False
            if full and i > index:
                return True
        elif full and not in_transaction and i > index and sql.startswith("PRAGMA user_version ="):
            return True
    return False


@pytest.mark.parametrize("prepared", [True, False], ids=["prepared-ahead", "claimed-at-start"])
def test_a_run_spawned_while_state_db_refuses_its_running_record_is_started_once_and_recorded_legally(
        site, prepared):
    """The spawn happened, then the commit of `running` was refused (another process held
    the lock): the run stays supervised, is never spawned again, and its result is recorded
    once the lock is released (queued -> running -> succeeded), not refused as queued -> failed."""
    site.add(job("every", "* * * * * *"))
    engine = site.start(T0)
    if prepared:
        site.step(T0 + timedelta(milliseconds=800))  # the T0 + 1 s slot: claimed ahead
        assert engine.launcher.prepared
    submitted = []
    submit = site.pool.submit
    site.pool.submit = lambda spec: submitted.append(spec.run_id) or submit(spec)
    real = site.history.transition
    refused = []

    def locked(run_id, status, *args, **kw):
        if status is S.RUNNING and not refused:
            refused.append(run_id)
            raise StateWriteError("cannot write state.db: locked by another process")
        return real(run_id, status, *args, **kw)
    site.history.transition = locked
    at = T0 + timedelta(seconds=1)
    with pytest.raises(StateWriteError):
        site.step(at)
    engine.forget()  # what the loop does after a refused write
    assert refused and list(site.pool.specs) == refused
    assert site.history.get_run(refused[0]).status is S.QUEUED
    # the lock is released: the next pass records it running and does not start it again
    site.step(at + timedelta(milliseconds=100))
    assert submitted == refused
    assert site.history.get_run(refused[0]).status is S.RUNNING
    site.finish("every", at + timedelta(milliseconds=500))
    first = site.runs("every")[0]
    assert (first.run_id, first.status) == (refused[0], S.SUCCEEDED)
    assert [(e.old_status, e.new_status) for e in site.history.events() if e.run_id == first.run_id][-2:] == [
        (S.QUEUED, S.RUNNING), (S.RUNNING, S.SUCCEEDED)]


def test_a_result_of_a_run_whose_running_record_was_refused_is_recorded_after_it(site):
    """The run ends before state.db accepts writes again: its `running` is recorded first, in
    the recording pass, so the result is legal."""
    site.add(job("now"))
    engine = site.start(T0)
    engine.open_wave(["now"], Trigger.MANUAL, T0, T0)
    real = site.history.transition
    site.history.transition = lambda run_id, status, *a, **kw: (
        _raise(StateWriteError("locked")) if status is S.RUNNING else real(run_id, status, *a, **kw))
    with pytest.raises(StateWriteError):
        site.step(T0)
    engine.forget()
    site.history.transition = real
    site.finish("now", T0 + timedelta(seconds=1), exit_code=1)
    assert site.statuses("now") == ["failed"]
    assert len(site.runs("now")) == 1


def _raise(exc):
    raise exc


# --- files of ended runs -----------------------------------------------------------------

def test_the_start_up_sweep_removes_what_ended_runs_left_and_nothing_else(site, tmp_path):
    """A crash leaves FIFOs of ended runs and logs of pruned ones; the sweep removes those
    and keeps active runs' FIFOs, recorded runs' logs, files newer than state.db's last run,
    other files, and a planted link's target."""
    from cron_scheduler.engine import sweep
    site.add(job("a"), job("b"))
    engine = site.start(T0)
    engine.open_wave(["a"], Trigger.MANUAL, T0, T0)
    site.step(T0)
    site.finish("a", T0 + timedelta(seconds=1))
    engine.open_wave(["b"], Trigger.MANUAL, T0, T0)
    site.step(T0)  # b: running
    done, live = site.runs("a")[0].run_id, site.runs("b")[0].run_id
    runs = site.home.runs
    outside = tmp_path / "outside.pipe"
    outside.write_text("keep me")
    planted = {
        runs / "a" / f"{done}.pipe": False, runs / "a" / f"{done}.log": True,
        runs / "a" / f"{done + 100}.pipe": True,  # newer than the last run: not ours to judge
        runs / "b" / f"{live}.pipe": True, runs / "b" / f"{live}.log": True,
        runs / "gone" / "1.log": False, runs / "gone" / "notes.txt": True,
    }
    for path in planted:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("")
    link = runs / "gone" / f"{done}.pipe"
    link.symlink_to(outside)
    sweep(engine)
    assert {p: p.exists() for p in planted} == planted
    assert not link.is_symlink() and outside.read_text() == "keep me"


def test_retention_removes_a_pruned_runs_log_and_fifo_only_once_its_rows_are_gone(site):
    site.add(job("a"))
    engine = site.start(T0)
    engine.configure(Config(retention_runs=1))
    for i in range(2):
        engine.open_wave(["a"], Trigger.MANUAL, T0, T0)
        site.step(T0)
        if i == 0:
            first = site.runs("a")[0]
            log, fifo = Path(first.output_path), Path(first.output_path).with_suffix(".pipe")
            log.parent.mkdir(parents=True, exist_ok=True)
            log.write_text("out")
            fifo.write_text("")
            site.finish("a", T0 + timedelta(seconds=1))
            assert log.exists()
            continue
        # the commit that prunes the first run is refused: its files stay with its row
        conn = site.history.conn
        site.history.conn = _RefusedCommit(conn)
        result = site.pool.finish(next(iter(site.pool.specs)), T0 + timedelta(seconds=2))
        with pytest.raises(StateWriteError):
            engine.record_all([result], T0 + timedelta(seconds=2))
        site.history.conn = conn
        assert log.exists() and site.history.get_run(first.run_id)
        engine.record_all([result], T0 + timedelta(seconds=2))
    assert [r.run_id for r in site.runs("a")] != [first.run_id]
    assert not log.exists() and not fifo.exists()


class _RefusedCommit:
    """A connection whose COMMIT fails as on a full disk (sqlite3.Connection takes no patches)."""

    def __init__(self, conn):
        self._conn = conn

    def __getattr__(self, name):
        return getattr(self._conn, name)

    def execute(self, sql, *args):
        if sql == "COMMIT":
            raise sqlite3.OperationalError("disk I/O error")
        return self._conn.execute(sql, *args)


def test_runs_prepared_for_a_slot_without_a_free_worker_survive_a_crash_and_run(site):
    """max_workers 1, three jobs due at one slot: the two that wait for the worker wait as plain
    queued runs (no claim), so after a kill -9 recovery does not take them for runs that may
    have started: they run (issue: they were recorded `interrupted` and never ran)."""
    from cron_scheduler.engine import recover
    site.pool.max_workers = 1
    site.add(job("a", "* * * * *"), job("b", "* * * * *"), job("c", "* * * * *"))
    site.start(T0 + timedelta(seconds=30))
    slot = T0 + timedelta(minutes=1)
    site.step(slot - timedelta(milliseconds=200))  # all three prepared ahead
    assert len(site.engine.launcher.prepared) == 3
    site.step(slot)
    started = [s.job_id for s in site.pool.specs.values()]
    assert len(started) == 1
    waiting = [r for r in site.runs() if r.status is S.QUEUED]
    assert len(waiting) == 2 and all(r.marker is None for r in waiting)
    # kill -9 here: a new daemon recovers (the running run's process is gone: interrupted)
    engine = Engine(site.home, Config(), ManualPool(max_workers=1), site.history, started=slot)
    site.pool, site.engine = engine.pool, engine
    engine.reload(slot + timedelta(seconds=2), force=True)
    recover(engine, slot + timedelta(seconds=2))
    assert sorted(r.status.value for r in site.runs()) == ["interrupted", "queued", "queued"]
    site.step(slot + timedelta(seconds=2))
    waiting_job = next(iter(site.pool.specs.values())).job_id
    assert waiting_job != started[0] and site.statuses(waiting_job) == ["running"]


def test_jobs_due_at_one_slot_share_a_wave_only_where_their_waves_meet(site):
    """Roots of one DAG due together are one DAG run (one wave, each job once); unrelated jobs
    due at the same slot keep waves of their own."""
    site.add(job("x", "* * * * *"), job("y", "* * * * *"), job("join", depends_on=("x", "y")),
             job("z", "* * * * *", depends_on=("x",)), job("lone", "* * * * *"))
    site.start(T0 + timedelta(seconds=30))
    site.step(T0 + timedelta(minutes=1))
    runs = site.runs()
    assert sorted(r.job_id for r in runs) == ["join", "lone", "x", "y", "z"]
    waves = {r.job_id: r.wave for r in runs}
    assert waves["x"] == waves["y"] == waves["join"] == waves["z"] != waves["lone"]
