"""The files of runs under runs/<job>/: a run's log (<run-id>.log) and output FIFO
(<run-id>.pipe). Every access goes through the no-follow fd of the run's directory, so a planted
link never sends a run's output, or a deletion, outside the home. Shared by the pools (which
write them) and the engine (which deletes what pruned or crashed runs left)."""

from __future__ import annotations

import errno
import logging
import os
import re
from collections.abc import Callable
from pathlib import Path

from cron_scheduler import safefs
from cron_scheduler.errors import UnsafePath

log = logging.getLogger("cron_scheduler.runner")


def run_dir(path: Path, create: bool = False) -> int:
    """The fd of a run file's directory, runs/<job>/ (path is <home>/runs/<job>/<file>): neither
    runs/ nor runs/<job>/ is followed through a link. create: make them (0700) if missing.
    A link raises OSError(ELOOP) naming it, which the pool records as the run's error."""
    job_dir = os.path.dirname(os.fspath(path))
    runs, job = os.path.split(job_dir)
    home, runs_name = os.path.split(runs)
    parts = (runs_name, job)
    try:
        try:  # mkdir of an existing directory costs as much as a create: only where missing
            return safefs.open_dir(home, parts)
        except FileNotFoundError:
            if not create:
                raise
        return safefs.open_dir(home, parts, create)
    except UnsafePath as exc:
        raise OSError(errno.ELOOP, str(exc)) from None


def in_run_dir(path: Path, action, create: bool = False):
    """action(dir_fd, name) on a run file, through the no-follow fd of its directory."""
    dir_fd = run_dir(path, create)
    try:
        return action(dir_fd, os.path.basename(path))
    except UnsafePath as exc:
        raise OSError(errno.ELOOP, str(exc)) from None
    finally:
        os.close(dir_fd)


def remove_run_files(home_root: Path, job_id: str, recorded: str | os.PathLike) -> bool:
    """Delete what a pruned run left: its log and its FIFO. Their place is derived from the home,
    runs/<job_id>/<run-id>.log, never taken from the path recorded in state.db (only that path's
    <run-id>.log name is used): nothing outside runs/<job_id>/ is ever deleted, and no link on
    the way is followed."""
    name = Path(recorded).name
    if not (name.endswith(".log") and name[:-4].isdigit()):
        log.warning("not deleting %s for job %s: not a run log", recorded, job_id)
        return False
    try:
        in_run_dir(Path(home_root) / "runs" / job_id / name,
                    lambda dir_fd, n: _unlink_all(dir_fd, (n, n[:-4] + ".pipe")))
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.warning("cannot delete the log of a pruned run of %s: %s", job_id, exc.strerror or exc)
        return False
    return True


_RUN_FILE = re.compile(r"(\d+)\.(log|pipe)")


def sweep_run_files(home_root: Path, keep: Callable[[str, int, str], bool]) -> int:
    """Delete the run files under runs/<job>/ that keep(job, run_id, "log" or "pipe") refuses:
    FIFOs and logs a crash left behind (a FIFO is removed once no run is live, a pruned run's
    log after its commit). Other files and links are not touched; links are not followed."""
    removed = 0
    try:
        runs_fd = safefs.open_dir(home_root, ("runs",))
    except (OSError, UnsafePath):
        return 0
    try:
        for job in os.listdir(runs_fd):
            try:
                job_fd = safefs.open_dir(home_root, ("runs", job))
            except (OSError, UnsafePath):  # not a directory, a link, a bad name
                continue
            try:
                stale = [entry for entry in os.listdir(job_fd)
                         if (m := _RUN_FILE.fullmatch(entry)) and not keep(job, int(m[1]), m[2])]
                removed += _unlink_all(job_fd, stale)
            finally:
                os.close(job_fd)
    finally:
        os.close(runs_fd)
    return removed


def _unlink_all(dir_fd: int, names) -> int:
    """Unlink names in a directory (missing ones are skipped); how many were there."""
    count = 0
    for name in names:
        try:
            os.unlink(name, dir_fd=dir_fd)
            count += 1
        except FileNotFoundError:
            pass
    return count
