"""Job management service: what the CLI's add/update/remove/pause/resume/list/show do.

Every write validates what it changes (the job, its upstreams, the dependency graph reachable
from it) inside one store transaction, so bad input raises before anything is written; the
records it does not touch are neither decoded nor validated again.
"""

from __future__ import annotations

import os
import shlex
import shutil
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any

from cron_scheduler import cgroup, runas, schedule
from cron_scheduler.errors import (DependencyCycle, DuplicateJob, InvalidOption, LimitsUnavailable, MissingScript,
                                   UnknownAccount, UnknownDependency, UnknownJob)
from cron_scheduler.home import Home, load_config
from cron_scheduler.models import (CatchUp, Job, Overlap, parse_channels, parse_duration, parse_iso,
                                   parse_count, parse_cpu, parse_notify, parse_resources, parse_size, to_iso, utcnow,
                                   validate_job_id)
from cron_scheduler.store import Store
from cron_scheduler.validate import validate

CLEAR = ("", "none", "null")


# --- building jobs from user input -------------------------------------------------------

def job_from_options(job_id: str, opts: dict[str, Any], base: Job | None = None, *,
                     check_script: bool = True, default_zone: tzinfo | str | None = None) -> Job:
    """Turn CLI options (raw strings, None = not given) into a validated Job.

    With `base`, only the given options change it (update); without, defaults apply (add)."""
    validate_job_id(job_id)
    changes: dict[str, Any] = {}
    if opts.get("schedule") is not None:
        changes["schedule"] = " ".join(opts["schedule"].split())
    if opts.get("command"):
        changes["command"] = _command(opts["command"], opts.get("shell") or (base.shell if base else False),
                                      check_script)
    if opts.get("shell") is not None:
        changes["shell"] = bool(opts["shell"])
    for key, parse in (("timeout", parse_duration), ("expected_duration", parse_duration)):
        if opts.get(key) is not None:
            changes[key] = None if opts[key].lower() in CLEAR else parse(opts[key], key.replace("_", " "))
    if opts.get("retry_delay") is not None:
        changes["retry_delay"] = parse_duration(opts["retry_delay"], "retry delay")
    if opts.get("max_output") is not None:
        changes["max_output"] = parse_size(opts["max_output"])
    if opts.get("depends_on") is not None:
        deps = tuple(dict.fromkeys(d.strip() for d in opts["depends_on"].split(",") if d.strip()))
        for dep in deps:
            validate_job_id(dep)
        changes["depends_on"] = deps
    if opts.get("retries") is not None:
        changes["retries"] = opts["retries"]
    for key, enum in (("overlap", Overlap), ("catch_up", CatchUp)):
        if opts.get(key) is not None:
            changes[key] = enum(opts[key])
    if opts.get("priority") is not None:
        changes["priority"] = opts["priority"]
    if opts.get("timezone") is not None:
        changes["timezone"] = None if opts["timezone"].lower() in CLEAR else opts["timezone"]
        if changes["timezone"]:
            schedule.get_zone(changes["timezone"])
    if opts.get("cwd") is not None:
        changes["cwd"] = None if opts["cwd"].lower() in CLEAR else _directory(opts["cwd"], check_script)
    if opts.get("notify") is not None:
        changes["notify"] = parse_notify(opts["notify"])
    if opts.get("notify_to") is not None:
        changes["notify_to"] = parse_channels(opts["notify_to"])
    if opts.get("alert_output") is not None:
        changes["alert_output"] = None if opts["alert_output"].lower() in CLEAR else parse_size(opts["alert_output"])
    if opts.get("resources") is not None:
        changes["resources"] = parse_resources(opts["resources"])
    if opts.get("worker") is not None:
        changes["worker"] = None if opts["worker"].lower() in CLEAR else opts["worker"]
    for key, parse in _RUN_AS_OPTIONS:
        if opts.get(key) is not None:
            changes[key] = None if opts[key].strip().lower() in CLEAR else parse(opts[key].strip())
    if opts.get("description") is not None:
        changes["description"] = opts["description"]
    if opts.get("enabled") is not None:
        changes["enabled"] = opts["enabled"]
    env = dict(base.env) if base else {}
    for item in opts.get("env") or ():
        key, sep, value = item.partition("=")
        if not sep or not key or not key.replace("_", "a").isalnum() or key[0].isdigit():
            raise InvalidOption(f"invalid --env {item.split('=')[0]!r}: use NAME=VALUE")
        env[key] = value
    for key in opts.get("unset_env") or ():
        env.pop(key, None)
    if opts.get("env") or opts.get("unset_env"):
        changes["env"] = env

    if base is None:
        job = Job(id=job_id, schedule=changes.pop("schedule"), command=changes.pop("command"),
                  created_at=to_iso(utcnow()), **changes)
    else:
        job = base.replace(**changes)
    zone = zone_of(job, default_zone)
    for key in ("start_at", "end_at"):
        if opts.get(key) is not None:
            value = None if opts[key].lower() in CLEAR else _instant(opts[key], zone, key)
            job = job.replace(**{key: value})
    job = check_job(job)
    when_given = base is None or opts.get("schedule") is not None or opts.get("start_at") is not None
    if when_given and job.schedule.strip().lower() == "@once" and parse_iso(job.start_at) <= utcnow():
        # like at(1): a one-off time already past would never run
        raise InvalidOption(f"--start-at {job.start_at} is in the past: an @once job would never run")
    return job


