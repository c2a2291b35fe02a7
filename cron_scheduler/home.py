"""The home directory: where it is, what lives in it, its permissions and config.toml."""

from __future__ import annotations

import os
import stat
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cron_scheduler.errors import InsecureHome, InvalidOption, OperationalError


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
        """Like cron with an insecure crontab: refuse a home or store others may write."""
        for path in (self.root, self.jobs):
            try:
                insecure(path, path.stat().st_mode)
            except FileNotFoundError:
                continue

    def run_log(self, job_id: str, run_id: int) -> Path:
        return self.runs / job_id / f"{run_id}.log"


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


def load_config(home: Home) -> Config:
    """Read config.toml (optional). Unknown keys are an error, so typos do not pass silently."""
    try:
        with open(home.config_file, "rb") as fh:
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
    return config
