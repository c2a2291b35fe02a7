"""Reading a crontab (user form, or the /etc/crontab and /etc/cron.d form with a user field)
into jobs, one per line, run as cron runs them (crontab(5), Debian's cron): through /bin/sh -c
(or $SHELL -c).

Environment lines (`NAME = value`: a name without blanks or '=', a value optionally quoted)
apply to the lines below them and go into the job's env as cron passes them: SHELL (default
/bin/sh) also picks the shell, CRON_TZ the job's time zone, MAILTO adds a note (or the alert
channel of that name); PATH defaults to cron's /usr/bin:/bin. In the command `\\%` is a `%`
and `\\\\` a `\\`; the first other `%` ends it and the rest is its stdin, each further `%` a
newline, and a newline at the end. A line cron accepts but never runs (a reversed range such
as `19-7`, an impossible date) is skipped with a warning; a line that cannot be converted is
reported with its number, never guessed.
"""

from __future__ import annotations

import os
import pwd
import re
import reprlib
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from cron_scheduler import schedule
from cron_scheduler.errors import CronSchedulerError, InvalidOption, NeverFires
from cron_scheduler.jobs import check_job
from cron_scheduler.models import Job, validate_job_id
from cron_scheduler.pipeline import Entry, Pipeline
from cron_scheduler.validate import validate

CRON_PATH = "/usr/bin:/bin"   # what cron gives a command when the crontab sets no PATH
CRON_SHELL = "/bin/sh"        # and SHELL
ALIASES = ("@reboot", "@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
NAMES = {"jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
         "sun", "mon", "tue", "wed", "thu", "fri", "sat"}
# cron's load_env: a name (quoted, or up to a blank or '='), blanks, '=', blanks, the value
_ENV_RE = re.compile(r"""(?:"([^"=]*)"|'([^'=]*)'|([^\s="'][^\s=]*))\s*=\s*""")
_ID_RE = re.compile(r"#\s*id:\s*(\S+)\s*")
_FIELD_RE = re.compile(r"[0-9A-Za-z*,/-]+")
# one pass over the text, a token at a time (linear: lines may be megabytes long)
_COMMAND_RE = re.compile(r"\\[\\%]|%|[^\\%]+|\\")   # in the command, \\ and \% are escapes
_STDIN_RE = re.compile(r"\\%|%|[^\\%]+|\\")           # in stdin, only \%
# words that are not the program a line runs, for its readable id
_KEYWORDS = frozenset("if then else elif fi while until do done in ! { } time exec".split())
# commands that guard or prepare the one a line runs: skipped up to the next ; && || |
_GUARDS = frozenset(("test", "[", "[[", "cd", "read", "true", "false", ":", "for", "case"))
_OPERATORS = frozenset("();<>|&")
_ASSIGNMENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=.*", re.DOTALL)
SLUG_SCAN = 1000  # characters of a command read for its id


@dataclass
class Result:
    pipeline: Pipeline
    problems: list[str] = field(default_factory=list)   # `FILE:N: cannot convert: why`
    notes: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)    # `FILE:N: ...`: what cron never runs, or ignores


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
            channels: tuple[str, ...] = (), default_zone=None,
            stored: Mapping[str, Any] | None = None) -> Result:
    """The jobs of a crontab's text. `stored`: the store's records by id, so that generated ids
    pass over the jobs of other crontabs (see _Ids)."""
    result = Result(Pipeline(name, source, {}))
    env: dict[str, str] = {"PATH": CRON_PATH, "SHELL": CRON_SHELL}
    mailto, zone = None, None
    pending_id: tuple[str, int] | None = None
    ids = _Ids(prefix, source, stored or {})
    me = _current_user()
    for number, raw in enumerate(text.split("\n"), 1):  # cron's lines end at newlines only
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

        variable = _env_line(line)
        if variable is not None:
            key, value = variable
            if not key:
                problem("an environment line needs a name before '='")
                continue
            env[key] = value
            if key == "MAILTO":
                mailto = value
            elif key == "CRON_TZ":
                zone = value or None
            continue
        given_id, pending_id = pending_id, None
        try:
            expr, user, command_text, ignored = _split(line, system)
        except NeverFires as exc:
            result.skipped.append(f"{name}:{number}: skipped, cron accepts it but never runs it: {exc}")
            continue
        except CronSchedulerError as exc:
            problem(str(exc))
            continue
        result.skipped += [f"{name}:{number}: ignored {what}: cron selects nothing for it" for what in ignored]
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
        shell = env["SHELL"] or CRON_SHELL
        argv = (command,) if shell == CRON_SHELL else (shell, "-c", command)
        try:
            job_id = ids.given(*given_id) if given_id else ids.generated(command_text, argv)
            job = validate(Job(id=job_id, schedule=expr, command=argv, shell=shell == CRON_SHELL,
                               env=dict(env), timezone=zone, notify=notify, notify_to=notify_to, user=run_as,
                               description="crontab: " + "; ".join(notes) if notes else "",
                               source=source))
            check_job(job)  # its user exists on this host
        except CronSchedulerError as exc:
            problem(str(exc))
            continue
        ids.used[job_id] = number
        result.pipeline.entries[job_id] = Entry(job, number, {})
    return result


