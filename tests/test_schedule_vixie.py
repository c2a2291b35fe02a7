"""Five-field schedules against an independent model of Debian (Vixie) cron's rules, written here
from crontab(5) and cron's entry.c/cron.c: each field is a set of values (lists, ranges with
`low <= high`, steps, names, `*`, Sunday as 0 or 7); the day-of-month and day-of-week fields are
"starred" when their text starts with `*`; a day matches when both sets hold it if either field
is starred, and when either does otherwise. The sample stresses what croniter alone reads
differently: a `*` inside a list, and degenerate ranges (`5-5`)."""

from __future__ import annotations

import random
from datetime import date, datetime, timedelta, timezone

import pytest

from cron_scheduler import schedule

UTC = timezone.utc
BOUNDS = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
MONTHS = "jan feb mar apr may jun jul aug sep oct nov dec".split()
DAYS = "sun mon tue wed thu fri sat".split()


def vixie_set(text: str, low: int, high: int, names: list[str] | None) -> set[int]:
    """The values cron's get_list sets for one field."""
    def number(word: str) -> int:
        if names and word.lower() in names:
            return names.index(word.lower()) + (low if low == 1 else 0)
        return int(word)

    values: set[int] = set()
    for part in text.split(","):
        span, _, step = part.partition("/")
        first, last = (low, high) if span == "*" else (number(w) for w in (span.split("-") * 2)[:2])
        values.update(range(first, last + 1, int(step or 1)))
    return values


def vixie_fires(expr: str, after: datetime, count: int, days: int = 3 * 366) -> list[datetime]:
    """The next `count` minutes after `after` at which cron runs `expr` (UTC, naive days)."""
    fields = expr.split()
    minute, hour, dom, month, dow = (vixie_set(f, lo, hi, n) for f, (lo, hi), n in
                                     zip(fields, BOUNDS, (None, None, None, MONTHS, DAYS)))
    dow = {d % 7 for d in dow}
    starred = fields[2].startswith("*") or fields[4].startswith("*")
    out: list[datetime] = []
    day = after.date()
    for _ in range(days):
        dom_ok, dow_ok = day.day in dom, (day.weekday() + 1) % 7 in dow
        if day.month in month and ((dom_ok and dow_ok) if starred else (dom_ok or dow_ok)):
            for h in sorted(hour):
                for m in sorted(minute):
                    t = datetime(day.year, day.month, day.day, h, m, tzinfo=UTC)
                    if t > after:
                        out.append(t)
                        if len(out) == count:
                            return out
        day += timedelta(days=1)
    return out


def random_field(rng: random.Random, low: int, high: int, names: list[str] | None) -> str:
    def value(v: int) -> str:
        offset = 1 if low == 1 else 0
        if names and 0 <= v - offset < len(names) and rng.random() < 0.3:
            return names[v - offset].upper() if rng.random() < 0.5 else names[v - offset]
        return str(v)

    size = min(high - low + 1, 7 if low == 0 and high == 7 else 60)  # Sunday counts once

    def part() -> str:
        kind = rng.random()
        a = rng.randint(low, high)
        b = rng.randint(a, high)
        if kind < 0.15:
            return "*"  # inside a list: the case croniter reads as unrestricted
        if kind < 0.3:
            return f"*/{rng.randint(1, size)}"
        if kind < 0.45:
            return f"{value(a)}-{value(a)}"  # degenerate
        if kind < 0.7:
            return value(a)
        if kind < 0.85:
            return f"{value(a)}-{value(b)}"
        return f"{a}-{b}/{rng.randint(1, size)}"

    if rng.random() < 0.2:
        return "*"
    return ",".join(part() for _ in range(rng.randint(1, 3)))


def sample(n: int) -> list[str]:
    rng = random.Random(22)
    out: list[str] = []
    while len(out) < n:
        fields = [random_field(rng, lo, hi, names) for (lo, hi), names in
                  zip(BOUNDS, (None, None, None, MONTHS, DAYS))]
        if vixie_fires(" ".join(fields), datetime(2026, 1, 1, tzinfo=UTC), 1):
            out.append(" ".join(fields))
    return out


EXPRESSIONS = sample(300)


def test_the_sample_covers_the_cases_croniter_reads_differently():
    star_lists = [e for e in EXPRESSIONS if any("," in f and "*" in f.split(",")[1:] for f in e.split())]
    degenerate = [e for e in EXPRESSIONS if any(p.split("/")[0].split("-")[0] == p.split("/")[0].split("-")[-1]
                                                and "-" in p for f in e.split() for p in f.split(","))]
    restricted_star_day = [e for e in EXPRESSIONS
                           if not e.split()[2].startswith("*") and not e.split()[4].startswith("*")
                           and ("*" in e.split()[2] or "*" in e.split()[4])]
    assert len(star_lists) >= 40 and len(degenerate) >= 100 and len(restricted_star_day) >= 20


@pytest.mark.parametrize("expr", EXPRESSIONS)
def test_next_fires_are_debian_crons(expr):
    start = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=random.Random(expr).randrange(400 * 1440))
    expected = vixie_fires(expr, start, 8)
    got = schedule.next_fires(schedule.parse(expr, strict=True), start, len(expected), UTC)
    assert got == expected


def test_the_model_is_crontab5():
    """The model itself, on the examples of crontab(5)."""
    start = datetime(2026, 1, 1, tzinfo=UTC)  # a Thursday
    assert [t.day for t in vixie_fires("30 4 1,15 * 5", start, 4)] == [1, 2, 9, 15]
    assert [t.day for t in vixie_fires("0 0 */2 * 1", start, 3)] == [5, 19, 9]
    assert vixie_fires("0 0 1,* * 1", start, 3)[-1].date() == date(2026, 1, 4)  # every day
    assert vixie_fires("5-5 * * * *", start, 1) == [datetime(2026, 1, 1, 0, 5, tzinfo=UTC)]
