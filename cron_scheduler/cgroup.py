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

Resource limits of a run (--memory-max, --cpu-max, --pids-max) are files of its cgroup, written
before it starts; they need the memory, cpu and pids controllers of cgroup v2, which detect()
enables for the run cgroups where it can. Where it cannot (no cgroup v2, or a host whose
controllers are bound to cgroup v1), a run with such a limit is refused with the reason:
a limit is never silently dropped.
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
CONTROLLERS = ("memory", "cpu", "pids")
OPTION = {"memory": "--memory-max", "cpu": "--cpu-max", "pids": "--pids-max"}
CPU_PERIOD = 100_000  # microseconds, the kernel's default cpu.max period


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

    def __init__(self, base: Path, unavailable: dict[str, str] | None = None):
        self.base = Path(base)
        self.unavailable = dict(unavailable or {})  # controller -> why runs cannot use it

    def limit(self, marker: str, files: dict[str, str]) -> None:
        """Write a run's limits (limit_files()) into its cgroup, before it starts. ValueError
        when a controller is unavailable, OSError when the kernel refuses a value."""
        for name, value in files.items():
            controller = name.split(".")[0]
            if controller in self.unavailable:
                raise ValueError(f"{OPTION[controller]} needs the cgroup v2 {controller} controller: "
                                 f"{self.unavailable[controller]}")
            path = self.path(marker) / name
            if name == "memory.swap.max" and not path.exists():  # no swap accounting: no swap limit
                continue
            with open(path, "w") as f:
                f.write(value)

    def usage(self, marker: str) -> tuple[bool, int | None]:
        """(the kernel's OOM killer killed a process of the run, its peak memory in bytes or None)."""
        path = self.path(marker)
        oom = False
        try:
            with open(path / "memory.events") as f:
                oom = any(line.split()[:1] == ["oom_kill"] and int(line.split()[1]) > 0 for line in f)
        except (OSError, ValueError, IndexError):
            pass
        try:
            peak = int((path / "memory.peak").read_text().strip())
        except (OSError, ValueError):
            peak = None
        return oom, peak

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


def limit_files(memory_max: int | None, cpu_max: float | None, pids_max: int | None) -> dict[str, str]:
    """The cgroup files (and values) that cap a run: memory (swap included: none beyond it),
    CPU time as a share of one core per period, processes and threads."""
    files: dict[str, str] = {}
    if memory_max is not None:
        files["memory.max"] = str(memory_max)
        files["memory.swap.max"] = "0"
    if cpu_max is not None:
        files["cpu.max"] = f"{max(1000, round(cpu_max * CPU_PERIOD))} {CPU_PERIOD}"
    if pids_max is not None:
        files["pids.max"] = str(pids_max)
    return files


def host_problem(controllers, mountinfo: str = MOUNTINFO) -> str | None:
    """Why no run on this host can use these cgroup v2 controllers (None: the hierarchy has
    them). What `add --memory-max` checks; the daemon checks again at each run."""
    mount = _cgroup2_mount(mountinfo)
    if mount is None:
        return "no cgroup2 file system is mounted"
    try:
        offered = (mount / "cgroup.controllers").read_text().split()
    except OSError as exc:
        return f"cannot read {mount}/cgroup.controllers: {exc.strerror}"
    missing = [c for c in controllers if c not in offered]
    if missing:
        return (f"the cgroup v2 hierarchy at {mount} has no {missing[0]} controller "
                "(this host keeps it in cgroup v1, or disabled it)")
    return None


def _enable(base: Path, own_dir: Path) -> dict[str, str]:
    """Enable the limit controllers for the run cgroups under base; controller -> why not, for
    those that cannot be (the daemon's own cgroup must offer them to base first, which the
    kernel refuses while a non-root cgroup holds processes: a systemd unit needs Delegate=yes
    and the controllers delegated)."""
    unavailable: dict[str, str] = {}
    for controller in CONTROLLERS:
        try:
            for parent in (own_dir, base):
                offered = (parent / "cgroup.controllers").read_text().split()
                if controller not in offered:
                    raise OSError(0, f"{parent} is not offered the {controller} controller")
                enabled = (parent / "cgroup.subtree_control").read_text().split()
                if controller not in enabled:
                    (parent / "cgroup.subtree_control").write_text(f"+{controller}")
        except OSError as exc:
            unavailable[controller] = f"cannot enable it under {own_dir}: {exc.strerror or exc}"
    return unavailable


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
    cgroups = RunCgroups(base, _enable(base, own_dir))
    cgroups.prune()
    return cgroups, str(base)