def _env_line(line: str) -> tuple[str, str] | None:
    """(name, value) of an environment line as cron's load_env reads it, or None for a job line.
    A quoted value ends at its closing quote (only blanks may follow); an unquoted one is the
    rest of the line."""
    m = _ENV_RE.match(line)
    if not m:
        return None
    key = next(g for g in m.groups() if g is not None)
    value = line[m.end():]
    if value[:1] in ("'", '"'):
        end = value.find(value[0], 1)
        if end == -1 or value[end + 1:].strip():
            return None
        value = value[1:end]
    return key, value


def _split(line: str, system: bool) -> tuple[str, str | None, str, list[str]]:
    """(schedule, user or None, command, what cron ignores in the schedule) of a job line;
    InvalidSchedule or InvalidOption when it is not one, NeverFires when cron never runs it."""
    fields = 1 if line.startswith("@") else 5
    parts = line.split(None, fields + (1 if system else 0))
    if len(parts) < fields + (2 if system else 1):
        user = ", a user" if system else ""
        raise InvalidOption(f"expected a schedule{user} and a command" if fields == 1 else
                            f"expected 5 time fields{user} and a command")
    times = parts[:fields]
    user = parts[fields] if system else None
    command = parts[-1]
    if fields == 1:
        alias = times[0].lower()
        if alias not in ALIASES:
            raise InvalidOption(f"unknown schedule {times[0]!r}: cron knows {', '.join(ALIASES)}")
        return alias, user, command, []
    for part in times:
        if not _FIELD_RE.fullmatch(part) or any(w.lower() not in NAMES for w in re.findall(r"[A-Za-z]+", part)):
            raise InvalidOption(f"time field {reprlib.repr(part)} is not cron syntax (numbers, names, *, "
                                "ranges a-b, steps /n, lists)")
    expr, ignored = _without_reversed(times)
    schedule.parse(expr, strict=True)
    return expr, user, command, ignored


def _without_reversed(times: list[str]) -> tuple[str, list[str]]:
    """The time fields without their reversed ranges, which select nothing in cron (`19-7`:
    no hour), and those ranges; NeverFires when a whole field is reversed ranges."""
    kept, ignored = [], []
    for name, value in zip(schedule.FIELD_NAMES_5, times):
        parts = value.split(",")
        reversed_ = [p for p in parts if (ends := schedule.range_ends(p.partition("/")[0])) and ends[0] > ends[1]]
        if len(reversed_) == len(parts):
            raise NeverFires(f"reversed range {value!r} in the {name} field selects no value")
        kept.append(",".join(p for p in parts if p not in reversed_))
        ignored += [f"reversed range {p!r} in the {name} field" for p in reversed_]
    return " ".join(kept), ignored


