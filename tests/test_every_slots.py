"""@every slots are whole seconds (anchored to the creation second), and the daemon's cursors
stay consistent across that rule."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from cron_scheduler import planner, schedule
from cron_scheduler.models import Job

UTC = timezone.utc
CREATED = datetime(2026, 1, 5, 13, 48, 15, 14300, tzinfo=UTC)  # a creation instant with microseconds


def every_job(interval: str = "30s") -> Job:
    return Job(id="e", schedule=f"@every {interval}", command=("/bin/true",), timezone="UTC",
               created_at=CREATED.isoformat())


def test_every_slots_are_whole_seconds_though_created_mid_second():
    got = schedule.next_fires(schedule.parse("@every 30s"), CREATED, 4, UTC, anchor=CREATED)
    assert got == [datetime(2026, 1, 5, 13, 48, 45, tzinfo=UTC) + timedelta(seconds=30 * i) for i in range(4)]
    assert all(t.microsecond == 0 for t in got)


def test_every_with_a_fractional_interval_keeps_its_fraction():
    got = schedule.next_fires(schedule.parse("@every 1.5s"), CREATED, 3, UTC, anchor=CREATED)
    assert [t - got[0] for t in got] == [timedelta(0), timedelta(seconds=1.5), timedelta(seconds=3)]
    assert got[0] == datetime(2026, 1, 5, 13, 48, 16, 500000, tzinfo=UTC)


def test_first_cursor_and_next_slots_agree_on_whole_seconds():
    job = every_job()
    now = CREATED + timedelta(minutes=5, microseconds=123)
    cursor = planner.first_cursor(job, UTC, now, first_sight=False)
    assert cursor == datetime(2026, 1, 5, 13, 53, 45, tzinfo=UTC)
    plan = planner.plan_slots(job, UTC, cursor, cursor + timedelta(seconds=61))
    assert [s for s, _ in plan.runs] == [cursor, cursor + timedelta(seconds=30), cursor + timedelta(seconds=60)]
    assert plan.cursor == cursor + timedelta(seconds=90)


def test_a_cursor_stored_with_microseconds_moves_on_to_whole_second_slots():
    """A cursor written before slots were whole seconds (…:45.014300) runs once, then the next
    slot is the following whole-second one: no slot doubled, none lost."""
    job = every_job()
    old_cursor = datetime(2026, 1, 5, 13, 54, 15, 14300, tzinfo=UTC)
    plan = planner.plan_slots(job, UTC, old_cursor, old_cursor + timedelta(seconds=45))
    assert [s for s, _ in plan.runs] == [old_cursor, datetime(2026, 1, 5, 13, 54, 45, tzinfo=UTC)]
    assert plan.cursor == datetime(2026, 1, 5, 13, 55, 15, tzinfo=UTC)
