"""Time faults: clock steps through the planner and the engine (injected `now`), DST nights
(exactly one fire per local day for fixed-time jobs, DESIGN.md section 4), and a home that
cannot be written (read-only or disk full).
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from collections import Counter
from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from cron_scheduler import planner, schedule
from cron_scheduler.cli import main as cli_main
from cron_scheduler.engine import Engine
from cron_scheduler.executors.base import Handle
from cron_scheduler.errors import CronSchedulerError, OperationalError
from cron_scheduler.history import History
from cron_scheduler.home import Config, Home
from cron_scheduler.jobs import JobService
from cron_scheduler.models import UTC, CatchUp, Job, Trigger, parse_iso, to_iso
from cron_scheduler.pool import Pool
from cron_scheduler.runner import RunResult, RunSpec
from cron_scheduler.store import Store

from harness import make_home

T0 = datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC)
FAKE_PID = 2 ** 22 + 4242  # above any pid_max: no process has it


def _job(job_id: str, expr: str, created: datetime, **kw) -> Job:
    return Job(id=job_id, schedule=expr, command=("/bin/true",), created_at=to_iso(created), **kw)


# --- clock steps through the planner ------------------------------------------------------

def _drive_planner(job: Job, nows: list[datetime]) -> tuple[list[list[tuple[datetime, Trigger]]], list, list]:
    """What a daemon would do at each `now`: the runs planned per tick, missed ranges, cursors."""
    cursor = planner.first_cursor(job, UTC, nows[0], first_sight=False)
    per_tick, missed, cursors = [], [], []
    for now in nows:
        runs: list[tuple[datetime, Trigger]] = []
        if cursor is not None and cursor <= now:
            plan = planner.plan_slots(job, UTC, cursor, now)
            assert plan.cursor is None or plan.cursor > cursor, "the cursor only moves forward"
            runs, cursor = plan.runs, plan.cursor
            missed.extend(plan.missed)
        per_tick.append(runs)
        cursors.append(cursor)
    return per_tick, missed, cursors


def _steps(start: datetime, minutes: float, step: float = 15.0) -> list[datetime]:
    return [start + timedelta(seconds=step * i) for i in range(int(minutes * 60 / step) + 1)]


@pytest.mark.parametrize("catch_up", list(CatchUp))
def test_clock_stepped_forward_then_back_through_the_planner(catch_up):
    job = _job("minutely", "* * * * *", T0 - timedelta(seconds=30), catch_up=catch_up)
    phase_a = _steps(T0, 5)                                     # 12:00 .. 12:05
    phase_b = _steps(T0 + timedelta(hours=1, minutes=5), 5)     # clock +1 h: 13:05 .. 13:10
    phase_c = _steps(T0 + timedelta(minutes=10), 70)            # clock -1 h: 12:10 .. 13:20
    per_tick, missed, _ = _drive_planner(job, phase_a + phase_b + phase_c)
    a, b, c = (per_tick[:len(phase_a)], per_tick[len(phase_a):len(phase_a) + len(phase_b)],
               per_tick[len(phase_a) + len(phase_b):])
    slots = [s for tick in per_tick for s, _ in tick]

    # before the jump: one run per minute
    assert [s for t in a for s, _ in t] == [T0 + timedelta(minutes=m) for m in range(1, 6)]
    # the forward jump: no burst; the missed hour follows catch_up
    jump = b[0]
    on_time = [s for s, t in jump if t is Trigger.SCHEDULE]
    catch = [s for s, t in jump if t is Trigger.CATCH_UP]
    late = [T0 + timedelta(minutes=m) for m in range(6, 64)]  # 12:06 .. 13:03: seen > 60 s late
    # 13:04 and 13:05 are at most 60 s old: still on time
    assert on_time == [T0 + timedelta(hours=1, minutes=4), T0 + timedelta(hours=1, minutes=5)]
    missed_count = sum(n for _, _, n in missed)
    if catch_up is CatchUp.LATEST:
        assert catch == [late[-1]] and missed_count == len(late) - 1
        assert missed == [(late[0], late[-2], len(late) - 1)]
    elif catch_up is CatchUp.ALL:
        assert catch == late and missed_count == 0  # 58 < MAX_CATCH_UP: every one runs, in order
    else:
        assert catch == [] and missed == [(late[0], late[-1], len(late))]
    # after the jump, one run per minute again
    assert all(len(t) <= 1 for t in b[1:])
    # the backward step: nothing until the clock passes the cursor again; no slot repeats
    back_runs = [s for t in c for s, _ in t]
    assert back_runs == [T0 + timedelta(hours=1, minutes=m) for m in range(11, 21)]
    first_back = next(i for i, t in enumerate(c) if t)
    assert phase_c[first_back] >= T0 + timedelta(hours=1, minutes=11)
    assert len(slots) == len(set(slots)) and slots == sorted(slots)


def test_huge_clock_jump_is_bounded():
    """A clock stepped years ahead (a dead RTC battery fixed by NTP): a bounded plan, quickly."""
    job = _job("secondly", "* * * * * *", T0 - timedelta(seconds=1), catch_up=CatchUp.ALL)
    cursor = planner.first_cursor(job, UTC, T0, first_sight=False)
    plan = planner.plan_slots(job, UTC, cursor, T0 + timedelta(days=3 * 365))
    assert len(plan.runs) <= planner.MAX_CATCH_UP + 61
    assert plan.cursor > T0 + timedelta(days=3 * 365)
    assert sum(n for *_, n in plan.missed) >= 1


# --- DST: exactly one fire per local day ---------------------------------------------------

ZONES = ["America/New_York", "Europe/Berlin"]
FIXED = ["30 1 * * *", "30 2 * * *"]
TRANSITIONS = {  # local dates: (spring forward, fall back)
    ("America/New_York", 2026): (date(2026, 3, 8), date(2026, 11, 1)),
    ("America/New_York", 2027): (date(2027, 3, 14), date(2027, 11, 7)),
    ("Europe/Berlin", 2026): (date(2026, 3, 29), date(2026, 10, 25)),
    ("Europe/Berlin", 2027): (date(2027, 3, 28), date(2027, 10, 31)),
}


@pytest.mark.parametrize("zone", ZONES)
@pytest.mark.parametrize("expr", FIXED)
def test_fixed_time_job_fires_once_per_local_day_through_2026_and_2027(zone, expr):
    tz = ZoneInfo(zone)
    sched = schedule.parse(expr)
    start = datetime(2026, 1, 1, tzinfo=tz)
    fires = schedule.next_fires(sched, start.astimezone(UTC), 800, tz)
    fires = [f for f in fires if f.astimezone(tz).year in (2026, 2027)]
    per_day = Counter(f.astimezone(tz).date() for f in fires)
    days = [date(2026, 1, 1) + timedelta(days=i) for i in range((date(2028, 1, 1) - date(2026, 1, 1)).days)]
    wrong = {d: per_day.get(d, 0) for d in days if per_day.get(d, 0) != 1}
    assert not wrong, f"days without exactly one fire: {wrong}"
    assert fires == sorted(fires) and all(f.tzinfo is not None and f.utcoffset() == timedelta(0) for f in fires)
    hour = int(expr.split()[1])
    for year in (2026, 2027):
        spring, fall = TRANSITIONS[(zone, year)]
        fire = next(f.astimezone(tz) for f in fires if f.astimezone(tz).date() == spring)
        # a skipped wall time runs at the first instant after the jump (03:00)
        skipped = _is_skipped(datetime.combine(spring, time(hour, 30)), tz)
        assert fire.time() == (time(3, 0) if skipped else time(hour, 30)), fire
        fire = next(f.astimezone(tz) for f in fires if f.astimezone(tz).date() == fall)
        # a repeated wall time runs once, at its first occurrence (the summer offset)
        assert fire.time() == time(hour, 30) and fire.fold == 0, fire
        if _is_repeated(datetime.combine(fall, time(hour, 30)), tz):
            assert fire.utcoffset() == datetime.combine(fall, time(0, 0), tz).utcoffset(), fire


def _is_skipped(wall: datetime, tz) -> bool:
    return wall.replace(tzinfo=tz).astimezone(UTC).astimezone(tz).replace(tzinfo=None) != wall


def _is_repeated(wall: datetime, tz) -> bool:
    return wall.replace(tzinfo=tz, fold=0).utcoffset() != wall.replace(tzinfo=tz, fold=1).utcoffset() \
        and not _is_skipped(wall, tz)


@pytest.mark.parametrize("zone", ZONES)
def test_wildcard_hour_job_follows_elapsed_time_on_dst_days(zone):
    tz = ZoneInfo(zone)
    sched = schedule.parse("*/30 * * * *")
    for year in (2026, 2027):
        spring, fall = TRANSITIONS[(zone, year)]
        for day, expected in ((spring - timedelta(days=1), 48), (spring, 46), (fall, 50)):
            start = datetime.combine(day, time(0, 0), tz)
            fires = schedule.next_fires(sched, start.astimezone(UTC) - timedelta(seconds=1), 60, tz)
            n = sum(1 for f in fires if f.astimezone(tz).date() == day)
            assert n == expected, (day, n)
            assert len(set(fires)) == len(fires)


# --- the engine, in-process, with an injected clock and a stub pool ----------------------

class StubPool(Pool):
    """Runs "finish" successfully at the next wait(): no processes."""

    def __init__(self, clock):
        self.max_workers = 100
        self.clock = clock          # a callable returning the injected `now`
        self.specs: list[RunSpec] = []
        self.pending: list[RunSpec] = []

    def free_slots(self) -> int:
        return self.max_workers - len(self.pending)

    def submit(self, spec: RunSpec) -> int | None:
        self.specs.append(spec)
        self.pending.append(spec)
        return Handle.of({}, FAKE_PID)

    def cancel(self, run_id: int, reason: str) -> None:
        pass

    def running(self) -> dict[int, int]:
        return {s.run_id: FAKE_PID for s in self.pending}

    def wait(self, timeout):
        ts = self.clock().timestamp()
        done, self.pending = self.pending, []
        return [RunResult(run_id=s.run_id, pid=FAKE_PID, started_at=ts, finished_at=ts, exit_code=0)
                for s in done]

    def results(self):
        return self.wait(0)

    def shutdown(self, grace: float):
        return self.wait(0)


class Driver:
    """An Engine on a real History in a temp home, ticked with an injected `now`."""

    def __init__(self, root: Path, jobs: list[Job], timezone: str = "UTC"):
        self.home = Home(root)
        self.home.ensure()
        with Store(self.home).transaction() as store:
            for job in jobs:
                store[job.id] = job
        self.now = None
        self.history = History.open(self.home)
        self.config = Config(timezone=timezone)
        self.restart()

    def restart(self) -> None:
        """A new engine on the same state.db (a daemon restart)."""
        self.pool = StubPool(lambda: self.now)
        self.engine = Engine(self.home, self.config, self.pool, self.history)

    def tick(self, now: datetime) -> None:
        self.now = now
        engine = self.engine
        engine.reload(now)
        engine.fire_due(now)
        engine.advance_waves(now)
        engine.start_queued(now)
        for result in self.pool.wait(0):
            engine.record(result, now)

    def runs(self):
        return list(reversed(self.history.runs(limit=None)))

    def close(self) -> None:
        self.history.close()


def _dst_window(day: date) -> tuple[date, date]:
    return day - timedelta(days=1), day + timedelta(days=1)


@pytest.mark.slow
@pytest.mark.parametrize("zone,transition", [
    ("America/New_York", date(2026, 3, 8)), ("America/New_York", date(2026, 11, 1)),
    ("Europe/Berlin", date(2026, 3, 29)), ("Europe/Berlin", date(2026, 10, 25)),
])
def test_engine_through_a_dst_night_runs_each_fixed_job_once_per_local_day(tmp_path, zone, transition):
    tz = ZoneInfo(zone)
    first_day, last_day = _dst_window(transition)
    start = datetime.combine(first_day, time(0, 0), tz).astimezone(UTC)
    end = datetime.combine(last_day + timedelta(days=1), time(0, 0), tz).astimezone(UTC)
    created = start - timedelta(minutes=1)
    jobs = [_job("at0130", "30 1 * * *", created, timezone=zone),
            _job("at0230", "30 2 * * *", created, timezone=zone),
            # the daemon's zone for a job without --tz
            _job("default-zone", "30 2 * * *", created)]
    driver = Driver(tmp_path / "home", jobs, timezone=zone)
    try:
        now = start
        while now < end:
            driver.tick(now)
            now += timedelta(minutes=1)
        runs = driver.runs()
    finally:
        driver.close()
    bad = [r for r in runs if r.status != "succeeded" or r.trigger != "schedule"]
    assert not bad, [(r.job_id, r.status, r.trigger, r.scheduled_for, r.reason) for r in bad]
    days = [first_day + timedelta(days=i) for i in range(3)]
    for job in jobs:
        mine = [r for r in runs if r.job_id == job.id]
        per_day = Counter(parse_iso(r.scheduled_for).astimezone(tz).date() for r in mine)
        assert {d: per_day.get(d, 0) for d in days} == {d: 1 for d in days}, (job.id, per_day)
        assert len({r.slot for r in mine}) == len(mine)
        night = next(parse_iso(r.scheduled_for).astimezone(tz) for r in mine
                     if parse_iso(r.scheduled_for).astimezone(tz).date() == transition)
        hour = int(job.schedule.split()[1])
        if _is_skipped(datetime.combine(transition, time(hour, 30)), tz):
            assert night.time() == time(3, 0), (job.id, night)
        else:
            assert night.time() == time(hour, 30) and night.fold == 0, (job.id, night)
        # each run started at its slot (the clock was ticked every minute)
        for r in mine:
            assert 0 <= (parse_iso(r.started_at) - parse_iso(r.scheduled_for)).total_seconds() < 60


def test_engine_clock_steps_and_restart_never_repeat_a_slot(tmp_path):
    job = _job("minutely", "* * * * *", T0 - timedelta(seconds=30), timezone="UTC")
    driver = Driver(tmp_path / "home", [job])
    try:
        for now in _steps(T0, 5):
            driver.tick(now)
        # 12:00 .. 12:05: the job was created at 11:59:30
        assert [r.slot for r in driver.runs()] == [to_iso(T0 + timedelta(minutes=m)) for m in range(6)]
        jump = T0 + timedelta(hours=1, minutes=5)
        driver.tick(jump)                                   # clock stepped +1 h
        started = [r for r in driver.runs()[6:] if r.started_at]
        assert len(started) <= 2, f"a burst after the jump: {[(r.trigger, r.slot) for r in started]}"
        for now in _steps(jump, 5)[1:]:
            driver.tick(now)
        after_jump = driver.runs()[6:]
        missed = [r for r in after_jump if r.status == "missed"]
        assert len(missed) == 1 and missed[0].missed_count == 57  # 12:06 .. 13:02
        assert (missed[0].scheduled_for, missed[0].missed_until) == (
            to_iso(T0 + timedelta(minutes=6)), to_iso(T0 + timedelta(hours=1, minutes=2)))
        outcome = {r.slot: (r.trigger, r.status) for r in after_jump if r.status != "missed"}
        assert outcome[to_iso(jump - timedelta(minutes=2))] == ("catch-up", "succeeded")
        # 13:04 and 13:05 came at once, in time: one runs, the other may be skipped (overlap=skip)
        pair = [outcome[to_iso(jump - timedelta(minutes=m))] for m in (1, 0)]
        assert all(t == "schedule" and st in ("succeeded", "skipped") for t, st in pair), pair
        assert ("schedule", "succeeded") in pair, pair
        assert all(r.status in ("succeeded", "skipped", "missed") for r in driver.runs())
        handled = max(parse_iso(r.slot) for r in driver.runs() if r.slot)
        back = _steps(T0 + timedelta(minutes=10), 70)      # clock stepped -1 h, then runs on
        for i, now in enumerate(back):
            if i == len(back) // 3:
                driver.restart()                           # and the daemon restarts meanwhile
            driver.tick(now)
            for r in driver.runs():
                if r.slot and now < handled:
                    assert parse_iso(r.slot) <= handled, f"slot {r.slot} ran while the clock was behind"
        runs = driver.runs()
    finally:
        driver.close()
    slots = [r.slot for r in runs if r.slot and r.status != "missed"]
    assert len(slots) == len(set(slots)), Counter(slots).most_common(3)
    assert slots == sorted(slots)
    later = [parse_iso(s) for s in slots if parse_iso(s) > handled]
    assert later == [handled + timedelta(minutes=m) for m in range(1, 11)]  # 13:11 .. 13:20


# --- a home that cannot be written ----------------------------------------------------------

def _run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    try:
        cli_main(args)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    out, err = capsys.readouterr()
    return code, out, err


def _store_with_one_job(tmp_path: Path) -> tuple[Path, bytes]:
    home = make_home(tmp_path)
    JobService(Home(home)).add(_job("existing", "@daily", T0))
    return home, (home / "jobs.json").read_bytes()


@pytest.mark.parametrize("fault", [
    "replace-enospc", "fsync-enospc",
    "mkstemp-erofs",
])
def test_store_write_fault_is_a_clean_error_and_keeps_the_old_file(tmp_path, monkeypatch, capsys, fault):
    home, original = _store_with_one_job(tmp_path)

    def raiser(code):
        def fail(*args, **kwargs):
            raise OSError(code, os.strerror(code))
        return fail

    if fault == "replace-enospc":
        monkeypatch.setattr(os, "replace", raiser(errno.ENOSPC))
    elif fault == "fsync-enospc":
        monkeypatch.setattr(os, "fsync", raiser(errno.ENOSPC))
    else:
        import tempfile
        monkeypatch.setattr(tempfile, "mkstemp", raiser(errno.EROFS))
    with pytest.raises(CronSchedulerError) as info:
        JobService(Home(home)).add(_job("new", "@daily", T0))
    assert isinstance(info.value, OperationalError) and info.value.exit_code == 1
    message = str(info.value)
    assert "\n" not in message and str(home / "jobs.json") in message
    assert (home / "jobs.json").read_bytes() == original
    assert list(home.glob(".jobs.*.tmp")) == []

    code, out, err = _run_cli(["--home", str(home), "add", "--no-check", "new2", "@daily", "/bin/true"], capsys)
    assert code == 1, (out, err)
    assert "Traceback" not in err and err.count("\n") == 1 and err.startswith("cron-scheduler: error: ")
    assert (home / "jobs.json").read_bytes() == original


def test_directory_fsync_failure_is_a_clean_error(tmp_path, monkeypatch, capsys):
    home, _ = _store_with_one_job(tmp_path)
    real_fsync = os.fsync

    def fsync(fd):
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    code, out, err = _run_cli(["--home", str(home), "add", "--no-check", "new", "@daily", "/bin/true"], capsys)
    assert code == 1 and "Traceback" not in err and err.startswith("cron-scheduler: error: ")


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_read_only_home_while_the_daemon_runs(faults):
    """chmod 0500 on the home of a running daemon: CLI writes fail cleanly, the store stays
    intact, the daemon keeps running; writable again, everything works."""
    faults.cli("add", "tick", "* * * * * *", "/bin/true")
    daemon = faults.start_daemon()
    original = (faults.home / "jobs.json").read_bytes()
    faults.home.chmod(0o500)
    try:
        if os.access(faults.home, os.W_OK):
            pytest.skip("running as root: a 0500 directory is still writable (see the in-process "
                        "write-fault tests for the same paths)")
        result = faults.cli("add", "other", "@daily", "/bin/true", check=False)
        assert result.returncode == 1, result
        assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1
        assert (faults.home / "jobs.json").read_bytes() == original
        assert daemon.alive()
    finally:
        faults.home.chmod(0o700)
    faults.cli("add", "other", "@daily", "/bin/true")
    faults.wait_runs("tick keeps running", lambda runs: len([r for r in runs if r["status"] == "succeeded"]) >= 2)
    assert daemon.terminate() == 0


def test_job_edited_while_the_clock_is_behind_does_not_rerun_handled_slots(tmp_path):
    """Pause + resume re-anchor the cursor at `now`; with the clock stepped back, `now` is
    before slots that already ran: they must not run again."""
    job = _job("minutely", "* * * * *", T0 - timedelta(seconds=30), timezone="UTC")
    driver = Driver(tmp_path / "home", [job])
    try:
        for now in _steps(T0, 10):
            driver.tick(now)
        handled = {r.slot for r in driver.runs() if r.slot}
        assert len(handled) == 11  # 12:00 .. 12:10
        store = Store(driver.home)
        back = T0 + timedelta(minutes=2)
        for enabled in (False, True):  # pause, then resume, while the clock reads 12:02
            with store.transaction() as jobs:
                jobs["minutely"] = jobs["minutely"].replace(enabled=enabled)
            driver.tick(back)
            back += timedelta(seconds=20)
        for now in _steps(back, 12):
            driver.tick(now)
        runs = driver.runs()
    finally:
        driver.close()
    started = Counter(r.slot for r in runs if r.slot and r.started_at)
    assert all(n == 1 for n in started.values()), started.most_common(3)
    assert max(parse_iso(s) for s in started) >= T0 + timedelta(minutes=13)


def test_a_job_whose_slots_cannot_be_computed_does_not_stop_the_others(tmp_path, monkeypatch, caplog):
    """Isolation: whatever computing one job's next slots raises (here the OverflowError that
    datetime raises near year 9999), the engine logs it, parks that job and fires the others."""
    driver = Driver(tmp_path / "home", [_job("good", "* * * * *", T0 - timedelta(seconds=30)),
                                        _job("bad", "* * * * *", T0 - timedelta(seconds=30))])
    real = planner.plan_slots

    def plan_slots(job, *args, **kwargs):
        if job.id == "bad":
            raise OverflowError("date value out of range")
        return real(job, *args, **kwargs)

    monkeypatch.setattr(planner, "plan_slots", plan_slots)
    try:
        with caplog.at_level(logging.ERROR, logger="cron_scheduler.engine"):
            for now in _steps(T0, 3):
                driver.tick(now)
        assert [r.slot for r in driver.runs() if r.job_id == "good"] == [
            to_iso(T0 + timedelta(minutes=m)) for m in range(4)]
        assert [r for r in driver.runs() if r.job_id == "bad"] == []
        assert "job bad: no next slot, not scheduled until it is changed: OverflowError" in caplog.text
    finally:
        driver.close()


def test_a_new_default_timezone_re_anchors_jobs_without_their_own(tmp_path):
    """config.toml's timezone changed (SIGHUP, or a restart): jobs without --tz get their next
    slot in the new zone at once; a job with its own zone keeps its slot."""
    driver = Driver(tmp_path / "home", [_job("nine", "0 9 * * *", T0 - timedelta(hours=1)),
                                        _job("ny", "0 9 * * *", T0 - timedelta(hours=1),
                                             timezone="America/New_York")], timezone="UTC")
    try:
        driver.tick(T0)
        ny = datetime(2026, 6, 1, 13, 0, tzinfo=UTC)  # 09:00 EDT
        assert driver.engine.cursors == {"nine": datetime(2026, 6, 2, 9, 0, tzinfo=UTC), "ny": ny}
        berlin_nine = datetime(2026, 6, 2, 7, 0, tzinfo=UTC)  # 09:00 CEST
        driver.engine.configure(Config(timezone="Europe/Berlin"))  # what SIGHUP does
        driver.engine.reload(T0, force=True)
        assert driver.engine.cursors == {"nine": berlin_nine, "ny": ny}
        driver.config = Config(timezone="Europe/Berlin")  # a restart reads the saved cursors
        driver.restart()
        driver.tick(T0 + timedelta(seconds=1))
        assert driver.engine.cursors == {"nine": berlin_nine, "ny": ny}
        assert driver.runs() == []
    finally:
        driver.close()


def test_queued_runs_of_a_paused_job_are_skipped_but_a_manual_run_starts(tmp_path):
    """Pausing stops what the schedule (or a retry) queued while no worker was free, as it
    stops waiting runs; `run` is an explicit request and still starts."""
    driver = Driver(tmp_path / "home", [_job("minutely", "* * * * *", T0 - timedelta(seconds=30))])
    try:
        driver.pool.max_workers = 0  # every worker busy: the slot's run waits in the queue
        driver.tick(T0)
        [queued] = driver.runs()
        assert queued.status == "queued"
        JobService(driver.home).set_enabled(["minutely"], False)
        driver.pool.max_workers = 100
        with driver.history.transaction():
            [manual] = driver.engine.open_wave(["minutely"], Trigger.MANUAL, T0, T0)
        driver.tick(T0 + timedelta(seconds=5))
        runs = {r.run_id: r for r in driver.runs()}
        assert (runs[queued.run_id].status, runs[queued.run_id].reason) == ("skipped", "job is paused")
        assert runs[manual].status == "succeeded"
    finally:
        driver.close()
