"""Single daemon instance per home: an flock on daemon.lock plus daemon.pid for humans, and
daemon.info (JSON: how the running daemon works, e.g. its kill method) for `status`.

All these files are opened relative to the home's directory fd without following links
(safefs): a link planted at any of them is refused, and a leftover daemon.pid.tmp is removed
and created afresh (O_EXCL), never written through."""

from __future__ import annotations

import fcntl
import json
import os

from cron_scheduler import safefs
from cron_scheduler.errors import DaemonAlreadyRunning
from cron_scheduler.home import Home


class InstanceLock:
    def __init__(self, home: Home):
        self.home = home
        self.fd: int | None = None

    def acquire(self) -> None:
        fd = safefs.open_file(self.home.root, self.home.daemon_lock.name, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise DaemonAlreadyRunning(
                f"already running (pid {daemon_pid(self.home) or '?'}) on home {self.home.root}") from None
        self.fd = fd
        try:
            self._write_pid()
        except BaseException:
            self.release()
            raise

    def _write_pid(self) -> None:
        """daemon.pid through a fresh daemon.pid.tmp (O_EXCL: never an existing file or link),
        renamed into place (a rename replaces a link at daemon.pid, it does not follow it)."""
        pid_name = self.home.daemon_pid.name
        tmp_name = pid_name + ".tmp"
        dir_fd = safefs.open_dir(self.home.root)
        try:
            try:
                os.unlink(tmp_name, dir_fd=dir_fd)  # left by a crash (or planted): removed, not followed
            except FileNotFoundError:
                pass
            fd = safefs.open_at(dir_fd, tmp_name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600,
                                self.home.root / tmp_name)
            try:
                os.fchmod(fd, 0o600)
                os.write(fd, f"{os.getpid()}\n".encode())
            finally:
                os.close(fd)
            os.replace(tmp_name, pid_name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        finally:
            os.close(dir_fd)

    def release(self) -> None:
        if self.fd is None:
            return
        for name in (self.home.daemon_pid.name, daemon_info_path(self.home).name):
            try:
                safefs.unlink(self.home.root, name)
            except OSError:
                pass
        os.close(self.fd)
        self.fd = None


def daemon_pid(home: Home) -> int | None:
    """The pid of the daemon holding `home`, or None when no daemon holds it. A link at
    daemon.lock or daemon.pid raises UnsafePath (a pid read through one would be signalled)."""
    try:
        fd = safefs.open_file(home.root, home.daemon_lock.name, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return None  # we could take it: nobody holds it
    except BlockingIOError:
        try:
            with safefs.read_file(home.root, home.daemon_pid.name) as fh:
                return int(fh.read(64).strip())
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
