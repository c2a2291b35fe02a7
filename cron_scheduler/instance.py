"""Single daemon instance per home: an flock on daemon.lock plus daemon.pid for humans."""

from __future__ import annotations

import fcntl
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
        try:
            self.home.daemon_pid.unlink()
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
