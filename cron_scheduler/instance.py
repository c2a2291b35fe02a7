"""Single daemon instance per home: an flock on daemon.lock plus daemon.pid for humans, and
daemon.info (JSON: how the running daemon works, e.g. its kill method) for `status`."""

from __future__ import annotations

import fcntl
import json
import os

from cron_scheduler.errors import DaemonAlreadyRunning
from cron_scheduler.home import Home


class InstanceLock:
    def __init__(self, home: Home):
        self.home = home
        self.fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.home.daemon_lock, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise DaemonAlreadyRunning(
                f"already running (pid {daemon_pid(self.home) or '?'}) on home {self.home.root}") from None
        self.fd = fd
        tmp = self.home.daemon_pid.with_suffix(".pid.tmp")
        tmp.write_text(f"{os.getpid()}\n")
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.home.daemon_pid)

    def release(self) -> None:
        if self.fd is None:
            return
        for path in (self.home.daemon_pid, daemon_info_path(self.home)):
            try:
                path.unlink()
            except FileNotFoundError:
                pass
        os.close(self.fd)
        self.fd = None


def daemon_pid(home: Home) -> int | None:
    """The pid of the daemon holding `home`, or None when no daemon holds it."""
    try:
        fd = os.open(home.daemon_lock, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return None  # we could take it: nobody holds it
    except BlockingIOError:
        try:
            return int(home.daemon_pid.read_text().strip())
        except (OSError, ValueError):
            return -1
    finally:
        os.close(fd)


def daemon_info_path(home: Home):
    return home.root / "daemon.info"


def write_daemon_info(home: Home, info: dict) -> None:
    """Replace daemon.info (0600; a link planted at its temp name is removed, never followed)."""
    path = daemon_info_path(home)
    tmp = path.with_suffix(".info.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(info, f)
        f.write("\n")
    os.replace(tmp, path)


def read_daemon_info(home: Home) -> dict:
    """What the running daemon wrote in daemon.info; {} if absent or unreadable."""
    try:
        fd = os.open(daemon_info_path(home), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        with os.fdopen(fd) as f:
            info = json.load(f)
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}
