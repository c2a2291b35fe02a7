"""Schedules: parsing, validation and fire times. The only module that imports croniter.

Every instant going in and out is an aware UTC datetime. Cron fields are evaluated on the
naive wall clock of the job's zone, then mapped to instants with the Vixie cron DST policy:

* a *fixed-time* job (minute and hour fields do not start with ``*``; ``H/n`` counts as
  a wildcard) whose wall time falls in a skipped hour runs once, at the first instant after
  the jump; in a repeated hour it runs once, at the first occurrence;
* any other job follows elapsed real time: wall times that do not exist are skipped, and
  wall times that happen twice happen twice.
"""

from __future__ import annotations

import bisect
import calendar
import functools
import re
import zlib
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from enum import Enum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


from cron_scheduler.errors import InvalidDuration, InvalidSchedule, InvalidOption, NeverFires
from cron_scheduler.models import UTC, parse_duration

MAX_LENGTH = 256
MIN_EVERY = 1.0  # seconds: the shortest @every interval (the longest is parse_duration's 100 years)
# datetime ends with year 9999: later fire times do not exist. LAST_FIRE stops a day short so that
# any fire time can still be shown in any zone.
LAST_FIRE = datetime(9999, 12, 30, tzinfo=UTC)
ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
FIELD_NAMES_5 = ("minute", "hour", "day-of-month", "month", "day-of-week")
FIELD_NAMES_6 = ("second",) + FIELD_NAMES_5
FIELD_NAMES_7 = FIELD_NAMES_6 + ("year",)
_RANGE_RE = re.compile(r"([0-9A-Za-z]+)-([0-9A-Za-z]+)")
_NAMES = {name: i for i, name in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1)}
_NAMES.update({name: i for i, name in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))})
# values a field holds (Sunday is 0 and 7): a step beyond this selects only the first value
_FIELD_SIZES = {"second": 60, "minute": 60, "hour": 24, "day-of-month": 31, "month": 12, "day-of-week": 7}
_FULL_RANGES = {"second": "0-59", "minute": "0-59", "hour": "0-23", "day-of-month": "1-31", "month": "1-12",
                "day-of-week": "0-6"}


class Kind(str, Enum):
    CRON = "cron"
    EVERY = "every"
    ONCE = "once"
    AFTER = "after"
    REBOOT = "reboot"


@dataclass(frozen=True)
class Schedule:
    expr: str
    kind: Kind
    cron: str | None = None          # croniter expression (5 fields, or 6/7 with leading seconds)
    seconds_field: bool = False
    hash_id: str | None = None       # set when the expression uses H
    fixed_time: bool = False
    interval: float | None = None    # @every, in seconds

    @property
    def timed(self) -> bool:
        return self.kind in (Kind.CRON, Kind.EVERY, Kind.ONCE)


# --- zones -------------------------------------------------------------------------------

def get_zone(name: str | None) -> tzinfo:
    """The IANA zone `name`, or the local zone when None."""
    if name is None:
        return local_zone()
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise InvalidOption(f"unknown time zone {name!r}: use an IANA name such as Europe/Berlin") from None


LOCALTIME = "/etc/localtime"


@functools.lru_cache(maxsize=1)
def local_zone() -> tzinfo:
    """The machine's zone: /etc/localtime, else UTC. Never $TZ: the zone of a job without --tz
    must not depend on the environment of whichever process reads it (the daemon, `list`,
    `next`, `create_cron`), or they would disagree about its instants."""
    try:
        with open(LOCALTIME, "rb") as fh:
            return ZoneInfo.from_file(fh, key="localtime")
    except (OSError, ValueError):
        return UTC


# --- parsing -----------------------------------------------------------------------------

def parse(expr: str, job_id: str | None = None, strict: bool = False) -> Schedule:
    """Parse a schedule; raises InvalidSchedule naming the field at fault. `job_id` seeds H
    (hashed) fields. `strict` also proves that it ever fires (impossible dates such as
    Feb 31): done before a schedule is written, not again for each read."""
    text = " ".join(str(expr).split())
    return _parse(text, job_id if "H" in text else None, strict)


