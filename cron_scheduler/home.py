"""The home directory: where it is, what lives in it, its permissions and config.toml."""

from __future__ import annotations

import os
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
        """Create the home (0700) if needed."""
        try:
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise OperationalError(f"cannot create home {self.root}: {exc.strerror}") from None
        return self

    def check_secure(self) -> None:
        """Like cron with an insecure crontab: refuse a home or store others may write, a home
        owned by another user, and a symbolic link at any file of the home (the home directory
        itself may be reached through one). Every open checks again (safefs)."""
        for path in (self.jobs, self.jobs_lock, self.log, self.runs, self.daemon_lock,
                     self.daemon_pid, self.config_file):
            if path.is_symlink():
                raise UnsafePath(f"refusing {path}: it is a symbolic link "
                                 "(files inside the home are never followed through links)")
        for path in (self.root, self.jobs):
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            mode = st.st_mode
            if path == self.root and st.st_uid != os.geteuid():
                raise InsecureHome(f"refusing home {path}: owned by uid {st.st_uid}, not by this user "
                                   f"(uid {os.geteuid()}); the daemon trusts only its own home")
            if mode & (stat.S_IWGRP | stat.S_IWOTH):
                raise InsecureHome(
                    f"refusing insecure {path}: writable by group or others "
                    f"(mode {stat.S_IMODE(mode):o}; fix with chmod go-w {path})")

    def run_log(self, job_id: str, run_id: int) -> Path:
        return self.runs / job_id / f"{run_id}.log"


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


def load_config(home: Home) -> Config:
    """Read config.toml (optional). Unknown keys are an error, so typos do not pass silently."""
    try:
        with safefs.read_file(home.root, home.config_file.name) as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        return Config()
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise InvalidOption(f"{home.config_file}: {exc}") from None
    known = Config.__dataclass_fields__
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise InvalidOption(f"{home.config_file}: unknown setting {unknown[0]!r}")
    try:
        config = Config(**data)
    except TypeError as exc:
        raise InvalidOption(f"{home.config_file}: {exc}") from None
    if not isinstance(config.max_workers, int) or config.max_workers < 1:
        raise InvalidOption(f"{home.config_file}: max_workers must be a positive integer")
    check_executor(config, str(home.config_file))
    from cron_scheduler.notify.config import parse_notify  # a bad [notify] block is a config error too
    parse_notify(config.notify, str(home.config_file))
    return config


def check_executor(config: Config, where: str) -> None:
    """executor is "local" or "dask"; "dask" needs the scheduler's address."""
    if config.executor not in ("local", "dask"):
        raise InvalidOption(f"{where}: executor must be 'local' or 'dask', not {config.executor!r}")
    if config.dask_scheduler is not None and not isinstance(config.dask_scheduler, str):
        raise InvalidOption(f"{where}: dask_scheduler must be an address like tcp://HOST:8786")
    if config.executor == "dask" and not config.dask_scheduler:
        raise InvalidOption(f"{where}: executor 'dask' needs dask_scheduler (e.g. tcp://HOST:8786)")
