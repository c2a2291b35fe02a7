"""One cgroup (v2) per run, where the system lets the daemon make them (DESIGN.md section 5).

A process cannot leave its cgroup on its own (moving needs write access to cgroup files, which
the daemon's runs do not get unless they run as root), whatever it does with its session, its
process group or its environment. So a run's whole tree is the run's cgroup, and `cgroup.kill`
(Linux >= 5.14) kills all of it at once. The run cgroups live in a sub-cgroup of the daemon's own
cgroup, one per home, so that the service manager's own stop still reaches them:

    <daemon's cgroup>/cron-scheduler-<home tag>/run-<marker>

Usable when: a cgroup2 file system is mounted, the daemon may create a sub-cgroup of its own
cgroup (root, or a systemd unit with Delegate=yes), and that sub-cgroup offers cgroup.kill.
Otherwise detect() says why, and the daemon keeps the marker sweep (runner.py).
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

MOUNTINFO = "/proc/self/mountinfo"
SELF_CGROUP = "/proc/self/cgroup"
PREFIX = "run-"


def _cgroup2_mount(mountinfo: str = MOUNTINFO) -> Path | None:
    """Mount point of the cgroup2 file system (the unified hierarchy), or None."""
    try:
        with open(mountinfo, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:
        left, sep, right = line.partition(" - ")
        if sep and right.split(" ", 1)[0] == "cgroup2":
            point = left.split(" ")[4]
            return Path(point.replace("\\040", " ").replace("\\011", "\t").replace("\\134", "\\"))
    return None


def _own_cgroup(self_cgroup: str = SELF_CGROUP) -> str | None:
    """This process's cgroup v2 path ("0::/a/b" -> "/a/b"), or None."""
    try:
        with open(self_cgroup, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("0::"):
                    return line[3:].strip()
    except OSError:
        pass
    return None


def home_tag(home_root: Path) -> str:
    return hashlib.sha256(str(home_root).encode()).hexdigest()[:12]


class RunCgroups:
    """The run cgroups of one home under one base directory."""

    def __init__(self, base: Path):
        self.base = Path(base)

    def path(self, marker: str) -> Path:
        if not marker or "/" in marker or marker in (".", ".."):
            raise ValueError(f"bad run marker {marker!r}")
        return self.base / f"{PREFIX}{marker}"

    def create_dir(self, marker: str) -> Path:
        """Create the run's cgroup; returns its directory."""
        path = self.path(marker)
        try:
            os.mkdir(path, 0o755)
        except FileExistsError:
            pass
        return path

    def create(self, marker: str) -> int:
        """Create the run's cgroup; returns an fd of its cgroup.procs (writing "0" to it moves
        the writer in). The caller closes it."""
        path = self.path(marker)
        try:
            os.mkdir(path, 0o755)
        except FileExistsError:
            pass
        return os.open(path / "cgroup.procs", os.O_WRONLY | os.O_CLOEXEC)

    def pids(self, marker: str) -> set[int]:
        """Every process in the run's cgroup and its sub-cgroups (empty when it is gone)."""
        found: set[int] = set()
        try:
            walk = list(os.walk(self.path(marker)))
        except OSError:
            return found
        for directory, _, _ in walk:
            try:
                with open(os.path.join(directory, "cgroup.procs")) as f:
                    found.update(int(p) for p in f.read().split())
            except (OSError, ValueError):
                continue
        return found

    def kill(self, marker: str) -> bool:
        """SIGKILL everything in the run's cgroup (recursively); False if it does not exist."""
        try:
            fd = os.open(self.path(marker) / "cgroup.kill", os.O_WRONLY | os.O_CLOEXEC)
        except OSError:
            return False
        try:
            os.write(fd, b"1")
            return True
        except OSError:
            return False
        finally:
            os.close(fd)

    def remove(self, marker: str) -> bool:
        """Remove the run's cgroup (sub-cgroups first); True if it is gone, False while some
        process still lives in it."""
        return _rmtree(self.path(marker))

    def prune(self) -> int:
        """Remove every empty run cgroup (left by a previous daemon); how many were removed."""
        removed = 0
        try:
            names = os.listdir(self.base)
        except OSError:
            return 0
        for name in names:
            if name.startswith(PREFIX) and _rmtree(self.base / name):
                removed += 1
        return removed

    def close(self) -> None:
        """The daemon stops: drop the empty run cgroups and the base if nothing is left."""
        self.prune()
        try:
            os.rmdir(self.base)
        except OSError:
            pass


def _rmtree(path: Path) -> bool:
    try:  # a run's cgroup mostly has no sub-cgroup: one rmdir, no walk over its files
        os.rmdir(path)
        return True
    except FileNotFoundError:
        return True
    except OSError:  # EBUSY: a process lives in it, or a sub-cgroup does
        pass
    try:
        walk = list(os.walk(path, topdown=False))
    except OSError:
        return True
    for directory, _, _ in walk:
        try:
            os.rmdir(directory)
        except FileNotFoundError:
            continue
        except OSError:  # EBUSY: a process still lives in it
            return False
    return not path.exists()


def detect(home_root: Path, mountinfo: str = MOUNTINFO,
           self_cgroup: str = SELF_CGROUP) -> tuple[RunCgroups | None, str]:
    """(the run cgroups of this home, where they live) when usable, else (None, why not)."""
    mount = _cgroup2_mount(mountinfo)
    if mount is None:
        return None, "no cgroup2 file system mounted"
    own = _own_cgroup(self_cgroup)
    if own is None:
        return None, "this process has no cgroup v2 path"
    own_dir = mount / own.lstrip("/")
    base = own_dir / f"cron-scheduler-{home_tag(Path(home_root))}"
    try:
        os.mkdir(base, 0o755)
    except FileExistsError:
        pass
    except OSError as exc:
        return None, f"cannot create a cgroup under {own_dir}: {exc.strerror}"
    if not (base / "cgroup.kill").exists():
        _rmtree(base)
        return None, "the kernel has no cgroup.kill (Linux < 5.14)"
    if not os.access(base / "cgroup.procs", os.W_OK):
        _rmtree(base)
        return None, f"cannot move processes into {base}"
    cgroups = RunCgroups(base)
    cgroups.prune()
    return cgroups, str(base)