@functools.lru_cache(maxsize=16384)
def _parse(text: str, job_id: str | None, strict: bool) -> Schedule:
    if strict:  # the parse itself is the one cached for the non-strict readers of the schedule
        sched = _parse(text, job_id, False)
        # from now, so that a 7-field schedule whose years are all past never fires either
        if sched.kind is Kind.CRON and _wall_next(sched, datetime.now()) is None:
            raise NeverFires(f"invalid schedule {text!r}: it never fires (impossible date, or its years are past)")
        return sched
    if not text:
        raise InvalidSchedule("invalid schedule: it is empty")
    if len(text) > MAX_LENGTH:
        raise InvalidSchedule(f"invalid schedule: longer than {MAX_LENGTH} characters")
    if not text.isprintable():
        raise InvalidSchedule(f"invalid schedule {text!r}: control characters")
    if text.startswith("@"):
        word, _, rest = text.partition(" ")
        word = word.lower()
        if word in ALIASES and not rest:
            return _parse_cron(text, ALIASES[word], job_id)
        if word == "@every":
            try:
                interval = parse_duration(rest, "@every interval")
            except InvalidDuration as exc:
                raise InvalidSchedule(str(exc)) from None
            if interval < MIN_EVERY:
                raise InvalidSchedule(f"invalid schedule {text!r}: the @every interval must be at least 1s")
            return Schedule(text, Kind.EVERY, interval=interval)
        simple = {"@once": Kind.ONCE, "@after": Kind.AFTER, "@reboot": Kind.REBOOT}
        if word in simple and not rest:
            return Schedule(text, simple[word])
        raise InvalidSchedule(
            f"invalid schedule {text!r}: unknown keyword (use @yearly @monthly @weekly @daily "
            "@hourly @reboot @every DURATION @once @after, or 5-7 cron fields)")
    return _parse_cron(text, text, job_id)


def _parse_cron(original: str, cron: str, job_id: str | None) -> Schedule:
    fields = cron.split()
    if len(fields) not in (5, 6, 7):
        raise InvalidSchedule(
            f"invalid schedule {original!r}: {len(fields)} fields; use 5 (min hour dom mon dow), "
            "6 (leading seconds) or 7 (seconds ... year)")
    names = {5: FIELD_NAMES_5, 6: FIELD_NAMES_6, 7: FIELD_NAMES_7}[len(fields)]
    for name, value in zip(names, fields):
        _check_field(original, name, value)
    hash_id = (job_id or cron) if "H" in cron else None
    cron = " ".join(_normalize(name, value) for name, value in zip(names, fields))
    seconds = len(fields) > 5
    try:
        _plain_fields(cron, hash_id, seconds)  # croniter parses only what is not plain
    except Exception:  # croniter raises assorted error types on garbage
        _blame_field(original, fields, names, hash_id, seconds)
        raise InvalidSchedule(f"invalid schedule {original!r}: not a valid cron expression") from None
    minute, hour = fields[seconds], fields[seconds + 1]
    sched = Schedule(original, Kind.CRON, cron=cron, seconds_field=seconds, hash_id=hash_id,
                     fixed_time=not (_is_wild(minute) or _is_wild(hour)))
    return sched


def _blame_field(original: str, fields: list[str], names: tuple[str, ...], hash_id: str | None,
                 seconds: bool) -> None:
    """Raise InvalidSchedule naming the first field croniter refuses on its own."""
    for i, name in enumerate(names):
        probe = ["*"] * len(fields)
        probe[i] = fields[i]
        try:
            _croniter().croniter.expand(" ".join(probe), hash_id=hash_id and hash_id.encode(),
                            second_at_beginning=seconds)
        except Exception:
            raise InvalidSchedule(f"invalid schedule {original!r}: bad {name} field {fields[i]!r}") from None


def _check_field(original: str, name: str, value: str) -> None:
    """Refuse what cron reads as nothing or as something else: a reversed range (`10-5`: no
    value in Vixie cron, a wrap-around in croniter) and a step beyond the field's values
    (`*/61`, which croniter reads as `0`)."""
    size = _FIELD_SIZES.get(name)
    for part in value.split(","):
        span, _, step = part.partition("/")
        if size is not None and step.isascii() and step.isdigit() and int(step) > size:
            raise InvalidSchedule(f"invalid schedule {original!r}: step {step} in the {name} field "
                                  f"is larger than its {size} values")
        ends = range_ends(span)
        if ends is not None and ends[0] > ends[1]:
            raise InvalidSchedule(f"invalid schedule {original!r}: reversed range {part!r} in the {name} field")