_RUN_AS_OPTIONS = (("user", str), ("group", str), ("memory_max", parse_size), ("cpu_max", parse_cpu),
                   ("pids_max", lambda v: parse_count(v, "--pids-max")), ("nice", lambda v: parse_count(v, "--nice")))


def check_job(job: Job) -> Job:
    """The checks of every field and the rules between them: the same `validate` that every
    record read from jobs.json passes; then what this host must offer for it to run: its
    account, and cgroup v2 controllers for its limits (the daemon checks both again per run)."""
    validate(job)
    if job.user is not None:
        try:
            runas.account(job.user, job.group)
        except ValueError as exc:
            raise UnknownAccount(f"{exc} (--user/--group)") from None
    needed = [c for c, value in (("memory", job.memory_max), ("cpu", job.cpu_max), ("pids", job.pids_max))
              if value is not None]
    problem = cgroup.host_problem(needed) if needed else None
    if problem:
        raise LimitsUnavailable(f"{cgroup.OPTION[needed[0]]} needs cgroup v2: {problem}")
    return job


def _command(argv: tuple[str, ...] | list[str], shell: bool, check: bool) -> tuple[str, ...]:
    argv = tuple(argv)
    if shell:
        return (" ".join(argv),)
    script = argv[0]
    if "/" in script or os.path.exists(script) or script.endswith(".py"):
        path = Path(script).expanduser().absolute()
        if check and not path.is_file():
            raise MissingScript(f"script not found: {path} (use --no-check to add it anyway)")
        if check and not script.endswith(".py") and not os.access(path, os.X_OK):
            raise MissingScript(f"script is not executable: {path} (chmod +x it, or use --no-check)")
        return (str(path),) + argv[1:]
    if check and shutil.which(script) is None:
        raise MissingScript(f"command not found: {script!r} (use --no-check to add it anyway)")
    return argv


def _directory(path: str, check: bool) -> str:
    resolved = Path(path).expanduser().absolute()
    if check and not resolved.is_dir():
        raise InvalidOption(f"--cwd {path!r} is not a directory")
    return str(resolved)


def _instant(text: str, zone: tzinfo, what: str) -> str:
    """An option's ISO date-time as a UTC ISO string; without an offset it is read in `zone`
    (the job's zone, zone_of)."""
    try:
        dt = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidOption(f"invalid --{what.replace('_', '-')} {text!r}: use an ISO date-time "
                            "such as 2026-12-01T09:00 or 2026-12-01T09:00+01:00") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=zone)
    try:
        return to_iso(dt)
    except OverflowError:  # in UTC it would be before year 1 or after year 9999
        raise InvalidOption(f"invalid --{what.replace('_', '-')} {text!r}: out of range") from None


def parse_command_string(text: str) -> list[str]:
    try:
        argv = shlex.split(text)
    except ValueError as exc:
        raise InvalidOption(f"invalid --command: {exc}") from None
    if not argv:
        raise InvalidOption("invalid --command: it is empty")
    return argv


# --- dependency graph checks -------------------------------------------------------------

def check_graph(deps: dict[str, list[str]] | Any, roots: list[str] | None = None) -> None:
    """Unknown dependencies and cycles are refused at write time. `deps`: id -> upstream ids
    (a mapping or a JobMap). With `roots`, only what is reachable from them is checked: a
    cycle through a changed job must pass through its upstreams."""
    get = deps.depends_on if hasattr(deps, "depends_on") else deps.__getitem__
    roots = list(deps) if roots is None else roots
    for job_id in roots:
        for dep in get(job_id):
            if dep not in deps:
                raise UnknownDependency(f"job {job_id!r} depends on unknown job {dep!r}")
            if dep == job_id:
                raise DependencyCycle(f"job {job_id!r} depends on itself")
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    for root in roots:
        if root in state:
            continue
        stack = [(root, iter(get(root)))]
        path = [root]
        state[root] = 1
        while stack:
            node, remaining = stack[-1]
            dep = next(remaining, None)
            if dep is None:
                state[node] = 2
                stack.pop()
                path.pop()
            elif state.get(dep) == 1:
                cycle = path[path.index(dep):] + [dep]
                raise DependencyCycle("dependency cycle: " + " -> ".join(cycle))
            elif dep not in state:
                state[dep] = 1
                path.append(dep)
                stack.append((dep, iter(get(dep))))


