"""Files of the home, opened without following symbolic links.

The home directory itself may be reached through a link (where it lives is the admin's choice).
Every entry below it (jobs.json, scheduler.log, runs/, runs/<job>/<run>.log, ...) is opened
relative to the directory fd of its parent with O_NOFOLLOW, each directory on the way with
O_DIRECTORY | O_NOFOLLOW: a link planted anywhere inside the home is refused with UnsafePath,
never followed, at every open (no check-then-use window).
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

from cron_scheduler.errors import UnsafePath

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _check_name(root: os.PathLike | str, name: str) -> None:
    if not name or name in (".", "..") or "/" in name or "\0" in name:
        raise UnsafePath(f"refusing {os.path.join(root, name)}: not a plain name inside the home")


def _refuse_link(exc: OSError, dir_fd: int, name: str, path: Path) -> None:
    """Turn the ELOOP / ENOTDIR of an O_NOFOLLOW open on a link into UnsafePath."""
    if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
        return
    try:
        mode = os.lstat(name, dir_fd=dir_fd).st_mode
    except OSError:
        return
    if stat.S_ISLNK(mode):
        raise UnsafePath(f"refusing {path}: it is a symbolic link "
                         "(files inside the home are never followed through links)") from None


def open_dir(root: os.PathLike | str, parts: Sequence[str] = (), create: bool = False) -> int:
    """An fd of root/parts[0]/parts[1]/...: root may be a link, no part may be one.
    create: make missing parts (mode 0700)."""
    path = os.fspath(root)  # strings, not Paths: runs open their directory several times each
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for name in parts:
            _check_name(path, name)
            path = os.path.join(path, name)
            if create:
                try:
                    os.mkdir(name, 0o700, dir_fd=fd)
                except FileExistsError:
                    pass
            try:
                sub = os.open(name, DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                _refuse_link(exc, fd, name, path)
                raise
            os.close(fd)
            fd = sub
        return fd
    except BaseException:
        os.close(fd)
        raise


def open_at(dir_fd: int, name: str, flags: int, mode: int = 0o600, path: Path | None = None,
            regular: bool = True) -> int:
    """Open `name` in the directory dir_fd without following a link there (UnsafePath).
    regular: anything but a regular file is an OSError (a FIFO or device planted in the home
    would block or worse)."""
    shown = path if path is not None else name
    _check_name(os.path.dirname(shown), name)
    extra = os.O_NONBLOCK if regular else 0
    try:
        fd = os.open(name, flags | extra | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=dir_fd)
    except OSError as exc:
        _refuse_link(exc, dir_fd, name, shown)
        raise
    if regular:
        try:
            mode = os.fstat(fd).st_mode
            if stat.S_ISDIR(mode):
                raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(shown))
            if not stat.S_ISREG(mode):
                raise OSError(errno.EINVAL, "not a regular file", str(shown))
            os.set_blocking(fd, True)
        except BaseException:
            os.close(fd)
            raise
    return fd


def open_file(root: os.PathLike | str, parts: Sequence[str] | str, flags: int, mode: int = 0o600,
              create_dirs: bool = False) -> int:
    """An fd of the regular file root/parts..., no part of it followed through a link."""
    if isinstance(parts, str):
        parts = (parts,)
    *dirs, name = parts
    dir_fd = open_dir(root, dirs, create_dirs)
    try:
        return open_at(dir_fd, name, flags, mode, Path(root).joinpath(*parts))
    finally:
        os.close(dir_fd)


def read_file(root: os.PathLike | str, parts: Sequence[str] | str) -> BinaryIO:
    """root/parts... opened for reading (binary), never through a link."""
    return os.fdopen(open_file(root, parts, os.O_RDONLY), "rb")


def unlink(root: os.PathLike | str, parts: Sequence[str] | str) -> None:
    """Remove root/parts... if it exists; the directories on the way are not followed (the
    last part, if a link, is removed itself, as unlink always does)."""
    if isinstance(parts, str):
        parts = (parts,)
    *dirs, name = parts
    try:
        dir_fd = open_dir(root, dirs)
    except FileNotFoundError:
        return
    try:
        _check_name(Path(root), name)
        os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        pass
    finally:
        os.close(dir_fd)