def _percent(text: str) -> tuple[str, str | None]:
    r"""cron's `%`: in the command `\\` is `\` and `\%` is `%` (other backslashes stay); the first
    other `%` ends it. The rest is stdin: `\%` is `%`, each other `%` a newline, and cron ends
    it with a newline when it does not end with one. (command, stdin or None)."""
    command: list[str] = []
    for m in _COMMAND_RE.finditer(text):
        token = m.group()
        if token == "%":
            break
        command.append(token[1] if len(token) == 2 and token[0] == "\\" else token)
    else:
        return "".join(command), None
    stdin = "".join({"\\%": "%", "%": "\n"}.get(t, t) for t in _STDIN_RE.findall(text, m.end()))
    return "".join(command), stdin + "\n" if stdin and not stdin.endswith("\n") else stdin


class _Ids:
    """Job ids for the lines of one crontab: `# id: NAME` above a line, else a readable base
    numbered `-2`, `-3`... in the file's order: for an /etc/cron.d file its name, else the
    program the line runs. A generated id passes over a stored job that is not this crontab's
    (another file's, or one not imported), so two crontabs never change each other's jobs and
    re-importing one updates its own. A job is this crontab's when it remembers this file; for
    stdin, which names no file, when it remembers none and runs the same command."""

    def __init__(self, prefix: str, source: str | None, stored: Mapping[str, Any]):
        self.prefix, self.source, self.stored = prefix, source, stored
        self.used: dict[str, int] = {}   # id -> its line
        self.next: dict[str, int] = {}   # base -> the next number to try
        in_cron_d = source is not None and Path(source).parent.name == "cron.d"
        self.file_base = _clean(os.path.basename(source)) if in_cron_d else None

    def given(self, name: str, line: int) -> str:
        job_id = self.prefix + name
        try:
            validate_job_id(job_id)
        except CronSchedulerError as exc:
            raise InvalidOption(f"{exc} (from the '# id:' comment on line {line})") from None
        if job_id in self.used:
            raise InvalidOption(f"job id {job_id!r} is already used on line {self.used[job_id]}")
        owner = self._owner(job_id)
        if owner not in (None, self.source):
            raise InvalidOption(f"job id {job_id!r} (from the '# id:' comment on line {line}) is a job of {owner}")
        return job_id

    def generated(self, command: str, argv: tuple[str, ...]) -> str:
        base = self.prefix + (self.file_base or _slug(command))
        n = self.next.get(base, 1)
        while (job_id := base if n == 1 else f"{base}-{n}") in self.used or not self._ours(job_id, argv):
            n += 1
        self.next[base] = n + 1
        try:
            return validate_job_id(job_id)
        except CronSchedulerError as exc:
            raise InvalidOption(f"{exc} (add a '# id: NAME' comment above the line)") from None

    def _owner(self, job_id: str) -> str | None:
        record = self.stored.get(job_id)
        source = record.get("source") if type(record) is dict else None
        return source if type(source) is str else None

    def _ours(self, job_id: str, argv: tuple[str, ...]) -> bool:
        record = self.stored.get(job_id)
        if record is None:
            return True
        if self.source is not None:
            return self._owner(job_id) == self.source
        return self._owner(job_id) is None and type(record) is dict and record.get("command") == list(argv)


def _slug(command: str) -> str:
    """The id base for a line of a user crontab: the base name of the program it runs, past
    shell keywords (`if`, `!`, `{`), assignments (`A=1 cmd`), redirections and the commands
    that guard or prepare it (`test -x F ||`, `[ ... ] &&`, `cd DIR &&`). Only the start of
    the command is read."""
    lexer = shlex.shlex(command[:SLUG_SCAN], posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    try:
        words = list(lexer)
    except ValueError:  # an unclosed quote, or one cut at SLUG_SCAN
        words = command[:SLUG_SCAN].split()
    guarded = redirected = False
    for word in words:
        if set(word) <= _OPERATORS:
            redirected = "<" in word or ">" in word  # then a file name follows
            guarded = guarded and redirected
        elif redirected:
            redirected = False
        elif not (guarded or word in _KEYWORDS or _ASSIGNMENT_RE.fullmatch(word)):
            if word in _GUARDS:
                guarded = True
            else:
                return _clean(os.path.basename(word)) or "job"
    return "job"


def _clean(name: str) -> str:
    """A name as the start of a job id: without its extension, other characters as '-'."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", name.rsplit(".", 1)[0]).strip("-_")[:40].lower()


def _current_user() -> str:
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return str(os.getuid())