def range_ends(span: str) -> tuple[int, int] | None:
    """(low, high) of a range `a-b` of numbers or names, else None."""
    m = _RANGE_RE.fullmatch(span)
    if not m:
        return None
    try:
        low, high = (int(_NAMES.get(v.lower(), v)) for v in m.groups())
    except ValueError:
        return None
    return low, high


def _normalize(name: str, value: str) -> str:
    """The field as Vixie cron reads it, written so that croniter reads it the same: a
    degenerate range `5-5` (croniter: every value) is `5`; a `*` inside a list (croniter drops
    the field's restriction) is the field's full range, and a list starting with `*` is `*`.
    The first character, which decides cron's day-of-month/day-of-week rule, is kept."""
    parts = value.split(",")
    if parts[0] == "*":
        return "*"
    out = []
    for part in parts:
        ends = range_ends(part.partition("/")[0])
        if ends is not None and ends[0] == ends[1]:
            part = part.split("-")[0]
        elif part == "*":
            part = _FULL_RANGES.get(name, part)
        out.append(part)
    return ",".join(out)


def _is_wild(field: str) -> bool:
    return field.startswith("*") or (field.startswith("H") and "/" in field)


def _croniter():
    """croniter, imported on first use: commands that compute no fire time skip its import."""
    import croniter
    return croniter


@functools.lru_cache(maxsize=4096)
def _cron_iter(cron: str, hash_id: str | None, seconds: bool):
    # Reused with start_time=...: parsing an expression costs far more than one step.
    return _croniter().croniter(cron, datetime(2000, 1, 1), hash_id=hash_id, second_at_beginning=seconds,
                    implement_cron_bug=True)


@dataclass(frozen=True)
class _PlainFields:
    """A cron expression made only of numbers, ranges, steps, lists, names and H, as croniter
    expanded it: matched here directly, far faster than croniter's stepping (which dominates a
    daemon start or a listing with thousands of distinct schedules). Semantics are croniter's
    (with implement_cron_bug), cross-checked against it by property tests, except for the day
    rule, which is Vixie cron's where croniter differs (tests/test_schedule_vixie.py)."""

    seconds: tuple[int, ...] | None  # None: a 5-field expression (minute precision)
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int] | None  # None: any day of the month ('*')
    months: frozenset[int] | None
    weekdays: frozenset[int] | None  # cron numbering, 0 = Sunday
    day_or: bool  # neither day field starts with '*' (Vixie cron): a day matches either

    def after(self, wall: datetime) -> datetime | None:
        """The first matching wall-clock time strictly after `wall` (at this expression's
        precision), or None within the next PLAIN_HORIZON years."""
        unit = timedelta(seconds=1) if self.seconds else timedelta(minutes=1)
        t = wall.replace(microsecond=0) if self.seconds else wall.replace(second=0, microsecond=0)
        t += unit
        end = t.year + PLAIN_HORIZON
        while t.year <= end:
            if self.months is not None and t.month not in self.months:
                year, month = (t.year + 1, 1) if t.month == 12 else (t.year, t.month + 1)
                t = t.replace(year=year, month=month, day=1, hour=0, minute=0, second=0)
            elif not self._day_matches(t):
                t = self._next_day(t)
            elif (hour := _at_or_after(self.hours, t.hour)) != t.hour:
                t = (t + timedelta(days=1)).replace(hour=0, minute=0, second=0) if hour is None else \
                    t.replace(hour=hour, minute=0, second=0)
            elif (minute := _at_or_after(self.minutes, t.minute)) != t.minute:
                t = (t + timedelta(hours=1)).replace(minute=0, second=0) if minute is None else \
                    t.replace(minute=minute, second=0)
            elif self.seconds and (second := _at_or_after(self.seconds, t.second)) != t.second:
                t = (t + timedelta(minutes=1)).replace(second=0) if second is None else t.replace(second=second)
            else:
                return t
        return None

    def _next_day(self, t: datetime) -> datetime:
        """Midnight of the next day that may match after the day of `t`: with only the day of
        the month restricted, the next listed day of this month or the first of the next (no
        walk day by day through a month); else the next day."""
        if self.weekdays is None and self.days is not None:
            day = min((d for d in self.days if d > t.day), default=32)
            if day <= calendar.monthrange(t.year, t.month)[1]:
                return t.replace(day=day, hour=0, minute=0, second=0)
            year, month = (t.year + 1, 1) if t.month == 12 else (t.year, t.month + 1)
            return t.replace(year=year, month=month, day=1, hour=0, minute=0, second=0)
        return (t + timedelta(days=1)).replace(hour=0, minute=0, second=0)

    def _day_matches(self, t: datetime) -> bool:
        dom = self.days is None or t.day in self.days
        dow = self.weekdays is None or (t.weekday() + 1) % 7 in self.weekdays
        return (dom or dow) if self.day_or else (dom and dow)


