"""Data of the product: the Job definition, run statuses, and the small value parsers
(job ids, durations, sizes, instants) that every face of the product shares."""

from __future__ import annotations

import dataclasses
import re
import reprlib
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import Enum, StrEnum
from typing import Any

from cron_scheduler.errors import (CorruptStore, CronSchedulerError, IllegalTransition, InvalidDuration,
                                   InvalidJobId, InvalidOption)

UTC = timezone.utc
DEFAULT_MAX_OUTPUT = 10 * 1024 * 1024
DEFAULT_RETRY_DELAY = 30.0
MAX_RETRY_DELAY = 3600.0
MAX_DURATION = 36500 * 86400.0  # 100 years of 365 days: anything longer is a mistake
MAX_SIZE = 1024**4              # 1 TiB


class Overlap(str, Enum):
    SKIP = "skip"
    QUEUE = "queue"
    ALLOW = "allow"
    REPLACE = "replace"


class CatchUp(str, Enum):
    LATEST = "latest"
    ALL = "all"
    NONE = "none"


class RunStatus(StrEnum):
    QUEUED = "queued"
    WAITING = "waiting"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMEOUT = "timeout"
    KILLED = "killed"
    SKIPPED = "skipped"
    BLOCKED = "blocked"
    MISSED = "missed"
    INTERRUPTED = "interrupted"

    @property
    def final(self) -> bool:
        return self not in ACTIVE


ACTIVE = frozenset({RunStatus.QUEUED, RunStatus.WAITING, RunStatus.RUNNING})
RETRYABLE = frozenset({RunStatus.FAILED, RunStatus.TIMEOUT, RunStatus.INTERRUPTED})

# The run lifecycle: the statuses a run may be created in (None -> ...) and the legal moves
# from each active status. A final status never changes (DESIGN.md section 5, Lifecycle).
TRANSITIONS: dict[RunStatus | None, frozenset[RunStatus]] = {
    None: frozenset({RunStatus.QUEUED, RunStatus.WAITING, RunStatus.SKIPPED, RunStatus.MISSED}),
    RunStatus.WAITING: frozenset({RunStatus.QUEUED, RunStatus.BLOCKED, RunStatus.SKIPPED, RunStatus.KILLED}),
    RunStatus.QUEUED: frozenset({RunStatus.RUNNING, RunStatus.SKIPPED, RunStatus.KILLED}),
    RunStatus.RUNNING: frozenset({RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.TIMEOUT,
                                  RunStatus.KILLED, RunStatus.INTERRUPTED}),
}


def check_transition(old: RunStatus | None, new: RunStatus) -> None:
    """IllegalTransition unless a run may move from `old` (None: a new run) to `new`."""
    if new not in TRANSITIONS.get(old, frozenset()):
        raise IllegalTransition(f"illegal run transition {old.value if old else 'new'} -> {new.value}")


def sql_list(statuses) -> str:
    """Statuses as an SQL list literal in declaration order, e.g. ('queued', 'waiting'): the
    partial index on active runs is used only for the very same list."""
    return "(" + ", ".join(f"'{s.value}'" for s in RunStatus if s in statuses) + ")"


class Trigger(StrEnum):
    SCHEDULE = "schedule"
    MANUAL = "manual"
    RETRY = "retry"
    DEPENDENCY = "dependency"
    CATCH_UP = "catch-up"
    RERUN = "rerun"
    REBOOT = "reboot"


NOTIFY_EVENTS = ("failure", "timeout", "blocked", "missed", "slow", "output", "recovered")


# --- instants ----------------------------------------------------------------------------

def utcnow() -> datetime:
    return datetime.now(UTC)


def to_iso(dt: datetime | None) -> str | None:
    return None if dt is None else dt.astimezone(UTC).isoformat()


def parse_iso(text: str | None) -> datetime | None:
    """Parse a stored ISO 8601 instant (always written with an offset)."""
    if text is None:
        return None
    dt = datetime.fromisoformat(text)
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


# --- ids, durations, sizes ---------------------------------------------------------------

_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def validate_job_id(job_id: str) -> str:
    if not job_id:
        raise InvalidJobId("invalid job id: it is empty")
    if not _ID_RE.fullmatch(job_id) or ".." in job_id:
        shown = job_id if job_id.isprintable() else repr(job_id)
        raise InvalidJobId(
            f"invalid job id {shown!r}: use 1-64 letters, digits, '_', '.', '-', "
            "starting with a letter or digit, without '..'")
    return job_id


