"""The home directory: where it is, what lives in it, its permissions and config.toml."""

from __future__ import annotations

import math
import os
import pwd
import stat
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cron_scheduler import safefs
from cron_scheduler.errors import InsecureHome, InvalidOption, OperationalError, UnsafePath


def resolve_home(explicit: str | os.PathLike | None = None) -> Path:
    """`--home` > $CRON_SCHEDULER_HOME > $XDG_STATE_HOME/cron-scheduler > ~/.local/state/cron-scheduler."""
    if explicit:
        return Path(explicit).expanduser().absolute()
    env = os.environ.get("CRON_SCHEDULER_HOME")
    if env:
        return Path(env).expanduser().absolute()
    xdg = os.environ.get("XDG_STATE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "state"
    return (base / "cron-scheduler").absolute()


@dataclass(frozen=True)
class Home:
    root: Path

    @classmethod
    def at(cls, explicit: str | os.PathLike | None = None) -> "Home":
        return cls(resolve_home(explicit))

    jobs = property(lambda self: self.root / "jobs.json")
    jobs_lock = property(lambda self: self.root / "jobs.json.lock")
    state_db = property(lambda self: self.root / "state.db")
    log = property(lambda self: self.root / "scheduler.log")
    runs = property(lambda self: self.root / "runs")
    daemon_lock = property(lambda self: self.root / "daemon.lock")
    daemon_pid = property(lambda self: self.root / "daemon.pid")
    config_file = property(lambda self: self.root / "config.toml")

    def ensure(self) -> "Home":
        """Create the home (0700) if needed; a home of another user is refused before anything
        is written into it (check_owner)."""
        try:
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise OperationalError(f"cannot create home {self.root}: {exc.strerror}") from None
        self.check_owner()
        return self

    def check_owner(self) -> None:
        """Only the home's owner writes it: a file root creates in a service user's home
        (scheduler.log, jobs.json, state.db) is one that user's daemon cannot open. The
        message names the user to run as."""
        try:
            uid = self.root.stat().st_uid
        except FileNotFoundError:
            return
        if uid != os.geteuid():
            owner, me = _user(uid), _user(os.geteuid())
            raise InsecureHome(f"refusing home {self.root}: owned by uid {uid} ({owner}), not by this user "
                               f"(uid {os.geteuid()}, {me}); run as its owner, e.g. sudo -u {owner} "
                               "cron-scheduler ...")

    def check_secure(self) -> None:
        """Like cron with an insecure crontab: refuse a home or store others may write, a home
        owned by another user, and a symbolic link at any file of the home (the home directory
        itself may be reached through one). Every open checks again (safefs)."""
        for path in (self.jobs, self.jobs_lock, self.log, self.runs, self.daemon_lock,
                     self.daemon_pid, self.config_file):
            if path.is_symlink():
                raise UnsafePath(f"refusing {path}: it is a symbolic link "
                                 "(files inside the home are never followed through links)")
        self.check_owner()
        for path in (self.root, self.jobs):
            try:
                insecure(path, path.stat().st_mode)
            except FileNotFoundError:
                continue

    def run_log(self, job_id: str, run_id: int) -> Path:
        return self.runs / job_id / f"{run_id}.log"


def _user(uid: int) -> str:
    """The user name of `uid` (the uid itself when it has none)."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def insecure(path: Path, mode: int) -> None:
    """InsecureHome if `mode` (of `path`) lets group or others write it."""
    if mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise InsecureHome(
            f"refusing insecure {path}: writable by group or others "
            f"(mode {stat.S_IMODE(mode):o}; fix with chmod go-w {path})")


@dataclass(frozen=True)
class Config:
    max_workers: int = 10
    timezone: str | None = None
    kill_grace: float = 10.0
    shutdown_grace: float = 30.0
    retention_runs: int = 1000
    log_max_bytes: int = 5 * 1024 * 1024
    log_backups: int = 5
    notify: dict[str, Any] = field(default_factory=dict)
    executor: str = "local"  # where runs execute: "local" (this host) or "dask" (a Dask cluster)
    dask_scheduler: str | None = None  # the Dask scheduler's address, e.g. tcp://HOST:8786

    @property
    def channels(self) -> set[str]:
        """The names of the alert channels ([notify.channels.NAME])."""
        return set(self.notify.get("channels", {}))


MAX_WORKERS = 1000
MAX_GRACE = 86400.0  # one day between SIGTERM and SIGKILL is already far too long
MAX_RETENTION = 10_000_000
MAX_LOG_BYTES = 1024**4
MAX_LOG_BACKUPS = 1000


def load_config(home: Home) -> Config:
    """Read config.toml (optional). Every key is type- and range-checked, and unknown keys are
    an error, so typos do not pass silently: InvalidOption (exit 2) naming the file and key."""
    where = home.config_file
    try:
        with safefs.read_file(home.root, home.config_file.name) as fh:
            data = tomllib.loads(fh.read().decode("utf-8"))
    except FileNotFoundError:
        return Config()
    except UnicodeDecodeError as exc:
        raise InvalidOption(f"{where}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise InvalidOption(f"{where}: cannot read it: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise InvalidOption(f"{where}: not valid TOML: {exc}") from None
    except RecursionError:
        raise InvalidOption(f"{where}: not valid TOML: nested too deep") from None
    known = Config.__dataclass_fields__
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise InvalidOption(f"{where}: unknown setting {unknown[0]!r}")
    for key, value in data.items():
        problem = _CHECKS[key](value)
        if problem:
            raise InvalidOption(f"{where}: {key} {problem}, not {_shown(value)}")
    from cron_scheduler.notify.config import parse_notify  # a bad [notify] block is a config error too
    parse_notify(data.get("notify", {}), str(where))
    config = Config(**data)
    check_executor(config, str(where))
    return config


def _int(low: int, high: int):
    def check(value: Any) -> str | None:  # type(): a boolean is not a number
        if type(value) is not int or not low <= value <= high:
            return f"must be a whole number from {low} to {high}"
        return None
    return check


def _seconds(value: Any) -> str | None:
    if type(value) not in (int, float) or not math.isfinite(value) or not 0 <= value <= MAX_GRACE:
        return f"must be a number of seconds from 0 to {MAX_GRACE:.0f}"
    return None


def _zone(value: Any) -> str | None:
    if type(value) is not str or not value:
        return "must be an IANA time zone name such as \"Europe/Berlin\""
    from cron_scheduler.schedule import get_zone
    try:
        get_zone(value)
    except InvalidOption:
        return "must be an IANA time zone name such as \"Europe/Berlin\""
    return None


def _table(value: Any) -> str | None:
    return None if type(value) is dict else "must be a table ([notify] ...)"


_CHECKS = {
    "max_workers": _int(1, MAX_WORKERS),
    "timezone": _zone,
    "kill_grace": _seconds,
    "shutdown_grace": _seconds,
    "retention_runs": _int(1, MAX_RETENTION),
    "log_max_bytes": _int(0, MAX_LOG_BYTES),
    "log_backups": _int(0, MAX_LOG_BACKUPS),
    "notify": _table,
    "executor": lambda v: None if v in ("local", "dask") else "must be 'local' or 'dask'",
    "dask_scheduler": lambda v: None if type(v) is str and v else "must be an address like tcp://HOST:8786",
}


def _shown(value: Any) -> str:
    text = repr(value) if not isinstance(value, (dict, list)) else type(value).__name__
    text = {"True": "true", "False": "false"}.get(text, text)
    return text if len(text) <= 40 else text[:37] + "..."


def check_executor(config: Config, where: str) -> None:
    """executor is "local" or "dask"; "dask" needs the scheduler's address."""
    problem = _CHECKS["executor"](config.executor)
    if problem:
        raise InvalidOption(f"{where}: executor {problem}, not {_shown(config.executor)}")
    if config.executor == "dask" and not config.dask_scheduler:
        raise InvalidOption(f"{where}: executor 'dask' needs dask_scheduler (e.g. tcp://HOST:8786)")