PLAIN_HORIZON = 400  # years: every plain expression that ever fires does so within this


def _at_or_after(values: tuple[int, ...], current: int) -> int | None:
    i = bisect.bisect_left(values, current)
    return values[i] if i < len(values) else None


# (low, high, names) of each field in croniter's expanded order: minute hour dom month dow second
_BOUNDS = ((0, 59, {}), (0, 23, {}), (1, 31, {}),
           (1, 12, {n: i for i, n in enumerate("jan feb mar apr may jun jul aug sep oct nov dec".split(), 1)}),
           (0, 7, {n: i for i, n in enumerate("sun mon tue wed thu fri sat".split())}), (0, 59, {}))
_HASH_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 6), (0, 59))  # croniter.RANGES
_PART_RE = re.compile(r"(\*|[0-9a-z]+(?:-[0-9a-z]+)?)(?:/([0-9]+))?")


def _expand_plain(cron: str, seconds: bool, hash_id: str | None = None) -> list[list] | None:
    """croniter.expand()'s result for an expression of numbers, names, ranges, steps, lists and
    bare H fields, computed without croniter (whose parsing costs about 0.2 ms an expression);
    None for anything else (H/n, H(a-b), L, W, #, ?, a year field, a value out of range):
    croniter handles those. Property tests check it against croniter.expand itself."""
    raw = cron.lower().split()
    if seconds:
        raw = raw[1:] + raw[:1]  # croniter's order: the seconds field last
    if len(raw) != 5 + seconds:
        return None
    expanded = []
    for index, field in enumerate(raw):
        if field == "*":  # croniter keeps a bare '*' as it is
            expanded.append(["*"])
            continue
        if field == "h" and hash_id is not None:  # croniter's HashExpander, for a bare H
            low, high = _HASH_RANGES[index]
            field = str(((zlib.crc32(hash_id.encode()) & 0xFFFFFFFF) >> index) % (high - low + 1) + low)
        low, high, names = _BOUNDS[index]
        values: set[int] = set()
        for part in field.split(","):
            if part == "*":  # '*' inside a list: left to croniter
                return None
            m = _PART_RE.fullmatch(part)
            if not m:
                return None
            span, step = m.group(1), int(m.group(2)) if m.group(2) else None
            if span == "*":
                first, last = low, (6 if index == 4 else high)
            else:
                ends = [names.get(v, v) for v in span.split("-")]
                if not all(isinstance(v, int) or v.isdigit() for v in ends):
                    return None
                first, last = (int(v) for v in (ends * 2)[:2])
                if len(ends) == 2 and first >= last:  # degenerate or reversed: croniter's business
                    return None
                if step is not None and len(ends) == 1:
                    if index == 4:  # "a/n" in the day-of-week field: left to croniter
                        return None
                    last = high
                if not (low <= first <= last <= high):
                    return None
            if step == 0:
                return None
            values.update(v % 7 if index == 4 else v for v in range(first, last + 1, step or 1))
        expanded.append(sorted(values))
    day_raw, dow_raw = raw[2], raw[4]
    for index, field in enumerate(expanded):  # croniter's wildcard rule, context included
        full = (60, 24, 31, 12, 7, 60)[index]
        if len(field) == full and not ((index == 2 and "*" not in dow_raw) or (index == 4 and "*" not in day_raw)):
            expanded[index] = ["*"]
    return expanded