_DURATION_RE = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s)?", re.ASCII)
_NUMBER_RE = re.compile(r"\d+(?:\.\d+)?", re.ASCII)


def parse_duration(text: str, what: str = "duration") -> float:
    """`30` (bare number = minutes), `90s`, `15m`, `2h`, `1d`, `1h30m` -> seconds, up to 100 years."""
    raw = str(text).strip().lower()
    shown = reprlib.repr(text)  # a 5000-digit number is shown shortened
    # float(), not int(): int() refuses more than 4300 digits; too big a float is inf (refused below)
    if _NUMBER_RE.fullmatch(raw):
        seconds = float(raw) * 60
    else:
        m = _DURATION_RE.fullmatch(raw)
        if not raw or not m or not any(m.groups()):
            raise InvalidDuration(
                f"invalid {what} {shown}: use minutes (30) or a duration like 90s, 15m, 2h, 1h30m")
        d, h, mi, s = (float(g or 0) for g in m.groups())
        seconds = d * 86400 + h * 3600 + mi * 60 + s
    if seconds <= 0:
        raise InvalidDuration(f"invalid {what} {shown}: it must be greater than zero")
    if seconds > MAX_DURATION:
        raise InvalidDuration(f"invalid {what} {shown}: it must be at most 100 years (36500d)")
    return seconds


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    whole = int(seconds)
    if whole != seconds:
        return f"{seconds:g}s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if whole >= size:
            parts.append(f"{whole // size}{unit}")
            whole %= size
    return "".join(parts) or "0s"


