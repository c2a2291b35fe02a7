"""Pipeline files: YAML <-> jobs, and the diff an `apply` makes (DESIGN.md section 8b).

A file holds `jobs:` (a mapping id -> job) and an optional `defaults:` block merged under every
job. A job's keys are those of `show --json`; durations may also be written as in the CLI
(`90s`, `1h30m`; a number is seconds, as in `show --json`) and sizes as `10MB`. Relative paths
(`cwd`, a script as the command's first word) are resolved against the file's directory.

Every job goes through the same checks as the CLI (`jobs.check_job` -> `validate.validate`),
dependencies through `jobs.check_graph`; an error names the file, the line and the job, and the
whole apply is one store transaction: all of the file or nothing.
"""

from __future__ import annotations

import difflib
import json
import os
import shlex
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, Callable

import yaml

from cron_scheduler import schedule
from cron_scheduler.errors import (CronSchedulerError, DependencyCycle, InvalidOption,
                                   UnknownDependency)
from cron_scheduler.home import Home
from cron_scheduler.jobs import (_check_upstreams, _command, _instant, check_graph, check_job,
                                 zone_of)
from cron_scheduler.models import (JOB_FIELDS, CatchUp, Job, Overlap, format_duration,
                                   parse_channels, parse_cpu, parse_duration, parse_notify, parse_resources,
                                   parse_size, to_iso, utcnow, validate_job_id)
from cron_scheduler.store import Store

# keys of `show --json` that describe the job, not its state: read from and written to files
FIELDS = tuple(k for k in JOB_FIELDS if k not in ("id", "created_at", "source"))
# the other keys of `show --json`: accepted (a pasted `show --json` applies) and ignored
READ_ONLY = ("id", "created_at", "source", "next_run", "downstream", "error")
DURATIONS = ("timeout", "expected_duration", "retry_delay")
SIZES = ("max_output", "alert_output", "memory_max")
TOP_LEVEL = ("jobs", "defaults")
HINTS = {"paused": "use enabled: false", "script": "use command", "args": "use command",
         "tz": "use timezone", "expect": "use expected_duration", "interval": "use timeout"}


class PipelineError(InvalidOption):
    """A pipeline file (or crontab) that cannot be applied: `FILE:LINE: job 'x': what`."""


@dataclass
class Entry:
    """One job of a file, with the line of its id and of each field it was given."""
    job: Job
    line: int
    lines: dict[str, int] = field(default_factory=dict)


@dataclass
class Pipeline:
    name: str                      # as shown in messages: the path as given, or <stdin>
    source: str | None             # absolute path remembered by the jobs; None for stdin
    entries: dict[str, Entry]

    def error(self, job_id: str | None, line: int | None, message: str) -> PipelineError:
        where = f"{self.name}:{line}" if line else self.name
        return PipelineError(f"{where}: job {job_id!r}: {message}" if job_id else f"{where}: {message}")

    def located(self, job_id: str, exc: Exception, key: str | None = None) -> PipelineError:
        entry = self.entries[job_id]
        line = entry.lines.get(key) if key else None
        return self.error(job_id, line or _field_line(entry, str(exc)), str(exc))


def _field_line(entry: Entry, message: str) -> int:
    """The line of the field an error message names (validate's messages name the field)."""
    for key in sorted(entry.lines, key=len, reverse=True):
        if key in message:
            return entry.lines[key]
    return entry.line


# --- reading a file ----------------------------------------------------------------------------

