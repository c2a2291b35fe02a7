"""Reading a crontab (user form, or the /etc/crontab and /etc/cron.d form with a user field)
into jobs, one per line, run as cron runs them: through /bin/sh -c (or $SHELL -c).

Environment lines apply to the lines below them (as in Vixie cron): PATH and other names go
into the job's env (PATH defaults to cron's /usr/bin:/bin), SHELL picks the shell, CRON_TZ the
job's time zone, MAILTO a note in the description (or the alert channel of that name). An
unescaped `%` ends the command; the rest is its stdin, each further `%` a newline. A line that
cannot be converted is reported with its number, never guessed.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from cron_scheduler import schedule
from cron_scheduler.errors import CronSchedulerError, InvalidOption
from cron_scheduler.jobs import check_job
from cron_scheduler.models import Job, validate_job_id
from cron_scheduler.pipeline import Entry, Pipeline
from cron_scheduler.validate import validate

CRON_PATH = "/usr/bin:/bin"   # what cron gives a command when the crontab sets no PATH
ALIASES = ("@reboot", "@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
NAMES = {"jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
         "sun", "mon", "tue", "wed", "thu", "fri", "sat"}
_ENV_RE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)")
_ID_RE = re.compile(r"#\s*id:\s*(\S+)\s*")
_FIELD_RE = re.compile(r"[0-9A-Za-z*,/-]+")


@dataclass
class Result:
    pipeline: Pipeline
    problems: list[str] = field(default_factory=list)   # `FILE:N: cannot convert: why`
    notes: list[str] = field(default_factory=list)


def read(path: str) -> tuple[str, str, str | None]:
    """(text, name for messages, absolute path or None for stdin) of a crontab ('-' = stdin)."""
    if path == "-":
        import sys
        return sys.stdin.read(), "<stdin>", None
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidOption(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    return text, path, os.path.normpath(Path(path).expanduser().absolute())


def convert(text: str, name: str, source: str | None, *, system: bool = False, prefix: str = "",
            channels: tuple[str, ...] = (), default_zone=None) -> Result:
    result = Result(Pipeline(name, source, {}))
    env: dict[str, str] = {"PATH": CRON_PATH}
    shell, mailto, zone = "/bin/sh", None, None
    pending_id: tuple[str, int] | None = None
    seen: dict[str, int] = {}
    me = _current_user()
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            m = _ID_RE.fullmatch(line)
            if m:
                pending_id = (m.group(1), number)
            continue

        def problem(why: str) -> None:
            result.problems.append(f"{name}:{number}: cannot convert: {why}")

        m = _ENV_RE.fullmatch(line)
        if m:
            key, value = m.group(1), _unquote(m.group(2).strip())
            if key == "SHELL":
                shell = value or "/bin/sh"
            elif key == "MAILTO":
                mailto = value
            elif key == "CRON_TZ":
                zone = value or None
            else:
                env[key] = value
            continue
        given_id, pending_id = pending_id, None
        parsed = _split(line, system)
        if isinstance(parsed, str):
            problem(parsed)
            continue
        expr, user, command_text = parsed
        command, stdin = _percent(command_text)
        if not command.strip():
            problem("the command is empty")
            continue
        if stdin is not None:  # cron feeds the text after '%' to the command's stdin
            command = f"printf '%s' {shlex.quote(stdin)} | (\n{command}\n)"
        notes = []
        run_as = user if user is not None and user != me else None  # runs as that user (runas.py)
        notify, notify_to = (), ()
        if mailto:
            channel = next((c for c in (mailto, mailto.split("@")[0]) if c in channels), None)
            if channel:
                notify, notify_to = ("failure",), (channel,)
            notes.append(f"MAILTO={mailto} (cron mailed its output there)")
        argv = (command,) if shell == "/bin/sh" else (shell, "-c", command)
        job_id = _job_id(given_id, prefix, expr, command_text, seen)
        if job_id.startswith("!"):
            problem(job_id[1:])
            continue
        try:
            job = validate(Job(id=job_id, schedule=expr, command=argv, shell=shell == "/bin/sh",
                               env=dict(env), timezone=zone, notify=notify, notify_to=notify_to, user=run_as,
                               description="crontab: " + "; ".join(notes) if notes else "",
                               source=source))
            check_job(job)  # its user exists on this host
        except CronSchedulerError as exc:
            problem(str(exc))
            continue
        seen[job_id] = number
        result.pipeline.entries[job_id] = Entry(job, number, {})
    return result


def _split(line: str, system: bool) -> tuple[str, str | None, str] | str:
    """(schedule, user or None, command) of a job line, or why it is not one."""
    fields = 1 if line.startswith("@") else 5
    parts = line.split(None, fields + (1 if system else 0))
    if len(parts) < fields + (2 if system else 1):
        what = "a schedule" + (", a user" if system else "") + " and a command"
        return f"expected {what}" if fields == 1 else f"expected 5 time fields{', a user' if system else ''} and a command"
    times = parts[:fields]
    user = parts[fields] if system else None
    command = parts[-1]
    if fields == 1:
        alias = times[0].lower()
        if alias not in ALIASES:
            return f"unknown schedule {times[0]!r}: cron knows {', '.join(ALIASES)}"
        return alias, user, command
    for part in times:
        if not _FIELD_RE.fullmatch(part) or any(w.lower() not in NAMES for w in re.findall(r"[A-Za-z]+", part)):
            return f"time field {part!r} is not cron syntax (numbers, names, *, ranges a-b, steps /n, lists)"
    try:
        schedule.parse(" ".join(times), strict=True)
    except CronSchedulerError as exc:
        return str(exc)
    return " ".join(times), user, command


def _percent(text: str) -> tuple[str, str | None]:
    """cron's `%`: the first unescaped one ends the command, the rest is stdin with each
    unescaped `%` a newline; `\\%` is a literal `%` (other backslashes stay)."""
    parts, current, i = [], [], 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text) and text[i + 1] == "%":
            current.append("%")
            i += 2
            continue
        if ch == "%":
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    parts.append("".join(current))
    return (parts[0], None) if len(parts) == 1 else (parts[0], "\n".join(parts[1:]))


def _job_id(given: tuple[str, int] | None, prefix: str, expr: str, command: str,
            seen: dict[str, int]) -> str:
    """`# id: NAME` above the line, else a slug of the command and a hash of it (stable across
    re-imports of the same line; the schedule joins the hash when two lines share a command).
    A string starting with '!' is why no id can be given."""
    if given is not None:
        job_id = prefix + given[0]
        try:
            validate_job_id(job_id)
        except CronSchedulerError as exc:
            return f"!{exc} (from the '# id:' comment on line {given[1]})"
        if job_id in seen:
            return f"!job id {job_id!r} is already used on line {seen[job_id]}"
        return job_id
    slug = _slug(command)
    for material in (command, expr + "\n" + command):
        digest = hashlib.sha1(material.encode()).hexdigest()[:8]
        job_id = f"{prefix}{slug}-{digest}"
        if job_id not in seen:
            break
    else:
        return f"!same schedule and command as line {seen[job_id]}"
    try:
        return validate_job_id(job_id)
    except CronSchedulerError as exc:
        return f"!{exc} (add a '# id: NAME' comment above the line)"


def _slug(command: str) -> str:
    """A readable start for a generated id: the base name of the first word that is not `cd DIR &&`."""
    try:
        words = shlex.split(command, comments=True)
    except ValueError:
        words = command.split()
    while words:
        if len(words) >= 3 and words[0] == "cd" and words[2] in ("&&", ";"):
            words = words[3:]              # cd DIR && CMD
        elif words[0] in ("test", "[", "{", "(") and any(w in ("||", "&&") for w in words):
            words = words[[w in ("||", "&&") for w in words].index(True) + 1:]  # test -x CMD || CMD
        elif words[0] in ("{", "("):
            words = words[1:]
        else:
            break
    first = os.path.basename(words[0]) if words else "job"
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", first.rsplit(".", 1)[0]).strip("-_")[:40]
    return slug.lower() or "job"


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def _current_user() -> str:
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return str(os.getuid())