def _check_upstreams(jobs: Any, job: Job) -> None:
    """A new dependency on a quarantined job would never run: refuse it when written."""
    for dep in job.depends_on:
        error = jobs.error(dep) if dep in jobs else None
        if error is not None:
            raise UnknownDependency(f"job {job.id!r} depends on {dep!r}, which is invalid: {error}")


# --- the service ---------------------------------------------------------------------

class JobService:
    def __init__(self, home: Home):
        self.home = home
        self.store = Store(home)

    def add(self, job: Job, replace: bool = False) -> Job:
        with self.store.transaction() as jobs:
            if job.id in jobs and not replace:
                raise DuplicateJob(job.id)
            if job.id in jobs and jobs.error(job.id) is None:  # a quarantined record is replaced whole
                job = job.replace(created_at=jobs[job.id].created_at)
            _check_upstreams(jobs, job)
            jobs[job.id] = job
            check_graph(jobs, roots=[job.id])
        return job

    def update(self, job_id: str, opts: dict[str, Any], check_script: bool = True) -> Job:
        with self.store.transaction() as jobs:
            base = self._get(jobs, job_id)
            job = job_from_options(job_id, opts, base, check_script=check_script,
                                   default_zone=self.default_zone())
            _check_upstreams(jobs, job)
            jobs[job_id] = job
            check_graph(jobs, roots=[job_id])
        return job

    def remove(self, job_ids: list[str], force: bool = False) -> list[str]:
        job_ids = list(dict.fromkeys(job_ids))  # `remove a a` removes a once
        with self.store.transaction() as jobs:
            for job_id in job_ids:
                if job_id not in jobs:  # a quarantined job can be removed too
                    raise UnknownJob(job_id)
                del jobs[job_id]
            users = {j: [d for d in jobs.depends_on(j) if d in job_ids] for j in jobs}
            users = {k: v for k, v in users.items() if v}
            if users and not force:
                name, deps = next(iter(users.items()))
                raise UnknownDependency(f"cannot remove {deps[0]!r}: job {name!r} depends on it "
                                        "(remove both, or use --force to drop the dependency)")
            for name in users:
                if jobs.error(name) is not None:
                    continue  # a quarantined record is kept as it was
                jobs[name] = jobs[name].replace(depends_on=tuple(d for d in jobs[name].depends_on
                                                                 if d not in job_ids))
        return job_ids

    def set_enabled(self, job_ids: list[str], enabled: bool) -> list[Job]:
        with self.store.transaction() as jobs:
            for job_id in job_ids:
                jobs[job_id] = self._get(jobs, job_id).replace(enabled=enabled)
            return [jobs[j] for j in job_ids]

    def get(self, job_id: str) -> Job:
        return self._get(self.store.load(), job_id)

    def require(self, job_ids: list[str]) -> None:
        """UnknownJob for the first id that is not in the store (one load for all)."""
        jobs = self.store.load()
        for job_id in job_ids:
            self._get(jobs, job_id)

    def all(self) -> dict[str, Job]:
        """The valid jobs (quarantined ones left out: see `catalogue`)."""
        return self.store.load().valid()[0]

    def catalogue(self) -> tuple[dict[str, Job], dict[str, str]]:
        """(valid jobs by id, quarantined jobs: id -> why), as the daemon sees them."""
        return self.store.load().valid()

    @staticmethod
    def _get(jobs: dict[str, Job], job_id: str) -> Job:
        try:
            return jobs[job_id]
        except KeyError:
            raise UnknownJob(job_id) from None

    def default_zone(self) -> tzinfo:
        return schedule.get_zone(load_config(self.home).timezone)


def zone_of(job: Job, default: tzinfo | str | None = None) -> tzinfo:
    """THE rule for the zone a job's schedule is read in, used by the daemon and every command:
    the job's own --tz, else the home's default `default` (config.toml `timezone`, as a name or
    already resolved), else the machine's zone (schedule.local_zone: /etc/localtime, never $TZ)."""
    if job.timezone:
        return schedule.get_zone(job.timezone)
    return default if isinstance(default, tzinfo) else schedule.get_zone(default)


def next_runs(job: Job, after: datetime, count: int, default_zone: tzinfo | str | None = None) -> list[datetime]:
    """The job's next `count` fire instants after `after`, in the zone zone_of decides."""
    sched = schedule.parse(job.schedule, job.id)
    return schedule.next_fires(sched, after, count, zone_of(job, default_zone),
                               anchor=parse_iso(job.created_at), start_at=parse_iso(job.start_at),
                               end_at=parse_iso(job.end_at))


def job_view(job: Job, next_run: datetime | None, downstream_ids: list[str] | None = None) -> dict[str, Any]:
    """The stable JSON shape of `show --json` / `list --json`."""
    data = job.to_dict()
    data["next_run"] = to_iso(next_run)
    data["downstream"] = sorted(downstream_ids or [])
    data["error"] = None  # why a quarantined job is not scheduled (views.invalid_view)
    return data