def read(path: str, *, check: bool = True, default_zone=None) -> Pipeline:
    """Read and convert the pipeline file `path` ('-' = stdin)."""
    if path == "-":
        import sys
        return parse(sys.stdin.read(), "<stdin>", Path.cwd(), None, check=check, default_zone=default_zone)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidOption(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    absolute = Path(path).expanduser().absolute()
    return parse(text, path, absolute.parent, os.path.normpath(absolute), check=check,
                 default_zone=default_zone)


def parse(text: str, name: str, base_dir: Path, source: str | None, *, check: bool = True,
          default_zone=None) -> Pipeline:
    """Turn a file's text into validated jobs; PipelineError names the line of the first problem."""
    pipe = Pipeline(name, source, {})
    loader = yaml.SafeLoader(text)
    try:
        return _parse(loader, pipe, base_dir, check, default_zone)
    except yaml.MarkedYAMLError as exc:  # syntax, or a value no safe loader builds (!!python/...)
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise pipe.error(None, line, f"not valid YAML: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise pipe.error(None, None, f"not valid YAML: {exc}") from None
    except RecursionError:
        raise pipe.error(None, None, "not valid YAML: nested too deep") from None
    finally:
        loader.dispose()


def _parse(loader, pipe: Pipeline, base_dir: Path, check: bool, default_zone) -> Pipeline:
    root = loader.get_single_node()
    if root is None:
        raise pipe.error(None, 1, "the file is empty: expected 'jobs:' (a mapping id -> job)")
    top = _mapping(loader, root, pipe, None, "the file", TOP_LEVEL)
    if "jobs" not in top:
        raise pipe.error(None, 1, "no 'jobs:' mapping (id -> job)")
    defaults = {}
    if "defaults" in top:
        defaults = _mapping(loader, top["defaults"][1], pipe, None, "defaults", FIELDS + READ_ONLY)
    jobs_node = top["jobs"][1]
    if _is_null(jobs_node):
        return pipe
    for job_id, (key_node, value_node) in _mapping(loader, jobs_node, pipe, None, "jobs", None).items():
        line = key_node.start_mark.line + 1
        try:
            validate_job_id(job_id)
        except CronSchedulerError as exc:
            raise pipe.error(None, line, str(exc)) from None
        fields = _mapping(loader, value_node, pipe, job_id, "its fields", FIELDS + READ_ONLY)
        merged = dict(defaults)
        if "env" in defaults and "env" in fields:
            merged["env"] = ("env-merge", defaults["env"], fields["env"])
        for key, pair in fields.items():
            if key != "env" or "env" not in defaults:
                merged[key] = pair
        if "id" in fields and str(loader.construct_object(fields["id"][1], deep=True)) != job_id:
            raise pipe.error(job_id, fields["id"][0].start_mark.line + 1, "its id differs from its key")
        entry = Entry(job=None, line=line)  # type: ignore[arg-type]
        pipe.entries[job_id] = entry
        entry.job = _build(loader, pipe, job_id, entry, merged, base_dir, check, default_zone)
    return pipe


def _is_null(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null"


def _node_kind(loader, node: yaml.Node) -> str:
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    return _kind(loader.construct_object(node)) if isinstance(node, yaml.ScalarNode) else "a mapping"


def _mapping(loader, node, pipe: Pipeline, job_id: str | None, what: str,
             allowed: tuple[str, ...] | None) -> dict[str, tuple[yaml.Node, yaml.Node]]:
    """key -> (key node, value node) of a mapping node; unknown or repeated keys are refused."""
    line = node.start_mark.line + 1
    if not isinstance(node, yaml.MappingNode):
        raise pipe.error(job_id, line, f"{what} must be a mapping of keys to values, not {_node_kind(loader, node)}")
    if node.tag != "tag:yaml.org,2002:map":
        raise pipe.error(job_id, line, f"not valid YAML: {what} has the tag {node.tag!r}, a safe loader refuses it")
    loader.flatten_mapping(node)  # YAML merge keys (<<: *anchor)
    out: dict[str, tuple[yaml.Node, yaml.Node]] = {}
    for key_node, value_node in node.value:
        key_line = key_node.start_mark.line + 1
        if not isinstance(key_node, yaml.ScalarNode):
            raise pipe.error(job_id, key_line, f"{what}: keys must be plain names")
        key = loader.construct_object(key_node)
        if isinstance(key, bool) or not isinstance(key, (str, int)):
            raise pipe.error(job_id, key_line, f"{what}: key {key_node.value!r} must be a name (quote it)")
        key = str(key)
        if allowed is not None and key not in allowed:
            hint = HINTS.get(key)
            if hint is None:
                close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
                hint = f"did you mean {close[0]!r}?" if close else None
            if hint is None and what == "the file":
                hint = "a file has 'jobs:' and optionally 'defaults:'"
            raise pipe.error(job_id, key_line, f"unknown {'key' if what == 'the file' else 'field'} {key!r}"
                             + (f" ({hint})" if hint else ""))
        if key in out:
            if job_id is None and what == "jobs":
                raise pipe.error(key, key_line, "defined twice")
            raise pipe.error(job_id, key_line, f"{what}: {key!r} given twice")
        out[key] = (key_node, value_node)
    return out


def _build(loader, pipe: Pipeline, job_id: str, entry: Entry, merged: dict, base_dir: Path,
           check: bool, default_zone) -> Job:
    values: dict[str, Any] = {}
    for key, pair in merged.items():
        if key in READ_ONLY:
            continue
        if pair[0] == "env-merge":  # the defaults' env under the job's, each checked at its line
            env: dict[str, str] = {}
            for key_node, value_node in pair[1:]:
                entry.lines[key] = key_node.start_mark.line + 1
                try:
                    env.update(_env(loader.construct_object(value_node, deep=True)))
                except CronSchedulerError as exc:
                    raise pipe.error(job_id, entry.lines[key], str(exc)) from None
            values[key] = env
            continue
        entry.lines[key] = pair[0].start_mark.line + 1
        values[key] = loader.construct_object(pair[1], deep=True)
    if "schedule" not in values:
        raise pipe.error(job_id, entry.line, "schedule is required")
    if "command" not in values:
        raise pipe.error(job_id, entry.line, "command is required")
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        try:
            kwargs[key] = CONVERT[key](value, values, base_dir, check)
        except CronSchedulerError as exc:
            raise pipe.error(job_id, entry.lines[key], str(exc)) from None
    instants = {k: kwargs.pop(k) for k in ("start_at", "end_at") if k in kwargs}
    try:
        job = Job(id=job_id, source=pipe.source, **kwargs)
        zone = zone_of(job, default_zone) if instants and any(instants.values()) else None
        for key, value in instants.items():
            if value is not None:
                try:
                    job = job.replace(**{key: _instant(value, zone, key)})
                except CronSchedulerError as exc:
                    raise pipe.error(job_id, entry.lines[key], str(exc).replace(f"--{key.replace('_', '-')}", key)) from None
        return check_job(job)
    except PipelineError:
        raise
    except CronSchedulerError as exc:
        raise pipe.located(job_id, exc) from None


# --- one converter per field: YAML value -> Job value (the same parsers as the CLI) ------------

def _kind(value: Any) -> str:
    return "null" if value is None else {"bool": "true/false", "str": "a string", "int": "a number",
                                         "float": "a number", "list": "a list",
                                         "dict": "a mapping"}.get(type(value).__name__, type(value).__name__)


def _word(value: Any, name: str) -> str:
    """A scalar as a string: numbers become their text; true/false and null are refused."""
    if type(value) is str:
        return value
    if type(value) in (int, float):
        return str(value)
    raise InvalidOption(f"{name} must be a string, not {_kind(value)} (quote it)")


def _string(value: Any, name: str, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if type(value) is not str:
        raise InvalidOption(f"{name} must be a string, not {_kind(value)}")
    return value


def _words(value: Any, name: str) -> tuple[str, ...]:
    """A list of strings, or one comma-separated string (as on the command line)."""
    if value is None:
        return ()
    if type(value) is str:
        return tuple(dict.fromkeys(w.strip() for w in value.split(",") if w.strip()))
    if type(value) is not list:
        raise InvalidOption(f"{name} must be a list, not {_kind(value)}")
    return tuple(dict.fromkeys(_word(w, name) for w in value))


def _flag(value: Any, name: str) -> bool:
    if type(value) is not bool:
        raise InvalidOption(f"{name} must be true or false, not {_kind(value)}")
    return value


def _integer(value: Any, name: str) -> int:
    if type(value) is not int:
        raise InvalidOption(f"{name} must be an integer, not {_kind(value)}")
    return value


def _duration(value: Any, name: str, optional: bool = False) -> float | None:
    """A number of seconds (as `show --json` writes it) or a CLI duration: 90s, 15m, 1h30m."""
    if value is None and optional:
        return None
    if type(value) in (int, float):
        return float(value)
    if type(value) is str:
        return parse_duration(value, name)
    raise InvalidOption(f"{name} must be a duration (90s, 15m, 1h30m) or seconds, not {_kind(value)}")


def _size(value: Any, name: str, optional: bool = False) -> int | None:
    if value is None and optional:
        return None
    if type(value) is int:
        return value
    if type(value) is str:
        return parse_size(value)
    raise InvalidOption(f"{name} must be a size (512K, 10MB) or bytes, not {_kind(value)}")


def _enum(enum, name: str) -> Callable:
    def convert(value: Any, *_: Any) -> Any:
        member = next((e for e in enum if e.value == value), None)
        if member is None:
            raise InvalidOption(f"invalid {name} {value!r}: choose from {', '.join(e.value for e in enum)}")
        return member
    return convert


def _resolve(path: str, base_dir: Path) -> str:
    return str(base_dir / Path(path).expanduser())


def _convert_command(value: Any, values: dict, base_dir: Path, check: bool) -> tuple[str, ...]:
    shell = values.get("shell") is True
    if type(value) is str:
        if shell:
            argv = [value]
        else:
            try:
                argv = shlex.split(value)
            except ValueError as exc:
                raise InvalidOption(f"invalid command: {exc}") from None
    elif type(value) is list:
        argv = [_word(w, "command") for w in value]
    else:
        raise InvalidOption(f"command must be a list of strings or a string, not {_kind(value)}")
    if not argv or not argv[0]:
        raise InvalidOption("command must not be empty")
    if shell and len(argv) != 1:
        raise InvalidOption("with shell: true, command is one string")
    if not shell and ("/" in argv[0] or argv[0].endswith(".py")) and not os.path.isabs(os.path.expanduser(argv[0])):
        argv[0] = _resolve(argv[0], base_dir)  # relative to the file, not to where apply runs
    return _command(argv, shell, check)


def _convert_cwd(value: Any, values: dict, base_dir: Path, check: bool) -> str | None:
    if _string(value, "cwd", optional=True) is None:
        return None
    path = os.path.normpath(_resolve(value, base_dir))
    if check and not os.path.isdir(path):
        raise InvalidOption(f"cwd {value!r} is not a directory ({path})")
    return path


def _env(value: Any) -> dict[str, str] | None:
    if value is None:
        return {}
    if type(value) is not dict:
        raise InvalidOption(f"env must be a mapping of names to strings, not {_kind(value)}")
    return {_word(k, "env name"): _word(v, f"env {k}") for k, v in value.items()}


def _resources(value: Any) -> dict[str, float]:
    """Dask worker resources: a mapping of names to amounts (a number, or a size such as 4GB),
    or one string as on the command line (`cpu=2,mem=4GB`)."""
    if value is None:
        return {}
    if type(value) is str:
        return parse_resources(value)
    if type(value) is not dict:
        raise InvalidOption(f"resources must be a mapping of names to amounts, not {_kind(value)}")
    return {_word(k, "resource name"): (float(v) if type(v) in (int, float) else float(parse_size(_word(v, k))))
            for k, v in value.items()}


def _cpu(value: Any) -> float | None:
    """A share of one core: a number (0.5), or a string as on the command line (50%)."""
    if value is None or type(value) is float:
        return value
    if type(value) is int:
        return float(value)
    return parse_cpu(_word(value, "cpu_max"))


def _instant_text(value: Any, name: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, (datetime, date)):  # YAML reads an unquoted timestamp as one
        return value.isoformat()
    return _string(value, name)


def _timezone(value: Any, *_: Any) -> str | None:
    if _string(value, "timezone", optional=True) is not None:
        schedule.get_zone(value)
    return value


def _schedule(value: Any, *_: Any) -> str:
    if type(value) is not str:
        raise InvalidOption(f"schedule must be a string, not {_kind(value)} "
                            "(quote it: a YAML value starting with '*' is an alias)")
    return " ".join(value.split())


CONVERT: dict[str, Callable[[Any, dict, Path, bool], Any]] = {
    "schedule": _schedule,
    "command": _convert_command,
    "shell": lambda v, *_: _flag(v, "shell"),
    "timeout": lambda v, *_: _duration(v, "timeout", optional=True),
    "depends_on": lambda v, *_: tuple(validate_job_id(d) for d in _words(v, "depends_on")),
    "retries": lambda v, *_: _integer(v, "retries"),
    "retry_delay": lambda v, *_: _duration(v, "retry_delay"),
    "overlap": _enum(Overlap, "overlap"),
    "catch_up": _enum(CatchUp, "catch_up"),
    "priority": lambda v, *_: _integer(v, "priority"),
    "timezone": _timezone,
    "start_at": lambda v, *_: _instant_text(v, "start_at"),
    "end_at": lambda v, *_: _instant_text(v, "end_at"),
    "cwd": _convert_cwd,
    "env": lambda v, *_: _env(v),
    "enabled": lambda v, *_: _flag(v, "enabled"),
    "notify": lambda v, *_: parse_notify(",".join(_words(v, "notify"))),
    "notify_to": lambda v, *_: parse_channels(",".join(_words(v, "notify_to"))),
    "expected_duration": lambda v, *_: _duration(v, "expected_duration", optional=True),
    "max_output": lambda v, *_: _size(v, "max_output"),
    "alert_output": lambda v, *_: _size(v, "alert_output", optional=True),
    "description": lambda v, *_: _string(v, "description", optional=True) or "",
    "resources": lambda v, *_: _resources(v),
    "worker": lambda v, *_: _string(v, "worker", optional=True),
    "user": lambda v, *_: _string(v, "user", optional=True),
    "group": lambda v, *_: _string(v, "group", optional=True),
    "memory_max": lambda v, *_: _size(v, "memory_max", optional=True),
    "cpu_max": lambda v, *_: _cpu(v),
    "pids_max": lambda v, *_: None if v is None else _integer(v, "pids_max"),
    "nice": lambda v, *_: None if v is None else _integer(v, "nice"),
}
assert set(CONVERT) == set(FIELDS), "every job field is expressible in a pipeline file"


# --- the diff and the one transaction ------------------------------------------------------------

@dataclass
class Change:
    kind: str                      # added, changed, removed, unchanged
    job_id: str
    fields: list[tuple[str, Any, Any]] = field(default_factory=list)


def diff_fields(old: Job, new: Job) -> list[tuple[str, Any, Any]]:
    a, b = old.to_dict(), new.to_dict()
    return [(k, a[k], b[k]) for k in a if k not in ("id", "created_at") and a[k] != b[k]]


def apply(home: Home, pipe: Pipeline, *, prune: bool = False, dry_run: bool = False) -> list[Change]:
    """Create/update the file's jobs (and with `prune` remove the ones it applied before and no
    longer lists) in one locked store transaction; with `dry_run` only compute the changes."""
    if prune and pipe.source is None:
        raise InvalidOption("--prune needs a file: jobs applied from stdin remember no file")
    store = Store(home)
    if dry_run:
        return _merge(store.load(), pipe, prune)
    with store.transaction() as jobs:
        return _merge(jobs, pipe, prune)


def _merge(jobs, pipe: Pipeline, prune: bool) -> list[Change]:
    changes: list[Change] = []
    now = to_iso(utcnow())
    for job_id, entry in pipe.entries.items():
        new = entry.job
        if job_id not in jobs:
            jobs[job_id] = new.replace(created_at=now)
            changes.append(Change("added", job_id))
        elif jobs.error(job_id) is not None:  # a quarantined record is replaced whole
            jobs[job_id] = new.replace(created_at=now)
            changes.append(Change("changed", job_id, [("record", "invalid", "replaced")]))
        else:
            old = jobs[job_id]
            new = new.replace(created_at=old.created_at,
                              source=old.source if pipe.source is None else new.source)
            fields = diff_fields(old, new)
            if fields:
                jobs[job_id] = new
            changes.append(Change("changed" if fields else "unchanged", job_id, fields))
        try:
            _check_upstreams(jobs, jobs[job_id])
        except CronSchedulerError as exc:
            raise pipe.located(job_id, exc, "depends_on") from None
    if prune:
        for job_id in list(jobs):
            record = jobs.raw(job_id)
            if job_id not in pipe.entries and type(record) is dict and record.get("source") == pipe.source:
                del jobs[job_id]
                changes.append(Change("removed", job_id))
    for job_id in pipe.entries:
        try:
            check_graph(jobs, roots=[job_id])
        except (UnknownDependency, DependencyCycle) as exc:
            raise pipe.located(job_id, exc, "depends_on") from None
    removed = {c.job_id for c in changes if c.kind == "removed"}
    for job_id in jobs:
        gone = [d for d in jobs.depends_on(job_id) if d in removed]
        if gone:
            raise pipe.error(None, None, f"--prune would remove {gone[0]!r}, but job {job_id!r} "
                                         "depends on it")
    return changes


def _shown(key: str, value: Any) -> str:
    if value is None:
        return "-"
    if key in DURATIONS:
        return format_duration(value)
    return value if type(value) is str and value and value.isprintable() else json.dumps(value, ensure_ascii=False)


def format_changes(changes: list[Change], dry_run: bool) -> list[str]:
    """`+ id` added, `~ id` changed (a line per field: old -> new), `- id` removed, then a summary."""
    lines: list[str] = []
    for change in changes:
        if change.kind == "added":
            lines.append(f"+ {change.job_id}")
        elif change.kind == "removed":
            lines.append(f"- {change.job_id}")
        elif change.kind == "changed":
            lines.append(f"~ {change.job_id}")
            lines += [f"    {k}: {_shown(k, a)} -> {_shown(k, b)}" for k, a, b in change.fields]
    counts = {kind: sum(c.kind == kind for c in changes) for kind in ("added", "changed", "removed", "unchanged")}
    if not any(counts[k] for k in ("added", "changed", "removed")):
        lines.append(f"no change ({counts['unchanged']} job{'' if counts['unchanged'] == 1 else 's'} unchanged)")
    else:
        summary = ", ".join(f"{n} {kind}" for kind, n in counts.items() if n)
        lines.append(f"dry run, nothing written: {summary}" if dry_run else f"applied: {summary}")
    return lines


# --- export ------------------------------------------------------------------------------------

def job_fields(job: Job) -> dict[str, Any]:
    """A job as its pipeline-file mapping: the fields that differ from their defaults, durations
    and sizes written as in the CLI when that is exact (`1h30m`, `10MB`)."""
    record = job.to_record()
    out: dict[str, Any] = {}
    for key in FIELDS:
        if key not in record:
            continue
        value = record[key]
        if key in DURATIONS and value is not None and float(value).is_integer():
            value = format_duration(value)
        elif key in SIZES and value is not None:
            value = _size_text(value)
        elif key == "command" and job.shell:
            value = value[0]
        out[key] = value
    return out


def _size_text(size: int) -> str | int:
    for unit, factor in (("GB", 1024**3), ("MB", 1024**2), ("KB", 1024)):
        if size % factor == 0:
            return f"{size // factor}{unit}"
    return size


class _Dumper(yaml.SafeDumper):
    """Strings holding a character YAML reads as a line break (NEL, LS, PS) or a control
    character are written double-quoted with escapes: plain or block style would not read back."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = '"' if any(c in "\x85\u2028\u2029" or not c.isprintable() for c in value if c != "\n") else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def export(jobs: dict[str, Job]) -> str:
    """The pipeline-file text of `jobs` (applying it changes nothing)."""
    data = {"jobs": {job_id: job_fields(job) for job_id, job in jobs.items()}}
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True,
                     default_flow_style=None, width=100)
