"""The one decision of whether a job definition is valid.

`validate(job)` runs on every job the CLI is about to write (`jobs.job_from_options`) and on
every record read back from jobs.json (`Job.from_dict`): a hand-edited record passes exactly the
checks a CLI option does. `graph_errors(deps)` is the same for the catalogue as a whole (unknown
upstreams, self-dependencies, cycles). Both raise or report usage errors with one line naming
the field; the store turns them into a quarantined record.
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Any, Collection, Mapping

from cron_scheduler import schedule
from cron_scheduler.errors import InvalidOption
from cron_scheduler.models import (MAX_DURATION, MAX_SIZE, NOTIFY_EVENTS, UTC, CatchUp, FrozenDict, Job,
                                   Overlap, parse_channels, parse_resources, validate_job_id)

MIN_PRIORITY, MAX_PRIORITY = -1_000_000, 1_000_000
MAX_RETRIES = 100


def validate(job: Job) -> Job:
    """Check the type and range of every field of `job` and the rules between them; return
    it unchanged or raise a UsageError (InvalidOption, InvalidJobId, InvalidSchedule)."""
    _string(job.id, "id")
    validate_job_id(job.id)
    _string(job.schedule, "schedule")
    sched = schedule.parse(job.schedule, job.id, strict=True)
    _command(job.command, job.shell)
    _flag(job.shell, "shell")
    _flag(job.enabled, "enabled")
    for name in ("timeout", "expected_duration"):
        if getattr(job, name) is not None:
            _duration(getattr(job, name), name)
    _duration(job.retry_delay, "retry_delay")
    _integer(job.retries, "retries", 0, MAX_RETRIES)
    _integer(job.priority, "priority", MIN_PRIORITY, MAX_PRIORITY)
    _integer(job.max_output, "max_output", 1, MAX_SIZE)
    if type(job.overlap) is not Overlap:
        raise InvalidOption(f"invalid overlap {job.overlap!r}: choose from {', '.join(o.value for o in Overlap)}")
    if type(job.catch_up) is not CatchUp:
        raise InvalidOption(f"invalid catch_up {job.catch_up!r}: choose from {', '.join(c.value for c in CatchUp)}")
    if job.timezone is not None:
        _string(job.timezone, "timezone")
        schedule.get_zone(job.timezone)
    start, end = (_instant(getattr(job, name), name) for name in ("start_at", "end_at"))
    _instant(job.created_at, "created_at")
    if start and end and end <= start:
        raise InvalidOption("end_at (--end-at) must be later than start_at (--start-at)")
    if sched.kind is schedule.Kind.ONCE and start is None:
        raise InvalidOption("@once needs start_at (--start-at TIME: when to run)")
    if job.cwd is not None:
        _text(job.cwd, "cwd")
        if not job.cwd.startswith("/"):
            raise InvalidOption(f"invalid cwd {job.cwd!r}: it must be an absolute path")
    _env(job.env)
    if job.source is not None:
        _text(job.source, "source")
        if not job.source.startswith("/"):
            raise InvalidOption(f"invalid source {job.source!r}: it must be an absolute path")
    if type(job.depends_on) is not tuple:
        raise InvalidOption("depends_on must be a list of job ids")
    for dep in job.depends_on:
        _string(dep, "depends_on")
        validate_job_id(dep)
    if type(job.notify) is not tuple:
        raise InvalidOption("notify must be a list of events")
    for event in job.notify:
        if event not in NOTIFY_EVENTS:
            raise InvalidOption(f"unknown notify event {event!r}: choose from {', '.join(NOTIFY_EVENTS)}")
    if type(job.notify_to) is not tuple:
        raise InvalidOption("notify_to must be a list of channel names")
    for name in job.notify_to:
        _string(name, "notify_to")
        parse_channels(name)
    if job.alert_output is not None:
        _integer(job.alert_output, "alert_output", 1, MAX_SIZE)
    _resources(job.resources)
    if job.worker is not None:
        _text(job.worker, "worker")
    _string(job.description, "description")
    _run_as(job.user, job.group)
    _limits(job)
    return job


def graph_errors(deps: Mapping[str, Any], refused: Collection[str] = ()) -> dict[str, str]:
    """Jobs that cannot run because of their dependencies, id -> why: an unknown upstream, a
    dependency on itself, a cycle (every job on it), or an upstream that is itself refused.
    `deps`: id -> upstream ids, for the jobs that passed `validate`; `refused`: ids of the
    stored jobs that did not (known, but their downstream cannot run)."""
    errors: dict[str, str] = {}
    for job_id, ups in deps.items():
        for dep in ups:
            if dep == job_id:
                errors[job_id] = f"job {job_id!r} depends on itself"
            elif dep in refused:
                errors.setdefault(job_id, f"job {job_id!r} depends on job {dep!r}, which is invalid")
            elif dep not in deps:
                errors.setdefault(job_id, f"job {job_id!r} depends on unknown job {dep!r}")
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    for root in deps:
        if root in state:
            continue
        path, stack = [root], [iter(deps[root])]
        state[root] = 1
        while stack:
            dep = next(stack[-1], None)
            if dep is None:
                state[path.pop()] = 2
                stack.pop()
            elif dep not in deps or dep == path[-1]:
                continue
            elif state.get(dep) == 1:
                cycle = path[path.index(dep):] + [dep]
                for member in cycle:
                    errors.setdefault(member, "dependency cycle: " + " -> ".join(cycle))
            elif dep not in state:
                state[dep] = 1
                path.append(dep)
                stack.append(iter(deps[dep]))
    # downstream of a refused job would wait for it forever: refuse it too, naming the upstream
    changed = True
    while changed:
        changed = False
        for job_id, ups in deps.items():
            if job_id not in errors:
                bad = next((d for d in ups if d in errors), None)
                if bad is not None:
                    errors[job_id] = f"job {job_id!r} depends on job {bad!r}, which is invalid"
                    changed = True
    return errors


# --- one field each ----------------------------------------------------------------------

def _string(value: Any, name: str) -> None:
    if type(value) is not str:
        raise InvalidOption(f"{name} must be a string, not {_kind(value)}")


def _text(value: Any, name: str) -> None:
    _string(value, name)
    if not value:
        raise InvalidOption(f"{name} must not be empty")
    if "\0" in value:
        raise InvalidOption(f"{name} must not contain a NUL byte")


def _flag(value: Any, name: str) -> None:
    if type(value) is not bool:
        raise InvalidOption(f"{name} must be true or false, not {_kind(value)}")


def _integer(value: Any, name: str, low: int, high: int) -> None:
    if type(value) is not int:
        raise InvalidOption(f"{name} must be an integer, not {_kind(value)}")
    if not low <= value <= high:
        raise InvalidOption(f"invalid {name} {_short(value)}: use {low} to {high}")


def _duration(value: Any, name: str) -> None:
    """Seconds: a finite number in (0, 100 years]; NaN, infinities and booleans refused."""
    if type(value) not in (int, float):
        raise InvalidOption(f"{name} must be a number of seconds, not {_kind(value)}")
    if not math.isfinite(value) or not 0 < value <= MAX_DURATION:
        raise InvalidOption(f"invalid {name} {_short(value)}: use more than 0 and at most "
                            f"{MAX_DURATION:.0f} seconds (100 years)")


def _instant(value: Any, name: str) -> datetime | None:
    """An ISO 8601 instant that exists in UTC (years 1 to 9999 once its offset applies)."""
    if value is None:
        return None
    _string(value, name)
    try:
        dt = datetime.fromisoformat(value)
        return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).astimezone(UTC)
    except (ValueError, OverflowError):
        raise InvalidOption(f"invalid {name} {_short(value)}: use an ISO date-time within years "
                            "1 to 9999 in UTC") from None


def _command(command: Any, shell: Any) -> None:
    if type(command) is not tuple or not command:
        raise InvalidOption("command must be a non-empty list of strings")
    for arg in command:
        _string(arg, "command")
        if "\0" in arg:
            raise InvalidOption("command must not contain a NUL byte")
    if not command[0]:
        raise InvalidOption("command must not start with an empty string")
    if shell is True and len(command) != 1:
        raise InvalidOption("--shell takes the command as one string")


def _env(env: Any) -> None:
    if type(env) not in (dict, FrozenDict):  # FrozenDict: the shared empty default
        raise InvalidOption(f"env must be an object of strings, not {_kind(env)}")
    for key, value in env.items():
        _text(key, "env name")
        if "=" in key:
            raise InvalidOption(f"invalid env name {key!r}: it contains '='")
        _string(value, f"env {key}")
        if "\0" in value:
            raise InvalidOption(f"env {key} must not contain a NUL byte")


def _resources(resources: Any) -> None:
    """Dask worker resources: names as in --resources, finite amounts greater than zero."""
    if type(resources) not in (dict, FrozenDict):
        raise InvalidOption(f"resources must be an object of numbers, not {_kind(resources)}")
    for name, amount in resources.items():
        _string(name, "resource name")
        if type(amount) not in (int, float) or not math.isfinite(amount) or amount <= 0:
            raise InvalidOption(f"resource {name!r} must be a number greater than zero, not {amount!r}")
        parse_resources(f"{name}=1")  # the name itself


_ACCOUNT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}\$?", re.ASCII)  # as useradd(8) takes them
MAX_PIDS = 4_194_304  # the kernel's pid_max ceiling
MAX_CPU = 1024.0  # cores


def _run_as(user: Any, group: Any) -> None:
    """Account names as the system spells them; whether they exist is checked where a job is
    written (jobs.check_job) and where it runs, not here: a removed account must not make the
    record unreadable."""
    for value, name in ((user, "user"), (group, "group")):
        if value is not None:
            _string(value, name)
            if not _ACCOUNT_RE.fullmatch(value):
                raise InvalidOption(f"invalid {name} {_short(value)}: use an account name such as www-data")
    if group is not None and user is None:
        raise InvalidOption("group (--group) needs user (--user)")


def _limits(job: Job) -> None:
    if job.memory_max is not None:
        _integer(job.memory_max, "memory_max", 1, MAX_SIZE)
    if job.cpu_max is not None:
        if type(job.cpu_max) not in (int, float) or not math.isfinite(job.cpu_max) or not 0.01 <= job.cpu_max <= MAX_CPU:
            raise InvalidOption(f"invalid cpu_max {_short(job.cpu_max)}: use a share of one core from 0.01 to {MAX_CPU:g}")
    if job.pids_max is not None:
        _integer(job.pids_max, "pids_max", 1, MAX_PIDS)
    if job.nice is not None:
        _integer(job.nice, "nice", -20, 19)


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def printable_id(job_id: str) -> str:
    """A stored key as it may be printed in a log line or a table: quoted if it holds a newline
    or another control character (a hand-written key must not forge a log line)."""
    return job_id if job_id.isprintable() else repr(job_id)