@functools.lru_cache(maxsize=4096)
def _plain_fields(cron: str, hash_id: str | None, seconds: bool) -> _PlainFields | None:
    """The expression as _PlainFields, or None when it uses L, W, # or a year field."""
    expanded = _expand_plain(cron, seconds, hash_id)
    if expanded is None:
        it = _cron_iter(cron, hash_id, seconds)
        expanded = it.expanded
        if len(expanded) > 6 or it.nth_weekday_of_month or getattr(it, "nearest_weekday", None):
            return None
    if any(v != "*" and type(v) is not int for field in expanded for v in field):
        return None

    def sorted_or_all(field: list, size: int) -> tuple[int, ...]:
        return tuple(range(size)) if field[0] == "*" else tuple(sorted(field))

    minute, hour, day, month, weekday = expanded[:5]
    raw = cron.split()[seconds:]  # minute hour dom month dow
    return _PlainFields(
        seconds=sorted_or_all(expanded[5], 60) if seconds else None,
        minutes=sorted_or_all(minute, 60), hours=sorted_or_all(hour, 24),
        days=None if day[0] == "*" else frozenset(day),
        months=None if month[0] == "*" else frozenset(month),
        weekdays=None if weekday[0] == "*" else frozenset(v % 7 for v in weekday),
        day_or=not (_starred(raw[2]) or _starred(raw[4])))


def _starred(field: str) -> bool:
    """Vixie cron's DOM_STAR/DOW_STAR: the field's text starts with '*' (croniter's '?' alike),
    whatever its values. Two fields that are not starred match a day when either does."""
    return field[:1] in ("*", "?")


@functools.lru_cache(maxsize=4096)
def _day_or_sides(cron: str, hash_id: str | None, seconds: bool) -> tuple[str, str] | None:
    """Vixie cron's rule for a non-plain expression: when neither day field starts with '*', a
    day matches either. croniter keeps '#', 'W' and 'L5' (in the day-of-week field) on both
    sides of its split, so it intersects them instead (`0 0 15 * 1#1` would never fire). Returns the expression with only its day of month and with only its day
    of week (the other field '*'), whose earliest next time is the rule's; None when the rule
    does not apply."""
    fields = cron.split()
    dom, dow = seconds + 2, seconds + 4
    if _starred(fields[dom]) or _starred(fields[dow]):
        return None  # unrestricted, or the Vixie bug: a field starting with '*' intersects
    return (" ".join(fields[:dow] + ["*"] + fields[dow + 1:]),
            " ".join(fields[:dom] + ["*"] + fields[dom + 1:]))


def _wall_next(sched: Schedule, wall: datetime) -> datetime | None:
    """The next wall-clock time after `wall` matching the cron fields; None if there is none."""
    return _wall_next_cron(sched.cron, sched.hash_id, sched.seconds_field, wall)


def _wall_next_cron(cron: str, hash_id: str | None, seconds: bool, wall: datetime) -> datetime | None:
    plain = _plain_fields(cron, hash_id, seconds)
    if plain is not None:
        return plain.after(wall)
    sides = _day_or_sides(cron, hash_id, seconds)
    if sides is not None:
        found = [t for side in sides if (t := _wall_next_cron(side, hash_id, seconds, wall)) is not None]
        return min(found, default=None)
    try:
        return _cron_iter(cron, hash_id, seconds).get_next(datetime, start_time=wall)
    except _croniter().CroniterBadDateError:
        return None


# --- fire times --------------------------------------------------------------------------

def next_fire(sched: Schedule, after: datetime, tz: tzinfo = UTC, *, anchor: datetime | None = None,
              start_at: datetime | None = None, end_at: datetime | None = None) -> datetime | None:
    """The first fire instant strictly after `after` (aware), within [start_at, end_at], or None.
    None as well when it would come after LAST_FIRE (the end of what datetime can hold).

    `anchor` is the origin of an @every interval (the job's creation)."""
    try:
        result = _next_fire(sched, after, tz, anchor, start_at)
    except (OverflowError, ValueError):  # datetime or croniter ran past year 9999
        return None
    if result is None or result > LAST_FIRE or (end_at is not None and result > end_at):
        return None
    return result