_SIZE_RE = re.compile(r"(\d+)\s*(b|k|kb|kib|m|mb|mib|g|gb|gib)?", re.ASCII)
_SIZE_UNITS = {None: 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def parse_size(text: str) -> int:
    """`10MB`, `512K`, `1G` or plain bytes, up to 1 TiB; units are binary (1 KB = 1024 bytes)."""
    m = _SIZE_RE.fullmatch(str(text).strip().lower())
    shown = reprlib.repr(text)
    if not m:
        raise InvalidOption(f"invalid size {shown}: use bytes or a size like 512K, 10MB, 1G")
    digits, unit = m.groups()
    # float(), not int(), as in parse_duration; exact for every whole number up to MAX_SIZE
    size = float(digits) * _SIZE_UNITS[unit[0] if unit else None]
    if size <= 0:
        raise InvalidOption(f"invalid size {shown}: it must be greater than zero")
    if size > MAX_SIZE:
        raise InvalidOption(f"invalid size {shown}: it must be at most 1 TiB (1024G)")
    return int(size)


def parse_notify(text: str) -> tuple[str, ...]:
    events = tuple(e.strip() for e in text.split(",") if e.strip())
    bad = [e for e in events if e not in NOTIFY_EVENTS]
    if bad:
        raise InvalidOption(f"unknown notify event {bad[0]!r}: choose from {', '.join(NOTIFY_EVENTS)}")
    return events


def parse_resources(text: str) -> dict[str, float]:
    """--resources cpu=2,mem=4GB -> {"cpu": 2.0, "mem": 4294967296.0}: a number, or a size (in
    bytes); what a run needs of the Dask workers' resources. '' or 'none' = nothing."""
    resources: dict[str, float] = {}
    for item in (i.strip() for i in text.split(",")):
        if not item or item.lower() == "none":
            continue
        name, sep, value = (p.strip() for p in item.partition("="))
        if not sep or not _ID_RE.fullmatch(name) or not value:
            raise InvalidOption(f"invalid resource {reprlib.repr(item)}: use NAME=AMOUNT, e.g. cpu=2,mem=4GB")
        amount = float(value) if _NUMBER_RE.fullmatch(value) else float(parse_size(value))
        if amount <= 0:
            raise InvalidOption(f"invalid resource {reprlib.repr(item)}: the amount must be greater than zero")
        resources[name] = amount
    return resources


def parse_cpu(text: str) -> float:
    """--cpu-max 0.5 (half a core), 2 (two cores) or 50% (half a core)."""
    value = str(text).strip()
    percent = value.endswith("%")
    number = value[:-1].strip() if percent else value
    if not _NUMBER_RE.fullmatch(number):
        raise InvalidOption(f"invalid CPU share {reprlib.repr(text)}: use a share of one core, e.g. 0.5, 2 or 50%")
    return float(number) / 100 if percent else float(number)


def parse_count(text: str, what: str) -> int:
    """An integer option given as text (so that 'none' can clear it on update)."""
    try:
        return int(str(text).strip())
    except ValueError:
        raise InvalidOption(f"invalid {what} {reprlib.repr(text)}: use a whole number") from None


def parse_channels(text: str) -> tuple[str, ...]:
    """--notify-to: channel names of config.toml's [notify.channels.NAME]; 'all' or '' = every one."""
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    if names in ((), ("all",), ("none",)):
        return ()
    bad = [n for n in names if not _ID_RE.fullmatch(n)]
    if bad:
        raise InvalidOption(f"invalid channel name {bad[0]!r} in --notify-to: use letters, digits, '_', '.', '-'")
    return names


# --- the job -----------------------------------------------------------------------------

class FrozenDict(dict):
    """A dict that refuses changes: the one empty `env` and `resources` all jobs without
    them share (a daemon holding 100,000 jobs would otherwise hold 200,000 empty dicts).
    Reads, equality, json and pickling behave as for the plain dict it equals."""

    __slots__ = ()

    def _read_only(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("a job's mapping is read-only: build a new dict")

    __setitem__ = __delitem__ = __ior__ = clear = pop = popitem = setdefault = update = _read_only

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(frozenset(self.items()))

    def __reduce__(self) -> tuple:
        return (type(self), (dict(self),))

    def __repr__(self) -> str:
        return dict.__repr__(self)


EMPTY: dict[str, Any] = FrozenDict()


@dataclass(frozen=True, slots=True)
class Job:
    id: str
    schedule: str
    command: tuple[str, ...]
    shell: bool = False
    timeout: float | None = None
    depends_on: tuple[str, ...] = ()
    retries: int = 0
    retry_delay: float = DEFAULT_RETRY_DELAY
    overlap: Overlap = Overlap.SKIP
    catch_up: CatchUp = CatchUp.LATEST
    priority: int = 0
    timezone: str | None = None
    start_at: str | None = None
    end_at: str | None = None
    cwd: str | None = None
    env: dict[str, str] = EMPTY  # read-only when shared; replace() the job to change it
    enabled: bool = True
    notify: tuple[str, ...] = ()
    notify_to: tuple[str, ...] = ()  # channel names; empty = every channel
    expected_duration: float | None = None
    max_output: int = DEFAULT_MAX_OUTPUT
    alert_output: int | None = None  # an `output` alert above this many bytes
    resources: dict[str, float] = EMPTY  # Dask worker resources a run needs
    worker: str | None = None  # the Dask worker a run must execute on
    user: str | None = None  # the account a run executes as (the daemon, root, drops to it)
    group: str | None = None  # its primary group instead of the user's own
    memory_max: int | None = None  # bytes; the run's cgroup memory.max (no swap beyond it)
    cpu_max: float | None = None  # share of one core; the run's cgroup cpu.max
    pids_max: int | None = None  # processes and threads at once; the run's cgroup pids.max
    nice: int | None = None  # -20..19, as nice(1)
    description: str = ""
    created_at: str | None = None
    source: str | None = None  # the pipeline file (absolute path) that applied the job

    def replace(self, **changes: Any) -> "Job":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        data = {name: getattr(self, name) for name in JOB_FIELDS}
        for key in ("command", "depends_on", "notify", "notify_to"):
            data[key] = list(data[key])
        data["overlap"] = self.overlap.value
        data["catch_up"] = self.catch_up.value
        data["env"] = dict(self.env)
        data["resources"] = dict(self.resources)
        return data

    def to_record(self) -> dict[str, Any]:
        """The stored form: fields that differ from their defaults (id, schedule, command always)."""
        full = self.to_dict()
        return {k: v for k, v in full.items() if k in ("id", "schedule", "command") or v != _DEFAULTS.get(k)}

    @classmethod
    def from_dict(cls, data: Any, strings: dict | None = None) -> "Job":
        """Build a Job from a stored record and validate it as CLI input is validated
        (`validate.validate`); a malformed record raises CorruptStore naming the field.
        `strings`: a table shared by the records of one load, so that values many jobs repeat
        (schedules, zones, directories, commands) are held once instead of once per job."""
        validate = _validate or _import_validate()
        try:
            if type(data) is not dict:
                raise TypeError(f"a job record must be an object, not {type(data).__name__}")
            if "id" not in data or "schedule" not in data or "command" not in data:
                raise TypeError(f"{next(k for k in ('id', 'schedule', 'command') if k not in data)} is required")
            kwargs = {k: v for k, v in data.items() if k in _FIELD_SET}
            for key in _LIST_FIELDS:
                if key in kwargs:
                    if type(kwargs[key]) is not list:
                        raise TypeError(f"{key} must be a list of strings")
                    kwargs[key] = tuple(kwargs[key])
            for key, members in _ENUM_FIELDS:
                if key in kwargs:
                    value = kwargs[key]
                    member = members.get(value) if type(value) is str else None
                    if member is None:
                        raise ValueError(f"invalid {key} {reprlib.repr(value)}: "
                                         f"choose from {', '.join(members)}")
                    kwargs[key] = member
            if strings is not None:
                _share(kwargs, strings)
            job = _Build(**kwargs)
            job.__class__ = cls  # the same slots: a Job, built without 27 object.__setattr__ calls
            return validate(job)
        except (TypeError, ValueError, CronSchedulerError) as exc:
            shown = reprlib.repr(data.get("id")) if type(data) is dict else "?"
            raise CorruptStore(f"invalid job record {shown}: {exc}") from None


JOB_FIELDS = tuple(f.name for f in dataclasses.fields(Job))
_FIELD_SET = frozenset(JOB_FIELDS)
_DEFAULTS = {k: v for k, v in Job(id="", schedule="", command=()).to_dict().items()}

_LIST_FIELDS = ("command", "depends_on", "notify", "notify_to")
_ENUM_FIELDS = (("overlap", {e.value: e for e in Overlap}), ("catch_up", {e.value: e for e in CatchUp}))
_SHARED_FIELDS = frozenset({"schedule", "timezone", "cwd", "source", "worker", "user", "group", "command",
                            "depends_on", "notify", "notify_to"})


_validate = None  # validate.validate, imported on first use (validate imports this module)


def _import_validate():
    global _validate
    from cron_scheduler.validate import validate
    _validate = validate
    return validate


def _share(kwargs: dict[str, Any], strings: dict) -> None:
    """Replace the repeated values of a record by the equal ones seen before in `strings`
    (strings, and tuples of strings with their items); other types are left to validate."""
    for key, value in kwargs.items():
        if key in _SHARED_FIELDS:
            if type(value) is str:
                kwargs[key] = strings.setdefault(value, value)
            elif type(value) is tuple:
                value = tuple([strings.setdefault(v, v) if type(v) is str else v for v in value])
                try:
                    kwargs[key] = strings.setdefault(value, value)
                except TypeError:  # an unhashable item: refused by validate
                    kwargs[key] = value


def _builder() -> type:
    """A plain class with the slots of Job, in the same order, and an __init__ that stores
    each field directly: `from_dict` builds with it and then makes the object a Job (same
    layout, so __class__ may be assigned). The frozen __init__ of a dataclass sets each field
    through object.__setattr__, six times slower. Defaults are Job's own."""
    params, lines, defaults = [], [], {}
    for f in dataclasses.fields(Job):
        if f.default_factory is not dataclasses.MISSING:  # one object shared by all jobs instead
            raise TypeError(f"Job.{f.name}: a default_factory is not supported by from_dict's builder")
        if f.default is dataclasses.MISSING:
            params.append(f.name)
        else:
            defaults[f"_d_{f.name}"] = f.default
            params.append(f"{f.name}=_d_{f.name}")
        lines.append(f"    self.{f.name} = {f.name}")
    namespace: dict[str, Any] = {}
    exec(f"def __init__(self, *, {', '.join(params)}):\n" + "\n".join(lines), defaults, namespace)
    return type("_Build", (), {"__slots__": Job.__slots__, "__init__": namespace["__init__"]})


_Build = _builder()
