"""Schedules: Vixie cron semantics, extensions, DST policy, validation, and a croniter cross-check."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from croniter import CroniterBadDateError, croniter
from freezegun import freeze_time

from cron_scheduler import schedule
from cron_scheduler.errors import InvalidSchedule
from cron_scheduler.models import utcnow

UTC = timezone.utc
NY = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def iso(text: str) -> datetime:
    return datetime.fromisoformat(text)


def fires(expr: str, start: datetime, count: int, tz=UTC, job_id: str | None = None, **bounds) -> list[datetime]:
    return schedule.next_fires(schedule.parse(expr, job_id), start, count, tz, **bounds)


def fires_between(expr: str, start: datetime, end: datetime, tz) -> list[datetime]:
    """Fire instants in (start, end]."""
    return [t for t in fires(expr, start, 500, tz) if t <= end]


# --- Vixie cron field semantics ---------------------------------------------------------

def test_dom_or_dow_when_both_restricted():
    got = fires("0 0 1,15 * 1", utc(2026, 1, 1), 8)
    # Mondays, plus the 1st and the 15th whatever their weekday (Jan 15 is a Thursday,
    # Feb 1 a Sunday).
    assert got == [utc(2026, 1, 5), utc(2026, 1, 12), utc(2026, 1, 15), utc(2026, 1, 19),
                   utc(2026, 1, 26), utc(2026, 2, 1), utc(2026, 2, 2), utc(2026, 2, 9)]


def test_star_step_in_dom_counts_as_unrestricted_so_days_are_anded():
    got = fires("0 0 */2 * 1", utc(2026, 1, 1), 6)
    # Vixie bug compatibility: only Mondays that fall on an odd day of the month.
    assert got == [utc(2026, 1, 5), utc(2026, 1, 19), utc(2026, 2, 9), utc(2026, 2, 23),
                   utc(2026, 3, 9), utc(2026, 3, 23)]
    assert all(t.weekday() == 0 and t.day % 2 == 1 for t in got)


def test_same_days_written_without_star_are_ored():
    got = fires("0 0 1-31/2 * 1", utc(2025, 12, 31), 4)
    # Jan 1 2026 is a Thursday: matched by the day-of-month alone.
    assert got == [utc(2026, 1, 1), utc(2026, 1, 3), utc(2026, 1, 5), utc(2026, 1, 7)]


@pytest.mark.parametrize("dow", ["0", "7", "SUN", "sun", "0,7"])
def test_sunday_is_0_and_7(dow):
    got = fires(f"0 0 * * {dow}", utc(2026, 1, 1), 3)
    assert got == [utc(2026, 1, 4), utc(2026, 1, 11), utc(2026, 1, 18)]


def test_dow_range_ending_in_7_includes_sunday():
    got = fires("0 0 * * 5-7", utc(2026, 1, 1), 4)
    assert [t.strftime("%a") for t in got] == ["Fri", "Sat", "Sun", "Fri"]


def test_month_and_day_names():
    assert fires("0 0 1 JAN *", utc(2026, 1, 1), 2) == [utc(2027, 1, 1), utc(2028, 1, 1)]
    week = fires("0 9 * * MON-FRI", utc(2026, 1, 4), 6)  # from a Sunday
    assert [t.day for t in week] == [5, 6, 7, 8, 9, 12]
    assert fires("0 9 * * mon-fri", utc(2026, 1, 4), 6) == week
    assert fires("0 0 1 jun-aug *", utc(2026, 1, 1), 3) == [utc(2026, 6, 1), utc(2026, 7, 1), utc(2026, 8, 1)]


def test_feb_29_fires_only_in_leap_years():
    assert fires("0 0 29 2 *", utc(2026, 1, 1), 2) == [utc(2028, 2, 29), utc(2032, 2, 29)]


def test_day_31_skips_shorter_months():
    got = fires("0 0 31 * *", utc(2026, 1, 1), 7)
    assert [t.month for t in got] == [1, 3, 5, 7, 8, 10, 12]
    assert all(t.day == 31 and t.year == 2026 for t in got)


def test_six_fields_have_leading_seconds():
    assert fires("30 0 0 * * *", utc(2026, 1, 1), 2) == [utc(2026, 1, 1, 0, 0, 30), utc(2026, 1, 2, 0, 0, 30)]
    assert fires("*/15 * * * * *", utc(2026, 1, 1), 4) == [
        utc(2026, 1, 1, 0, 0, 15), utc(2026, 1, 1, 0, 0, 30), utc(2026, 1, 1, 0, 0, 45), utc(2026, 1, 1, 0, 1)]
    assert schedule.parse("30 0 0 * * *").seconds_field


def test_seven_fields_end_with_a_year():
    assert fires("0 0 12 * * * 2027", utc(2026, 6, 1), 2) == [utc(2027, 1, 1, 12), utc(2027, 1, 2, 12)]
    # A single year: one fire, then nothing more.
    assert fires("0 0 0 1 1 * 2030", utc(2026, 1, 1), 3) == [utc(2030, 1, 1)]


@pytest.mark.parametrize("alias, expected", [
    ("@yearly", [utc(2027, 1, 1), utc(2028, 1, 1)]),
    ("@annually", [utc(2027, 1, 1), utc(2028, 1, 1)]),
    ("@monthly", [utc(2026, 2, 1), utc(2026, 3, 1)]),
    ("@weekly", [utc(2026, 1, 4), utc(2026, 1, 11)]),  # Sundays
    ("@daily", [utc(2026, 1, 2), utc(2026, 1, 3)]),
    ("@midnight", [utc(2026, 1, 2), utc(2026, 1, 3)]),
    ("@hourly", [utc(2026, 1, 1, 1), utc(2026, 1, 1, 2)]),
])
def test_aliases(alias, expected):
    assert fires(alias, utc(2026, 1, 1), 2) == expected
    assert fires(alias.upper(), utc(2026, 1, 1), 2) == expected


def test_every_is_anchored_at_creation():
    created = utc(2026, 1, 1, 0, 0, 7)
    got = fires("@every 90s", utc(2026, 1, 1, 1), 3, anchor=created)
    assert got == [utc(2026, 1, 1, 1, 0, 7), utc(2026, 1, 1, 1, 1, 37), utc(2026, 1, 1, 1, 3, 7)]
    # Another creation instant gives another phase, same period.
    other = fires("@every 90s", utc(2026, 1, 1, 1), 3, anchor=utc(2026, 1, 1, 0, 0, 50))
    assert other[0] == utc(2026, 1, 1, 1, 0, 50)
    assert all((b - a) == timedelta(seconds=90) for a, b in zip(other, other[1:]))


def test_every_with_start_at_counts_from_start_at():
    start_at = utc(2026, 5, 1, 12, 0, 5)
    got = fires("@every 2h", utc(2026, 1, 1), 3, anchor=utc(2026, 1, 1, 0, 17), start_at=start_at)
    assert all(t > start_at and (t - start_at) % timedelta(hours=2) == timedelta(0) for t in got)
    assert got[1] - got[0] == timedelta(hours=2)


def test_once_fires_at_start_at_only():
    at = utc(2026, 5, 1, 9, 30)
    assert fires("@once", utc(2026, 1, 1), 3, start_at=at) == [at]
    assert fires("@once", at, 3, start_at=at) == []
    assert fires("@once", utc(2026, 1, 1), 3) == []


@pytest.mark.parametrize("expr, kind", [("@after", schedule.Kind.AFTER), ("@reboot", schedule.Kind.REBOOT)])
def test_after_and_reboot_have_no_timer(expr, kind):
    sched = schedule.parse(expr)
    assert sched.kind is kind and not sched.timed
    assert schedule.next_fire(sched, utc(2026, 1, 1)) is None
    assert fires(expr, utc(2026, 1, 1), 3, start_at=utc(2026, 2, 1)) == []


def test_hashed_fields_are_stable_per_job_id():
    first = fires("H H * * *", utc(2026, 1, 1), 3, job_id="backup")
    assert fires("H H * * *", utc(2026, 1, 1), 3, job_id="backup") == first
    # Once a day at the same (hashed) time.
    assert len({(t.hour, t.minute) for t in first}) == 1
    assert [t - first[0] for t in first] == [timedelta(0), timedelta(days=1), timedelta(days=2)]


def test_hashed_fields_differ_between_job_ids():
    a = fires("H H * * *", utc(2026, 1, 1), 1, job_id="a")[0]
    b = fires("H H * * *", utc(2026, 1, 1), 1, job_id="b")[0]
    assert (a.hour, a.minute) != (b.hour, b.minute)


def test_hashed_minute_with_fixed_hour():
    got = fires("H 3 * * *", utc(2026, 1, 1), 3, job_id="report")
    assert all(t.hour == 3 for t in got)
    assert len({t.minute for t in got}) == 1


def test_start_and_end_bound_the_schedule():
    got = fires("0 * * * *", utc(2026, 1, 1), 10, start_at=utc(2026, 2, 1, 0, 30), end_at=utc(2026, 2, 1, 3))
    assert got == [utc(2026, 2, 1, 1), utc(2026, 2, 1, 2), utc(2026, 2, 1, 3)]
    # A fire exactly at start_at counts; nothing after end_at.
    assert fires("0 * * * *", utc(2026, 1, 1), 1, start_at=utc(2026, 2, 1, 1)) == [utc(2026, 2, 1, 1)]
    assert fires("0 * * * *", utc(2026, 2, 1, 3), 1, end_at=utc(2026, 2, 1, 3)) == []


# --- DST ----------------------------------------------------------------------------------

@pytest.mark.parametrize("tz, expr, start, expected", [
    # spring forward: 02:30 does not exist; it runs once, at 03:00 local
    (NY, "30 2 * * *", utc(2026, 3, 7, 12), ["2026-03-08T03:00:00-04:00", "2026-03-09T02:30:00-04:00"]),
    (BERLIN, "30 2 * * *", utc(2026, 3, 28, 12), ["2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"]),
    # fall back: the repeated wall time runs once, at its first occurrence
    (NY, "30 1 * * *", utc(2026, 10, 31, 12), ["2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"]),
    (BERLIN, "30 2 * * *", utc(2026, 10, 24, 12), ["2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"]),
], ids=["ny-spring", "berlin-spring", "ny-fall", "berlin-fall"])
def test_fixed_time_job_across_dst(tz, expr, start, expected):
    got = fires(expr, start, 2, tz)
    assert got == [iso(e) for e in expected]
    # the DST day has exactly one fire
    day = iso(expected[0]).date()
    assert len([t for t in fires(expr, start, 5, tz) if t.astimezone(tz).date() == day]) == 1


def test_skipped_times_of_a_fixed_time_job_run_once_at_the_jump_not_once_each():
    """Cron runs `0,30 1,2 * * *` twice at 03:00 on a spring-forward night; we run it once
    (documented in the README next to the DST rule)."""
    got = fires("0,30 1,2 * * *", utc(2026, 3, 8, 5), 4, NY)
    assert [t.astimezone(NY).isoformat() for t in got] == [
        "2026-03-08T01:00:00-05:00", "2026-03-08T01:30:00-05:00", "2026-03-08T03:00:00-04:00",
        "2026-03-09T01:00:00-04:00"]


@pytest.mark.parametrize("tz, start, repeated_hour", [
    (NY, utc(2026, 11, 1, 3), 1),       # 01:00-02:00 happens twice (EDT, then EST)
    (BERLIN, utc(2026, 10, 24, 22), 2),  # 02:00-03:00 happens twice (CEST, then CET)
], ids=["ny", "berlin"])
def test_wildcard_job_runs_in_both_passes_of_a_repeated_hour(tz, start, repeated_hour):
    got = fires_between("*/20 * * * *", start, start + timedelta(hours=6), tz)
    in_hour = [t.astimezone(tz) for t in got if t.astimezone(tz).hour == repeated_hour]
    assert len(in_hour) == 6
    assert [(t.minute, t.fold) for t in in_hour] == [(0, 0), (20, 0), (40, 0), (0, 1), (20, 1), (40, 1)]
    # elapsed real time: exactly 20 minutes between consecutive fires, all night long
    assert all(b - a == timedelta(minutes=20) for a, b in zip(got, got[1:]))


@pytest.mark.parametrize("tz, start, skipped_hour", [
    (NY, utc(2026, 3, 8, 3), 2),
    (BERLIN, utc(2026, 3, 28, 22), 2),
], ids=["ny", "berlin"])
def test_wildcard_job_does_not_run_in_a_skipped_hour(tz, start, skipped_hour):
    got = fires_between("*/20 * * * *", start, start + timedelta(hours=6), tz)
    assert len(got) == 18  # 6 real hours, 3 a real hour: the jump costs no fire, only wall-clock names
    assert not [t for t in got if t.astimezone(tz).hour == skipped_hour]
    assert all(b - a == timedelta(minutes=20) for a, b in zip(got, got[1:]))


def test_next_fire_from_any_instant_matches_the_sequence_around_dst():
    """Asking from any instant in the night gives the next element of the full sequence."""
    for tz, start in ((NY, utc(2026, 11, 1, 3)), (NY, utc(2026, 3, 8, 5)), (BERLIN, utc(2026, 10, 24, 22))):
        for expr in ("*/20 * * * *", "30 1 * * *", "30 2 * * *", "15,45 * * * *"):
            sched = schedule.parse(expr)
            seq = fires(expr, start, 30, tz)
            t = start
            while t < start + timedelta(hours=6):
                assert schedule.next_fire(sched, t, tz) == min(x for x in seq if x > t), (expr, tz, t)
                t += timedelta(seconds=419)


def test_frozen_now_spring_forward():
    with freeze_time("2026-03-08 06:45:00"):  # 01:45 EST, a quarter of an hour before the jump
        now = utcnow()
        assert now == utc(2026, 3, 8, 6, 45)
        assert schedule.next_fires(schedule.parse("30 2 * * *"), now, 2, NY) == [
            iso("2026-03-08T03:00:00-04:00"), iso("2026-03-09T02:30:00-04:00")]
        assert schedule.next_fires(schedule.parse("*/20 * * * *"), now, 2, NY) == [
            iso("2026-03-08T03:00:00-04:00"), iso("2026-03-08T03:20:00-04:00")]


def test_frozen_now_in_the_first_pass_of_the_repeated_hour():
    with freeze_time("2026-11-01 05:10:00"):  # 01:10 EDT
        now = utcnow()
        assert schedule.next_fire(schedule.parse("30 1 * * *"), now, NY) == utc(2026, 11, 1, 5, 30)
        assert schedule.next_fires(schedule.parse("*/20 * * * *"), now, 5, NY) == [
            utc(2026, 11, 1, 5, 20), utc(2026, 11, 1, 5, 40), utc(2026, 11, 1, 6), utc(2026, 11, 1, 6, 20),
            utc(2026, 11, 1, 6, 40)]


def test_frozen_now_in_the_second_pass_of_the_repeated_hour():
    with freeze_time("2026-11-01 06:10:00"):  # 01:10 EST: 01:30 already ran (in EDT)
        now = utcnow()
        assert schedule.next_fire(schedule.parse("30 1 * * *"), now, NY) == utc(2026, 11, 2, 6, 30)
        assert schedule.next_fires(schedule.parse("*/20 * * * *"), now, 3, NY) == [
            utc(2026, 11, 1, 6, 20), utc(2026, 11, 1, 6, 40), utc(2026, 11, 1, 7)]


# --- invalid input ------------------------------------------------------------------------

LONG_OK = "0," * 123 + "00" + " * * * *"
LONG_BAD = "0," * 123 + "000" + " * * * *"


def test_length_limit_is_256_characters():
    assert len(LONG_OK) == 256 and len(LONG_BAD) == 257
    assert schedule.parse(LONG_OK, strict=True).kind is schedule.Kind.CRON
    with pytest.raises(InvalidSchedule, match="256"):
        schedule.parse(LONG_BAD)


@pytest.mark.parametrize("expr, fragment", [
    ("garbage", "fields"),
    ("a b c d e", "minute"),
    ("61 * * * *", "minute"),
    ("* 24 * * *", "hour"),
    ("* * 32 * *", "day-of-month"),
    ("* * 0 * *", "day-of-month"),
    ("* * * 13 *", "month"),
    ("* * * * 8", "day-of-week"),
    ("60 * * * * *", "second"),
    ("0 0 0 1 1 * 1969", "year"),
    ("*/0 * * * *", "minute"),
    ("*/61 * * * *", "step 61 in the minute field"),
    ("*/100000000000000000000 * * * *", "the minute field is larger than its 60 values"),
    ("0 */25 * * *", "hour field"),
    ("0 0 1-31/32 * *", "day-of-month field"),
    ("0 0 * */13 *", "month field"),
    ("0 0 * * 1-5/8", "day-of-week field"),
    ("*/61 0 * * * *", "second field"),
    ("*/² * * * *", "minute"),  # a digit to str.isdigit, not to int()
    ("10-5 * * * *", "reversed"),
    ("* * * * FRI-MON", "reversed"),
    ("0 0 31 2 *", "never fires"),
    ("0 0 30 2 *", "never fires"),
    ("0 0 31 4 *", "never fires"),
    ("0 0 0 29 2 * 2027", "never fires"),
    ("1 2 3 4 5 6 7 8", "8 fields"),
    ("* * * *", "4 fields"),
    ("* " * 130, "256"),
    (LONG_BAD, "256"),
    ("@fortnightly", "unknown keyword"),
    ("@daily 5", "unknown keyword"),
    ("@every 10x", "10x"),
    ("@every", "@every"),
    ("@every 0s", "greater than zero"),
    ("@every 0.5s", "at least 1s"),
    ("@every 36501d", "at most 100 years"),
    ("", "empty"),
    ("   ", "empty"),
    ("* * * * *\x00", "control"),
])
def test_invalid_schedules_are_refused(expr, fragment):
    # strict: the full check done before a schedule is written (it also proves it ever fires)
    with pytest.raises(InvalidSchedule) as info:
        schedule.parse(expr, strict=True)
    assert fragment in str(info.value)
    assert info.value.exit_code == 2
    assert "\n" not in str(info.value)


def test_every_limits_are_inclusive():
    assert schedule.parse("@every 1s").interval == 1
    assert schedule.parse("@every 36500d").interval == 36500 * 86400


@pytest.mark.parametrize("degenerate, single", [
    ("5-5 * * * *", "5 * * * *"), ("0-0 * * * *", "0 * * * *"), ("0 3-3 * * *", "0 3 * * *"),
    ("0 0 10-10 * *", "0 0 10 * *"), ("0 0 1 MAR-MAR *", "0 0 1 3 *"), ("0 0 * * 7-7", "0 0 * * 0"),
    ("0 0 * * mon-mon", "0 0 * * 1"), ("0 5-5/3 * * *", "0 5 * * *"), ("0 0 13-13 * 5-5", "0 0 13 * 5"),
])
def test_degenerate_ranges_are_their_one_value(degenerate, single):
    """Debian cron accepts `5-5` as 5 (croniter alone reads it as every minute)."""
    assert fires(degenerate, utc(2026, 1, 1), 6) == fires(single, utc(2026, 1, 1), 6)


def test_steps_up_to_the_fields_size_are_accepted():
    assert fires("*/60 * * * *", utc(2026, 1, 1), 2) == [utc(2026, 1, 1, 1), utc(2026, 1, 1, 2)]
    assert fires("0 0 * * */7", utc(2026, 1, 1), 2) == [utc(2026, 1, 4), utc(2026, 1, 11)]


@pytest.mark.parametrize("expr, days", [
    # a list holding '*' is restricted when it does not start with '*': either day rule matches
    ("0 0 1,* * 1", ["Fri 02", "Sat 03", "Sun 04", "Mon 05"]),
    ("0 0 15 * 1,*", ["Fri 02", "Sat 03", "Sun 04", "Mon 05"]),
    ("0 0 1,* * 1#1", ["Fri 02", "Sat 03", "Sun 04", "Mon 05"]),
    # starting with '*', the field is unrestricted: the other one alone decides
    ("0 0 *,1 * 1", ["Mon 05", "Mon 12", "Mon 19", "Mon 26"]),
    ("0 0 * * 1,*", ["Fri 02", "Sat 03", "Sun 04", "Mon 05"]),
])
def test_a_star_in_a_list_follows_the_fields_first_character(expr, days):
    got = fires(expr, utc(2026, 1, 1), 4)
    assert [t.strftime("%a %d") for t in got] == days


# --- cross-check against croniter --------------------------------------------------------

_MONTHS = "JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split()
_DAYS = "SUN MON TUE WED THU FRI SAT".split()


def _random_field(rng: random.Random, lo: int, hi: int, names: list[str] | None = None) -> str:
    def value(v: int) -> str:
        if names and v - lo < len(names) and rng.random() < 0.3:
            return names[v - lo]
        return str(v)
    k = rng.random()
    if k < 0.25:
        return "*"
    if k < 0.40:
        return f"*/{rng.randint(2, max(2, (hi - lo) // 2))}"
    if k < 0.60:
        return value(rng.randint(lo, hi))
    a, b = sorted(rng.sample(range(lo, hi + 1), 2))
    if k < 0.75:
        return f"{value(a)}-{value(b)}"
    if k < 0.85:
        return f"{a}-{b}/{rng.randint(1, 3)}"
    return ",".join(str(v) for v in sorted(rng.sample(range(lo, hi + 1), rng.randint(2, 4))))


def test_next_fires_match_croniter_for_200_random_expressions():
    rng = random.Random(20260308)
    checked = both_days_restricted = 0
    while checked < 200:
        fields = [_random_field(rng, 0, 59), _random_field(rng, 0, 23), _random_field(rng, 1, 31),
                  _random_field(rng, 1, 12, _MONTHS), _random_field(rng, 0, rng.choice((6, 7)), _DAYS)]
        expr = " ".join(fields)
        start = utc(2020, 1, 1) + timedelta(seconds=rng.randrange(10 * 365 * 86400))
        try:
            it = croniter(expr, start, implement_cron_bug=True)
            expected = [it.get_next(datetime) for _ in range(12)]
        except CroniterBadDateError:  # e.g. day 31 in 30-day months only: must be refused too
            with pytest.raises(InvalidSchedule):
                schedule.parse(expr, strict=True)
            continue
        assert fires(expr, start, 12) == expected, (expr, start)
        checked += 1
        both_days_restricted += not fields[2].startswith("*") and not fields[4].startswith("*")
    assert both_days_restricted >= 20  # the sample exercises the OR rule


# --- the plain-field matcher against croniter itself ----------------------------------------

def _field_text(lo: int, hi: int) -> st.SearchStrategy[str]:
    value = st.integers(lo, hi)
    ranges = st.tuples(value, value).filter(lambda ab: ab[0] < ab[1])
    return st.one_of(
        st.just("*"), st.integers(2, max(2, (hi - lo) // 2)).map(lambda n: f"*/{n}"), value.map(str),
        ranges.map(lambda ab: f"{ab[0]}-{ab[1]}"),
        st.tuples(ranges, st.integers(1, 5)).map(lambda r: f"{r[0][0]}-{r[0][1]}/{r[1]}"),
        st.lists(value, min_size=2, max_size=4, unique=True).map(lambda vs: ",".join(map(str, sorted(vs)))),
        st.integers(2, max(2, (hi - lo) // 2)).map(lambda n: f"H/{n}"), st.just("H"))


@st.composite
def _plain_expression(draw) -> tuple[str, bool]:
    seconds = draw(st.booleans())
    fields = [draw(_field_text(0, 59)), draw(_field_text(0, 23)), draw(_field_text(1, 31)),
              draw(_field_text(1, 12)), draw(_field_text(0, 6))]
    return " ".join(([draw(_field_text(0, 59))] if seconds else []) + fields), seconds


@settings(max_examples=400, deadline=None, derandomize=True, database=None)
@given(case=_plain_expression(),
       start=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2060, 12, 31)))
def test_plain_field_matcher_agrees_with_croniter(case, start):
    """schedule._PlainFields (the fast path for plain fields) must give exactly croniter's next
    wall-clock times, Vixie DOM/DOW rules included (OR when both are restricted, AND when one
    starts with '*')."""
    expr, seconds = case
    try:
        it = croniter(expr, start, hash_id=b"job-7", second_at_beginning=seconds, implement_cron_bug=True)
        expected = [it.get_next(datetime) for _ in range(5)]
    except CroniterBadDateError:
        expected = None
    except (ValueError, KeyError, TypeError):  # croniter refuses some generated fields outright
        return
    plain = schedule._plain_fields(expr, "job-7", seconds)
    assert plain is not None, expr
    got, wall = [], start
    for _ in range(5):
        wall = plain.after(wall)
        if wall is None:
            break
        got.append(wall)
    if expected is None:
        assert len(got) < 5 or got[-1] - start > timedelta(days=365 * 50), (expr, start, got)
    else:
        assert got == expected, (expr, start)


_NAMED = {3: ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"],
          4: ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]}


@st.composite
def _any_plain_field(draw, index: int, lo: int, hi: int) -> str:
    """Plain cron syntax: numbers, names, ranges, steps, lists (values in range; the edge cases
    are listed in the next test)."""
    def value(v: int) -> str:
        if index in _NAMED and 0 <= v - (index == 3) < len(_NAMED[index]) and draw(st.booleans()):
            name = _NAMED[index][v - (index == 3)]
            return name.upper() if draw(st.booleans()) else name
        return str(v)

    def part() -> str:
        kinds = ["*/n", "a", "a-b", "a-b/n"] + ([] if index == 4 else ["a/n"])  # dow a/n: croniter's
        kind = draw(st.sampled_from(kinds))
        step = draw(st.integers(1, hi))
        a = draw(st.integers(lo, hi - 1))
        b = draw(st.integers(a + 1, hi))
        return {"*/n": f"*/{step}", "a": value(a), "a-b": f"{value(a)}-{value(b)}",
                "a-b/n": f"{value(a)}-{value(b)}/{step}", "a/n": f"{value(a)}/{step}"}[kind]

    whole = draw(st.integers(0, 5))
    if whole < 2:
        return ("*", "H")[whole]
    return ",".join(part() for _ in range(draw(st.integers(1, 3))))


@st.composite
def _any_plain_expression(draw) -> tuple[str, bool]:
    seconds = draw(st.booleans())
    bounds = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 7)]
    fields = [draw(_any_plain_field(i, lo, hi)) for i, (lo, hi) in enumerate(bounds)]
    if seconds:
        fields.insert(0, draw(_any_plain_field(5, 0, 59)))
    return " ".join(fields), seconds


@settings(max_examples=600, deadline=None, derandomize=True, database=None)
@given(case=_any_plain_expression(), hash_id=st.text(min_size=1, max_size=20))
def test_plain_expansion_is_croniters_whenever_it_answers(case, hash_id):
    """schedule._expand_plain (croniter's parsing, skipped for plain fields) must give exactly
    croniter.expand()'s fields, '*' placement included (it decides the DOM/DOW rule) and H
    hashed by the job id as croniter hashes it; anything it does not answer (None) goes to
    croniter, which then accepts or refuses it."""
    expr, seconds = case
    mine = schedule._expand_plain(expr, seconds, hash_id)
    if mine is None:
        return
    assert mine == croniter.expand(expr, hash_id=hash_id.encode(), second_at_beginning=seconds)[0], expr
    answered.append(expr)


answered: list[str] = []  # how much of the sample the fast path took (checked below)


@pytest.mark.parametrize("expr", [
    "60 * * * *", "* 24 * * *", "0 0 0 * *", "0 0 32 * *", "0 0 * 0 *", "0 0 * 13 *", "0 0 * * 8",
    "*/0 * * * *", "5-5 * * * *", "10-5 * * * *", "0 0 1-31/0 * *", "*,5 * * * *", "0 0 * * 7-7",
    "0 0 * * sun-7", "0 0 * * 0-6,7", "0 0 * * 5-7", "*/60 * * * *", "0 0 2/40 * *", "0 0 * * */7",
])
def test_plain_expansion_edge_cases_are_croniters_or_left_to_it(expr):
    mine = schedule._expand_plain(expr, False)
    if mine is not None:
        assert mine == croniter.expand(expr)[0]


def test_plain_expansion_answers_the_common_forms_and_most_of_the_sample():
    for expr in ("*/5 * * * *", "0 2 * * *", "30 4 1,15 * 1-5", "0 0 * jan-mar sun", "15 */2 1-20/3 * *"):
        assert schedule._expand_plain(expr, False) is not None, expr
    assert schedule._expand_plain("H H * * *", False, "job-1") is not None
    for expr in ("0 0 L * *", "0 0 * * 5#2", "H/15 * * * *", "H(0-29) * * * *", "0 0 ? * *", "0 0 15W * *",
                 "0 0 * * 1/2"):
        assert schedule._expand_plain(expr, False, "job-1") is None, expr
    assert len(answered) >= 300  # the property above compared that many expansions with croniter


# --- '#', 'L' and 'W' follow the OR rule too ---------------------------------------------------

def _days(times: list[datetime]) -> list[str]:
    return [t.strftime("%a %d %b") for t in times]


def test_nth_weekday_with_a_day_of_month_fires_on_either():
    """`0 0 15 * 1#1`: the 15th OR the first Monday (croniter alone calls it "never fires")."""
    schedule.parse("0 0 15 * 1#1", strict=True)
    got = fires("0 0 15 * 1#1", utc(2026, 1, 1), 6)
    assert _days(got) == ["Mon 05 Jan", "Thu 15 Jan", "Mon 02 Feb", "Sun 15 Feb", "Mon 02 Mar", "Sun 15 Mar"]


def test_nth_weekday_with_a_day_it_can_share_is_not_narrowed_to_the_weekday():
    """`0 0 1 * 1#1` fired only on first Mondays (a silently different calendar)."""
    got = fires("0 0 1 * 1#1", utc(2026, 1, 1), 5)
    assert _days(got) == ["Mon 05 Jan", "Sun 01 Feb", "Mon 02 Feb", "Sun 01 Mar", "Mon 02 Mar"]


def test_nearest_weekday_with_a_day_of_week_fires_on_either():
    """`15W * 1`: the weekday nearest the 15th OR any Monday (croniter: only Mondays that are it)."""
    got = fires("0 0 15W * 1", utc(2026, 1, 1), 6)
    assert _days(got) == ["Mon 05 Jan", "Mon 12 Jan", "Thu 15 Jan", "Mon 19 Jan", "Mon 26 Jan", "Mon 02 Feb"]


def test_last_day_and_last_weekday_fire_on_either():
    got = fires("0 0 L * L5", utc(2026, 1, 1), 4)  # last day of the month OR its last Friday
    assert _days(got) == ["Fri 30 Jan", "Sat 31 Jan", "Fri 27 Feb", "Sat 28 Feb"]
    got = fires("0 0 15 * L5", utc(2026, 1, 1), 4)
    assert _days(got) == ["Thu 15 Jan", "Fri 30 Jan", "Sun 15 Feb", "Fri 27 Feb"]


def test_nth_weekday_with_an_impossible_day_of_month_still_fires_on_the_weekday():
    assert _days(fires("0 0 31 2 1#1", utc(2026, 1, 1), 2)) == ["Mon 02 Feb", "Mon 01 Feb"]


def test_nth_weekday_with_a_star_step_day_is_anded_like_vixie():
    """A day of month starting with '*' counts as unrestricted: days are ANDed, '#' included."""
    got = fires("0 0 */2 * 1#1", utc(2026, 1, 1), 3)
    assert _days(got) == ["Mon 05 Jan", "Mon 01 Jun", "Mon 03 Aug"]
    assert _days(fires("0 0 ? * 1#1", utc(2026, 1, 1), 2)) == ["Mon 05 Jan", "Mon 02 Feb"]


def test_or_rule_with_seconds_and_year_fields():
    got = fires("0 0 0 15 * 1#1 2027", utc(2026, 1, 1), 3)
    assert got == [utc(2027, 1, 4), utc(2027, 1, 15), utc(2027, 2, 1)]


def test_or_rule_with_nth_weekday_keeps_the_dst_policy():
    """02:30 on the 15th OR the second Sunday, in New York: the second Sunday of March 2026 is
    the spring-forward day, whose 02:30 does not exist: the fixed-time job runs at 03:00."""
    got = fires("30 2 15 * 0#2", utc(2026, 3, 1), 3, NY)
    assert [t.astimezone(NY).isoformat() for t in got] == [
        "2026-03-08T03:00:00-04:00", "2026-03-15T02:30:00-04:00", "2026-04-12T02:30:00-04:00"]


def _nearest_weekday(year: int, month: int, day: int, last: int) -> int:
    """The weekday nearest `day` (<= 28) without leaving the month, as Quartz's W."""
    weekday = datetime(year, month, day).weekday()
    if weekday == 5:
        return day - 1 if day > 1 else day + 2
    if weekday == 6:
        return day + 1 if day < last else day - 2
    return day


def _dom_matches(part: str, d: datetime) -> bool:
    last = ((d.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)).day
    if part == "L":
        return d.day == last
    if part.endswith("W"):
        return d.day == _nearest_weekday(d.year, d.month, int(part[:-1]), last)
    return d.day in {int(v) for v in part.split(",")}


def _dow_matches(part: str, d: datetime) -> bool:
    cron_weekday = (d.weekday() + 1) % 7
    if part.startswith("L"):  # croniter's 'L5': the last Friday of the month
        return cron_weekday == int(part[1:]) and (d + timedelta(days=7)).month != d.month
    if "#" in part:
        return any(cron_weekday == int(w) and (d.day - 1) // 7 + 1 == int(n)
                   for w, n in (p.split("#") for p in part.split(",")))
    return cron_weekday in {int(v) for v in part.split(",")}


_DOM_PARTS = st.one_of(st.integers(1, 31).map(str), st.just("L"), st.integers(1, 28).map(lambda n: f"{n}W"),
                       st.lists(st.integers(1, 31), min_size=2, max_size=3, unique=True).map(
                           lambda vs: ",".join(map(str, sorted(vs)))))
_NTH = st.tuples(st.integers(0, 6), st.integers(1, 5)).map(lambda wn: f"{wn[0]}#{wn[1]}")
_DOW_PARTS = st.one_of(_NTH, st.lists(_NTH, min_size=2, max_size=2, unique=True).map(",".join),
                       st.integers(0, 6).map(lambda w: f"L{w}"), st.integers(0, 6).map(str))


@settings(max_examples=150, deadline=None, derandomize=True, database=None)
@given(dom=_DOM_PARTS, dow=_DOW_PARTS,
       start=st.dates(min_value=datetime(2001, 1, 1).date(), max_value=datetime(2060, 12, 31).date()))
def test_l_w_and_nth_fire_on_the_days_either_field_names(dom, dow, start):
    """Property: with both day fields restricted (L, W and '#' included), a day fires when the
    day of month OR the day of week matches it, day by day over the next two years."""
    if "#" not in dow and "L" not in dow and "L" not in dom and "W" not in dom:
        dow = "1#1"  # plain pairs are the fast path's business (tested above)
    expr = f"0 0 {dom} * {dow}"
    origin = datetime(start.year, start.month, start.day, tzinfo=UTC)
    end = origin + timedelta(days=731)
    expected, day = [], origin + timedelta(days=1)
    while day <= end:
        if _dom_matches(dom, day) or _dow_matches(dow, day):
            expected.append(day)
        day += timedelta(days=1)
    got = [t for t in fires(expr, origin, len(expected) + 1) if t <= end]
    assert got == expected, expr


# --- the machine's zone -----------------------------------------------------------------------

def test_the_machine_zone_is_etc_localtime_never_the_tz_variable(monkeypatch, tmp_path):
    """Jobs without --tz (and no config timezone) are read in the machine's zone; it must not
    follow $TZ, or processes with different environments would disagree about their instants."""
    localtime = tmp_path / "localtime"
    with open("/usr/share/zoneinfo/Asia/Tokyo", "rb") as fh:
        localtime.write_bytes(fh.read())
    monkeypatch.setattr(schedule, "LOCALTIME", str(localtime))
    monkeypatch.setenv("TZ", "America/New_York")
    schedule.local_zone.cache_clear()
    try:
        zone = schedule.get_zone(None)
        assert utc(2026, 1, 1).astimezone(zone).utcoffset() == timedelta(hours=9)
        assert fires("0 9 * * *", utc(2025, 12, 31, 12), 1, zone) == [utc(2026, 1, 1, 0)]  # 09:00 in Tokyo
        monkeypatch.setattr(schedule, "LOCALTIME", str(tmp_path / "missing"))
        schedule.local_zone.cache_clear()
        assert schedule.get_zone(None).utcoffset(datetime(2026, 1, 1)) == timedelta(0)  # UTC
    finally:
        schedule.local_zone.cache_clear()


@pytest.mark.parametrize("expr, start", [
    ("0 0 31 * *", datetime(2025, 1, 31, 0, 0)),      # past February and April to March 31
    ("0 0 29 2 *", datetime(2023, 3, 1)),             # to the next leap day
    ("30 4 1,15,30 * *", datetime(2024, 2, 15, 5)),   # 30 does not exist in February
    ("0 12 5-7 * *", datetime(2025, 12, 7, 12)),      # across the year
    ("0 0 31 12 *", datetime(9998, 12, 31, 0, 0)),    # the last day datetime holds
    ("* * 3 * *", datetime(2025, 6, 3, 23, 59)),
])
def test_plain_day_of_month_jumps_agree_with_croniter(expr, start):
    """The plain matcher jumps to the next listed day of the month instead of walking."""
    it = croniter(expr, start, implement_cron_bug=True)
    expected = [it.get_next(datetime) for _ in range(4 if start.year < 9998 else 1)]
    plain = schedule._plain_fields(expr, None, False)
    got, wall = [], start
    for _ in expected:
        wall = plain.after(wall)
        got.append(wall)
    assert got == expected