def _next_fire(sched: Schedule, after: datetime, tz: tzinfo, anchor: datetime | None,
               start_at: datetime | None) -> datetime | None:
    if start_at is not None and after < start_at:
        after = start_at - timedelta(microseconds=1)
    if sched.kind is Kind.CRON:
        return _cron_next(sched, after, tz)
    if sched.kind is Kind.EVERY:
        # Anchored to a whole second: slots are whole seconds unless the interval has a fraction.
        origin = (start_at or anchor or after).replace(microsecond=0)
        steps = max(1, int((after - origin).total_seconds() // sched.interval) + 1)
        result = origin + timedelta(seconds=sched.interval * steps)
        while result <= after:  # float rounding
            result += timedelta(seconds=sched.interval)
        return result
    if sched.kind is Kind.ONCE:
        return start_at if start_at is not None and start_at > after else None
    return None


def next_fires(sched: Schedule, after: datetime, count: int, tz: tzinfo = UTC, **bounds) -> list[datetime]:
    out: list[datetime] = []
    while len(out) < count:
        nxt = next_fire(sched, after, tz, **bounds)
        if nxt is None:
            break
        out.append(nxt)
        after = nxt
    return out


@functools.lru_cache(maxsize=4096)
def _cron_next(sched: Schedule, after: datetime, tz: tzinfo) -> datetime | None:
    # Memoised: a listing or a daemon start asks the same question for many jobs at one `now`.
    after = after.astimezone(UTC)
    local = after.astimezone(tz)
    wall = local.replace(tzinfo=None, fold=0)
    best = _first_instant(sched, wall.replace(microsecond=0), after, tz)
    if not sched.fixed_time and local.fold == 0 and _ambiguous(wall, tz):
        # Later in real time but earlier on the wall clock: the second pass of a repeated hour.
        delta = wall.replace(tzinfo=tz, fold=0).utcoffset() - wall.replace(tzinfo=tz, fold=1).utcoffset()
        second = _first_instant(sched, (wall - delta).replace(microsecond=0), after, tz, until=wall)
        if second is not None and (best is None or second < best):
            best = second
    return best


def _first_instant(sched: Schedule, start: datetime, after: datetime, tz: tzinfo,
                   until: datetime | None = None) -> datetime | None:
    """Walk wall-clock candidates from `start`; the first instant > `after`. With `until`,
    only second occurrences of repeated wall times count, and the walk ends past `until`."""
    candidate = start
    for _ in range(10000):
        candidate = _wall_next(sched, candidate)
        if candidate is None:
            return None
        instants = _instants(candidate, tz, sched.fixed_time)
        if until is not None:
            if not _ambiguous(candidate, tz):
                if candidate > until:
                    return None
                continue
            instants = instants[1:]
        for instant in instants:
            if instant > after:
                return instant
    return None


def _instants(wall: datetime, tz: tzinfo, fixed_time: bool) -> list[datetime]:
    """The real instants at which wall-clock time `wall` happens, under the DST policy."""
    first = wall.replace(tzinfo=tz, fold=0)
    second = wall.replace(tzinfo=tz, fold=1)
    if first.utcoffset() == second.utcoffset():
        return [first.astimezone(UTC)]
    if _exists(wall, tz):  # a repeated wall time
        both = [first.astimezone(UTC), second.astimezone(UTC)]
        return both[:1] if fixed_time else both
    return [_transition(second.astimezone(UTC), first.astimezone(UTC), tz)] if fixed_time else []


def _exists(wall: datetime, tz: tzinfo) -> bool:
    return wall.replace(tzinfo=tz).astimezone(UTC).astimezone(tz).replace(tzinfo=None) == wall


def _ambiguous(wall: datetime, tz: tzinfo) -> bool:
    return (wall.replace(tzinfo=tz, fold=0).utcoffset() != wall.replace(tzinfo=tz, fold=1).utcoffset()
            and _exists(wall, tz))


def _transition(low: datetime, high: datetime, tz: tzinfo) -> datetime:
    """The instant in (low, high] where the zone's offset changes (to the second)."""
    before = low.astimezone(tz).utcoffset()
    while (high - low) > timedelta(seconds=1):
        mid = low + (high - low) / 2
        if mid.astimezone(tz).utcoffset() == before:
            low = mid
        else:
            high = mid
    return high.replace(microsecond=0)


def describe(sched: Schedule) -> str:
    if sched.kind is Kind.EVERY:
        return f"every {sched.interval:g}s from creation"
    if sched.kind is Kind.ONCE:
        return "once, at --start-at"
    if sched.kind is Kind.AFTER:
        return "no timer: runs when its dependencies succeed"
    if sched.kind is Kind.REBOOT:
        return "once each time the daemon starts"
    return f"cron {sched.cron}" + (" (fixed time)" if sched.fixed_time else "")
