"""planner.py: pure decisions, driven with explicit `now` values (no daemon, no clock)."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone

import pytest

from cron_scheduler import planner
from cron_scheduler.history import Run
from cron_scheduler.models import MAX_RETRY_DELAY, CatchUp, Job, Overlap, RunStatus, Trigger

UTC = timezone.utc
T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)   # a Monday, on the minute
MIN = timedelta(minutes=1)
SEC = timedelta(seconds=1)


def job(job_id: str = "j", schedule: str = "* * * * *", **kw) -> Job:
    kw.setdefault("created_at", (T0 - timedelta(days=1)).isoformat())
    kw.setdefault("timezone", "UTC")
    return Job(id=job_id, schedule=schedule, command=("/bin/true",), **kw)


_ids = iter(range(1, 1_000_000))


def run(job_id: str = "j", status: str = "succeeded", **kw) -> Run:
    """A Run record with plausible defaults; override any field by keyword."""
    values = dict(run_id=next(_ids), job_id=job_id, slot=None, scheduled_for=T0.isoformat(),
                  trigger="schedule", wave=1, attempt=1, status=status, priority=0, not_before=None,
                  queued_at=T0.isoformat(), started_at=None, finished_at=None, pid=None, pid_start=None,
                  marker=None, exit_code=0 if status == "succeeded" else None, signal=None, reason=None,
                  output_path=None, output_bytes=None, truncated=0, cpu_user=None, cpu_sys=None,
                  max_rss_kb=None, memory_peak_kb=None, missed_count=None, missed_until=None, handle=None)
    assert set(values) == {f.name for f in dataclasses.fields(Run)}
    values.update(kw)
    values["status"], values["trigger"] = RunStatus(values["status"]), Trigger(values["trigger"])
    return Run(**values)


def plan(j: Job, cursor: datetime, now: datetime) -> planner.SlotPlan:
    return planner.plan_slots(j, UTC, cursor, now)


# --- plan_slots: on time, missed, catch-up ------------------------------------------------

def test_nothing_due_before_the_cursor():
    p = plan(job(), T0, T0 - SEC)
    assert p.runs == [] and p.missed == [] and p.cursor == T0


def test_on_time_slot_runs_as_schedule_and_cursor_moves_on():
    p = plan(job(), T0, T0 + 5 * SEC)
    assert p.runs == [(T0, Trigger.SCHEDULE)]
    assert p.missed == [] and p.cursor == T0 + MIN


def test_a_slot_exactly_miss_after_late_is_still_on_time():
    p = plan(job(schedule="*/5 * * * *"), T0, T0 + planner.MISS_AFTER)
    assert p.runs == [(T0, Trigger.SCHEDULE)] and p.missed == []


def test_a_slot_just_over_miss_after_late_is_missed():
    p = plan(job(schedule="*/5 * * * *", catch_up=CatchUp.NONE), T0, T0 + planner.MISS_AFTER + SEC)
    assert p.runs == []
    assert p.missed == [(T0, T0, 1)]
    assert p.cursor == T0 + 5 * MIN


# cursor T0, now T0+5m30s: slots T0..T0+4m are late (5), T0+5m is on time
NOW = T0 + 5 * MIN + 30 * SEC
LATE = [T0 + i * MIN for i in range(5)]


def test_catch_up_latest_runs_the_newest_missed_slot_and_records_the_rest():
    p = plan(job(catch_up=CatchUp.LATEST), T0, NOW)
    assert p.missed == [(LATE[0], LATE[3], 4)]
    assert p.runs == [(LATE[4], Trigger.CATCH_UP), (T0 + 5 * MIN, Trigger.SCHEDULE)]
    assert p.cursor == T0 + 6 * MIN


def test_catch_up_latest_with_one_missed_slot_records_no_miss():
    p = plan(job(catch_up=CatchUp.LATEST), T0, T0 + 90 * SEC)
    assert p.missed == []
    assert p.runs == [(T0, Trigger.CATCH_UP), (T0 + MIN, Trigger.SCHEDULE)]


def test_catch_up_all_runs_every_missed_slot_in_order():
    p = plan(job(catch_up=CatchUp.ALL), T0, NOW)
    assert p.missed == []
    assert p.runs == [(s, Trigger.CATCH_UP) for s in LATE] + [(T0 + 5 * MIN, Trigger.SCHEDULE)]


def test_catch_up_none_runs_no_missed_slot_and_records_them_all():
    p = plan(job(catch_up=CatchUp.NONE), T0, NOW)
    assert p.missed == [(LATE[0], LATE[-1], 5)]
    assert p.runs == [(T0 + 5 * MIN, Trigger.SCHEDULE)]


def test_catch_up_all_is_capped_and_records_the_rest_as_missed():
    missed_slots = 150
    now = T0 + missed_slots * MIN + 30 * SEC  # slots T0 .. T0+149m late, T0+150m on time
    p = plan(job(catch_up=CatchUp.ALL), T0, now)
    catch = [s for s, t in p.runs if t is Trigger.CATCH_UP]
    assert len(catch) == planner.MAX_CATCH_UP == 100
    assert catch == [T0 + i * MIN for i in range(100)]  # the oldest ones, in order
    assert p.missed == [(T0 + 100 * MIN, T0 + 149 * MIN, 50)]
    assert [s for s, t in p.runs if t is Trigger.SCHEDULE] == [T0 + 150 * MIN]


def test_catch_up_all_at_exactly_the_cap_records_no_miss():
    now = T0 + 100 * MIN + 30 * SEC
    p = plan(job(catch_up=CatchUp.ALL), T0, now)
    assert len([1 for _, t in p.runs if t is Trigger.CATCH_UP]) == 100
    assert p.missed == []


def test_clock_jump_an_hour_ahead_gives_no_burst():
    """The cursor is an hour behind (clock jumped, or the daemon slept): one catch-up run."""
    now = T0 + timedelta(hours=1) + 30 * SEC
    p = plan(job(catch_up=CatchUp.LATEST), T0, now)
    catch = [s for s, t in p.runs if t is Trigger.CATCH_UP]
    assert catch == [T0 + 59 * MIN]                       # exactly one catch-up run
    assert [s for s, t in p.runs if t is Trigger.SCHEDULE] == [T0 + 60 * MIN]  # the current slot
    assert p.missed == [(T0, T0 + 58 * MIN, 59)]          # the rest: one coalesced record
    assert p.cursor == T0 + 61 * MIN


def test_clock_jump_of_a_day_on_a_per_second_job_stays_bounded():
    """A huge gap does not walk every slot, records a miss and runs at most one catch-up."""
    j = job(schedule="* * * * * *", catch_up=CatchUp.LATEST)
    now = T0 + timedelta(days=1)
    p = plan(j, T0, now)
    assert len([1 for _, t in p.runs if t is Trigger.CATCH_UP]) == 1
    assert len(p.missed) == 1 and p.missed[0][2] >= planner.MAX_ENUMERATE - 1
    on_time = [s for s, t in p.runs if t is Trigger.SCHEDULE]
    assert on_time and all(now - planner.MISS_AFTER <= s <= now for s in on_time)
    assert p.cursor == now + SEC


def test_huge_gap_latest_runs_the_newest_missed_slot_and_records_up_to_it():
    j = job(schedule="* * * * * *", catch_up=CatchUp.LATEST)
    now = T0 + timedelta(days=1)
    p = plan(j, T0, now)
    newest = now - planner.MISS_AFTER - SEC   # the newest slot more than MISS_AFTER late
    assert [s for s, t in p.runs if t is Trigger.CATCH_UP] == [newest]
    first, last, count = p.missed[0]
    assert first == T0 and last == newest - SEC
    assert count >= planner.MAX_ENUMERATE and not p.counted  # a lower bound, said as such


def test_end_at_stops_the_cursor():
    j = job(end_at=(T0 + 2 * MIN).isoformat())
    p = plan(j, T0, T0 + 2 * MIN + 10 * SEC)
    assert p.cursor is None
    assert T0 + 2 * MIN in [s for s, _ in p.runs]


# --- first_cursor and fingerprint ---------------------------------------------------------

def test_first_cursor_on_first_sight_starts_at_creation():
    j = job(created_at=(T0 - 10 * MIN + 5 * SEC).isoformat())
    assert planner.first_cursor(j, UTC, T0, first_sight=True) == T0 - 9 * MIN


def test_first_cursor_after_an_edit_starts_now():
    j = job(created_at=(T0 - 10 * MIN).isoformat())
    assert planner.first_cursor(j, UTC, T0 + 5 * SEC, first_sight=False) == T0 + MIN


def test_first_cursor_of_a_paused_job_is_none():
    assert planner.first_cursor(job(enabled=False), UTC, T0, first_sight=True) is None


def test_first_cursor_of_after_jobs_is_none():
    assert planner.first_cursor(job(schedule="@after"), UTC, T0, first_sight=True) is None


@pytest.mark.parametrize("change", [
    dict(schedule="*/5 * * * *"), dict(timezone="Europe/Berlin"), dict(start_at=T0.isoformat()),
    dict(end_at=T0.isoformat()), dict(created_at=T0.isoformat()), dict(enabled=False),
])
def test_fingerprint_changes_with_what_the_cursor_depends_on(change):
    base = job()
    assert planner.fingerprint(base.replace(**change)) != planner.fingerprint(base)


@pytest.mark.parametrize("change", [
    dict(command=("/bin/false",)), dict(timeout=30.0), dict(retries=3), dict(priority=9),
    dict(overlap=Overlap.ALLOW), dict(catch_up=CatchUp.ALL), dict(description="x"),
])
def test_fingerprint_ignores_what_does_not_move_the_cursor(change):
    base = job()
    assert planner.fingerprint(base.replace(**change)) == planner.fingerprint(base)


def test_fingerprint_follows_the_default_zone_only_for_jobs_without_their_own():
    default = job(timezone=None)  # the test helper's jobs have a zone of their own
    assert planner.fingerprint(default, "Europe/Berlin") != planner.fingerprint(default, "UTC")
    assert planner.fingerprint(default, None) == planner.fingerprint(default)
    own = job(timezone="Asia/Tokyo")
    assert planner.fingerprint(own, "Europe/Berlin") == planner.fingerprint(own, "UTC")


def test_fingerprint_is_stable():
    assert planner.fingerprint(job()) == planner.fingerprint(job())
    assert len(planner.fingerprint(job())) == 16


def test_fingerprint_is_the_one_state_db_already_holds():
    """Fingerprints are stored: these values were computed as sha1(json.dumps([schedule,
    zone, start_at, end_at, created_at, enabled])); another text would re-anchor every cursor."""
    edited = Job(id="a", schedule="H 3 * * *", command=("x",), timezone="Europe/Paris",
                 start_at="2026-01-01T00:00:00+00:00", created_at="2025-12-01T08:00:00+00:00", enabled=False)
    assert planner.fingerprint(edited, "UTC") == "d7b3a530dd8571e2"
    odd = Job(id="a", schedule='0 3 * * * # d\u00e9j\u00e0 "q"', command=("x",))
    assert planner.fingerprint(odd) == "203cb77f6a7cd5f6"


# --- overlap ---------------------------------------------------------------------------------

@pytest.mark.parametrize("policy", list(Overlap))
def test_overlap_with_nothing_active_starts(policy):
    assert planner.overlap(job(overlap=policy), []) == planner.OverlapDecision("start")


def test_overlap_skip_names_the_running_run():
    busy = run(status="running")
    d = planner.overlap(job(overlap=Overlap.SKIP), [busy])
    assert d.action == "skip" and d.reason == f"previous run {busy.run_id} still running"


def test_overlap_skip_prefers_naming_a_running_run_over_a_queued_one():
    queued, busy = run(status="queued"), run(status="running")
    d = planner.overlap(job(overlap=Overlap.SKIP), [queued, busy])
    assert d.reason == f"previous run {busy.run_id} still running"


def test_overlap_skip_behind_a_queued_run():
    queued = run(status="queued")
    d = planner.overlap(job(overlap=Overlap.SKIP), [queued])
    assert d.action == "skip" and d.reason == f"previous run {queued.run_id} still queued"


def test_overlap_allow_starts_beside_a_running_run():
    assert planner.overlap(job(overlap=Overlap.ALLOW), [run(status="running")]).action == "start"


def test_overlap_queue_queues_behind_the_running_run():
    busy = run(status="running")
    d = planner.overlap(job(overlap=Overlap.QUEUE), [busy])
    assert d.action == "queue" and f"queued behind run {busy.run_id}" in d.reason


def test_overlap_queue_keeps_at_most_one_waiting():
    busy, queued = run(status="running"), run(status="queued")
    d = planner.overlap(job(overlap=Overlap.QUEUE), [busy, queued])
    assert d.action == "skip" and f"run {queued.run_id} is already queued" in d.reason


def test_overlap_replace_names_every_active_run_as_victim():
    busy, queued = run(status="running"), run(status="queued")
    d = planner.overlap(job(overlap=Overlap.REPLACE), [busy, queued])
    assert d.action == "replace" and d.victims == (busy.run_id, queued.run_id)


# --- retries ---------------------------------------------------------------------------------

def test_retry_delay_doubles_per_attempt():
    j = job(retry_delay=30.0)
    assert [planner.retry_delay(j, a) for a in (1, 2, 3, 4)] == [30.0, 60.0, 120.0, 240.0]


def test_retry_delay_is_capped_at_one_hour():
    j = job(retry_delay=30.0)
    assert planner.retry_delay(j, 8) == 3600.0 == MAX_RETRY_DELAY   # 30 * 128 = 3840 -> 3600
    assert planner.retry_delay(j, 101) == 3600.0                    # the most attempts allowed
    assert planner.retry_delay(job(retry_delay=7200.0), 1) == 3600.0


@pytest.mark.parametrize("status, attempt, retries, expected", [
    ("failed", 1, 1, True), ("timeout", 1, 1, True), ("interrupted", 1, 1, True),
    ("failed", 2, 1, False), ("failed", 2, 2, True), ("failed", 1, 0, False),
    ("killed", 1, 3, False), ("blocked", 1, 3, False), ("succeeded", 1, 3, False),
    ("skipped", 1, 3, False), ("missed", 1, 3, False),
])
def test_should_retry(status, attempt, retries, expected):
    assert planner.should_retry(job(retries=retries), run(status=status, attempt=attempt)) is expected


def test_can_start_waits_for_not_before():
    r = run(status="queued", not_before=(T0 + SEC).isoformat())
    assert not planner.can_start(job(), r, set(), T0)
    assert planner.can_start(job(), r, set(), T0 + SEC)


def test_can_start_keeps_one_run_per_job_unless_allow_or_manual():
    assert not planner.can_start(job(), run(status="queued"), {"j"}, T0)
    assert planner.can_start(job(overlap=Overlap.ALLOW), run(status="queued"), {"j"}, T0)
    assert planner.can_start(job(), run(status="queued", trigger="manual"), {"j"}, T0)
    assert planner.can_start(job(), run(status="queued"), {"other"}, T0)


# --- waves -----------------------------------------------------------------------------------

def decide(j: Job, members, wave_runs=(), outside=None, active=()):
    latest = {}
    for r in wave_runs:
        latest[r.job_id] = r
    outside = outside or {}
    return planner.wave_decision(j, set(members), latest, outside.get, set(active))


def test_wave_waits_for_an_upstream_with_no_run_yet():
    assert decide(job("d", depends_on=("u",)), {"u", "d"}).action == "wait"


@pytest.mark.parametrize("status", ["queued", "waiting", "running"])
def test_wave_waits_while_the_upstream_is_active(status):
    assert decide(job("d", depends_on=("u",)), {"u", "d"}, [run("u", status)]).action == "wait"


def test_wave_releases_when_every_upstream_succeeded():
    j = job("d", depends_on=("a", "b"))
    assert decide(j, {"a", "b", "d"}, [run("a"), run("b")]).action == "release"
    assert decide(j, {"a", "b", "d"}, [run("a"), run("b", "running")]).action == "wait"


def test_wave_uses_the_latest_run_of_an_upstream_in_the_wave():
    j = job("d", depends_on=("u",))
    failed, retry = run("u", "failed", exit_code=1), run("u", "queued", attempt=2, trigger="retry")
    assert decide(j, {"u", "d"}, [failed, retry]).action == "wait"        # retries before blocking
    assert decide(j, {"u", "d"}, [failed, run("u", attempt=2)]).action == "release"


@pytest.mark.parametrize("status, detail", [
    ("failed", "exit 2"), ("timeout", "hit its 5s cap"), ("killed", "stopped by user"),
])
def test_wave_blocks_on_a_failed_upstream_naming_it(status, detail):
    up = run("u", status, exit_code=2 if status == "failed" else None,
             reason=None if status == "failed" else detail)
    d = decide(job("d", depends_on=("u",)), {"u", "d"}, [up])
    assert d.action == "block"
    assert f"blocked by u run {up.run_id} ({status}, {detail})" == d.reason


def test_wave_block_names_the_root_cause_through_a_chain():
    root = run("a", "failed", exit_code=1)
    middle = run("b", "blocked", reason=f"blocked by a run {root.run_id} (failed, exit 1)")
    d = decide(job("c", depends_on=("b",)), {"a", "b", "c"}, [root, middle])
    assert d.action == "block" and d.reason == middle.reason


def test_wave_upstream_outside_the_wave_is_satisfied_by_its_latest_run():
    j = job("d", depends_on=("u",))
    assert decide(j, {"d"}, outside={"u": run("u")}).action == "release"
    failed = run("u", "failed", exit_code=1)
    d = decide(j, {"d"}, outside={"u": failed})
    assert d.action == "block" and f"u run {failed.run_id}" in d.reason


def test_wave_upstream_outside_the_wave_is_pending_while_it_runs():
    j = job("d", depends_on=("u",))
    assert decide(j, {"d"}, outside={"u": run("u")}, active={"u"}).action == "wait"


def test_wave_upstream_outside_the_wave_that_never_ran_blocks():
    d = decide(job("d", depends_on=("u",)), {"d"})
    assert d.action == "block" and "u" in d.reason and "never succeeded" in d.reason


def test_wave_with_no_upstreams_releases():
    assert decide(job("d"), {"d"}).action == "release"


def test_wave_members_are_the_roots_and_everything_downstream():
    jobs = {j.id: j for j in [
        job("a"), job("b", depends_on=("a",)), job("c", depends_on=("b",)),
        job("d", depends_on=("a", "c")), job("x"), job("y", depends_on=("x",)),
    ]}
    assert sorted(planner.wave_members(["a"], jobs)) == ["a", "b", "c", "d"]
    assert sorted(planner.wave_members(["c"], jobs)) == ["c", "d"]
    assert sorted(planner.wave_members(["b", "x"], jobs)) == ["b", "c", "d", "x", "y"]
    assert planner.wave_members(["d"], jobs) == ["d"]


def test_wave_members_lists_each_job_once_and_ignores_unknown_roots():
    jobs = {j.id: j for j in [job("a"), job("b", depends_on=("a",)), job("c", depends_on=("a", "b"))]}
    members = planner.wave_members(["a", "b", "ghost"], jobs)
    assert sorted(members) == ["a", "b", "c"] and len(members) == 3


def test_nine_job_dag_members():
    deps = {1: (2, 4), 2: (3, 7), 4: (5, 6, 9), 5: (8, 9), 6: (7,), 7: (8,)}
    jobs = {f"job_{n}": job(f"job_{n}", depends_on=tuple(f"job_{d}" for d in deps.get(n, ())))
            for n in range(1, 10)}
    assert sorted(planner.wave_members(["job_3", "job_8", "job_9"], jobs)) == sorted(jobs)
    assert sorted(planner.wave_members(["job_7"], jobs)) == ["job_1", "job_2", "job_4", "job_6", "job_7"]
