"""Spawning one run, and killing its whole process tree (DESIGN.md section 5, Execution).

Only this module and pool.py create processes. A run is exec'd directly (no shell) in its own
session and process group, stdin /dev/null, stdout+stderr into one pipe the pool reads. The pipe
is a FIFO next to the run's log (runs/<job>/<run-id>.pipe). The run's end is write-only; besides
the daemon, a tiny keeper process (forked per run, in its own session) holds a read end for as
long as the run's main process lives. So a run never gets SIGPIPE/EPIPE when the daemon dies: it
blocks once the pipe is full until the restarted daemon reopens the FIFO and drains it. Once the
main process has exited the keeper lets go, and when the daemon lets go too (the output grace)
a background process still writing gets SIGPIPE/EPIPE, as with cron, instead of blocking forever.
Without pidfd_open (Linux < 5.3) there is no keeper and the run's end is read-write, as before. Its
environment carries CRON_SCHEDULER_RUN_MARKER=<marker>, which every descendant inherits, so that
descendants that left the process group (setsid, double fork) can still be found in /proc.
Where cgroup v2 is usable (cgroup.py), use_cgroups() makes every run start in its own cgroup
(joined before exec, so no process of the run is ever outside it): kill_tree() then also signals
the cgroup's members and SIGKILLs it with cgroup.kill, which reaches descendants that left the
group AND cleared their environment. kill_method() says which mode is in force.
A run of a job with --user, --group or --nice is set up between fork and exec (a preexec_fn):
cgroup joined, priority set, then groups, group and user dropped (runas.py), in that order, so
that only root's powers do what needs them. Its resource limits are files of its cgroup,
written by prepare(); without usable cgroups such a run is refused, never run uncapped.
RunOutput (capped capture) and TreeKill (SIGTERM -> SIGKILL -> sweep) are per-run helpers that the
pool drives from its select() loop; neither blocks.
"""

from __future__ import annotations

import ctypes
import logging
import os
import re
import stat
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cron_scheduler import runas, safefs
from cron_scheduler.cgroup import OPTION, RunCgroups
from cron_scheduler.executors.base import Outcome, RunResult, RunSpec  # noqa: F401 (the pools' types)
from cron_scheduler.keeper import Keeper
from cron_scheduler.runfiles import in_run_dir

log = logging.getLogger(__name__)

MARKER_VAR = "CRON_SCHEDULER_RUN_MARKER"
PR_SET_CHILD_SUBREAPER = 36
CHUNK = 64 * 1024

# What submitting a malformed or unstartable run can raise; the pool turns these into results.
SPAWN_ERRORS = (OSError, ValueError, TypeError, subprocess.SubprocessError)


_cgroups: RunCgroups | None = None  # run cgroups in force in this process (None: marker sweep)
_no_cgroups_why = "the daemon does not use cgroups"  # why _cgroups is None
_lingering: set[str] = set()  # markers of finished runs whose cgroup still holds a process


def use_cgroups(cgroups: RunCgroups | None, why: str = "the daemon does not use cgroups") -> None:
    """Put every run spawned from now on in its own cgroup under cgroups (None: stop doing so;
    why: the reason a run with resource limits is then refused)."""
    global _cgroups, _no_cgroups_why
    _cgroups, _no_cgroups_why = cgroups, why
    _lingering.clear()


def kill_method() -> str:
    """"cgroup" when runs get their own cgroup, else "marker" (process group + marker sweep)."""
    return "cgroup" if _cgroups is not None else "marker"


def usage(marker: str) -> tuple[bool, int | None]:
    """(OOM-killed, peak memory in bytes) of a run's cgroup, before release()."""
    if _cgroups is None or not marker:
        return False, None
    return _cgroups.usage(marker)


def release(marker: str) -> None:
    """The run is over: remove its cgroup (once its last process is gone; a background process
    it left keeps it until then - retried at each later release and at the next start)."""
    if _cgroups is None or not marker:
        return
    _lingering.add(marker)
    for m in list(_lingering):
        if _cgroups.remove(m):
            _lingering.discard(m)


def set_child_subreaper() -> bool:
    """Make orphaned descendants re-parent to this process (Linux prctl); False if unavailable."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        one, zero = ctypes.c_ulong(1), ctypes.c_ulong(0)
        return libc.prctl(ctypes.c_int(PR_SET_CHILD_SUBREAPER), one, zero, zero, zero) == 0
    except (OSError, AttributeError):
        return False


def open_log(path: Path) -> int:
    """Open (truncate) a run's output file for writing: parent dirs 0700, file 0600. Neither
    runs/, the job's directory nor the file may be a symlink: a planted link must not send a
    run's output (or its FIFO) outside the home (the run fails with ELOOP naming the link)."""
    fd = in_run_dir(path, lambda dir_fd, name: safefs.open_at(
        dir_fd, name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600, Path(path)), create=True)
    try:
        os.fchmod(fd, 0o600)
    except OSError:
        os.close(fd)
        raise
    return fd


def pipe_path(log_path: Path) -> Path:
    """The run's output FIFO: next to its log, runs/<job>/<run-id>.pipe."""
    return Path(log_path).with_suffix(".pipe")


def remove_pipe(path: Path) -> None:
    """Remove a run's FIFO (a link there is removed itself; its directories are not followed)."""
    def unlink(dir_fd: int, name: str) -> None:
        try:
            os.unlink(name, dir_fd=dir_fd)
        except FileNotFoundError:
            pass
    try:
        in_run_dir(path, unlink)
    except OSError as exc:  # gone, or runs/ replaced by a link: nothing to remove through it
        if not isinstance(exc, FileNotFoundError):
            log.warning("cannot remove %s: %s", path, exc.strerror or exc)


def open_pipe(path: Path, write_only: bool = False) -> tuple[int, int]:
    """Create the run's output FIFO at path: (read end for the pool, the end that becomes the
    run's stdout and stderr: read-write, or write-only when a keeper holds a read end). Neither
    blocks to open (the read end exists first), both are close-on-exec. Created and opened
    relative to the no-follow fd of runs/<job>/, the FIFO itself with O_NOFOLLOW."""
    def make(dir_fd: int, name: str) -> tuple[int, int]:
        try:
            os.unlink(name, dir_fd=dir_fd)  # left by a crash
        except FileNotFoundError:
            pass
        os.mkfifo(name, 0o600, dir_fd=dir_fd)
        read_fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOFOLLOW, dir_fd=dir_fd)
        try:
            mode = os.O_WRONLY if write_only else os.O_RDWR
            return read_fd, os.open(name, mode | os.O_CLOEXEC | os.O_NOFOLLOW, dir_fd=dir_fd)
        except OSError:
            os.close(read_fd)
            raise
    return in_run_dir(path, make)


_pidfd_ok: bool | None = None


def _pidfd_supported() -> bool:
    global _pidfd_ok
    if _pidfd_ok is None:
        try:
            os.close(os.pidfd_open(os.getpid()))
            _pidfd_ok = True
        except (AttributeError, OSError):
            _pidfd_ok = False
    return _pidfd_ok


_keeper: Keeper | None = None


def _hold_pipe(pid: int, read_fd: int) -> bool:
    """Have the keeper process hold a read end of the run's FIFO until the run's main process
    pid exits (a pidfd). False if unsupported or no keeper could take it."""
    global _keeper
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        return False
    try:
        if _keeper is None:
            _keeper = Keeper()
        return _keeper.hold(pidfd, read_fd)
    finally:
        os.close(pidfd)


def start_keeper() -> None:
    """Start the pipe keeper now (the daemon, at start) rather than at the first run."""
    global _keeper
    if _keeper is None and _pidfd_supported():
        _keeper = Keeper()
        try:
            _keeper.start()
        except OSError as exc:
            log.warning("cannot start the pipe keeper now: %s", exc)


def reopen_pipe(path: Path) -> int | None:
    """The read end of a run's FIFO again (a re-supervised run); None if it is gone."""
    try:
        return in_run_dir(path, lambda dir_fd, name: os.open(
            name, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOFOLLOW, dir_fd=dir_fd))
    except OSError:
        return None


@dataclass
class Prepared:
    """A run made ready to start (prepare()): its output pipe open, its cgroup made, its final
    argv and environment built. start() then only spawns; discard() undoes it."""

    spec: RunSpec
    argv: list[str]
    env: dict[str, str]
    read_fd: int | None  # None once closed
    child_fd: int | None
    procs: Path | None  # cgroup.procs to join by a preexec_fn (no shim possible), else None
    keeper: bool
    account: runas.Account | None = None  # switched to before exec
    cwd: str | None = None
    pid: int | None = None  # its process, once spawned (held by JOIN_SHIM until go())
    go_fd: int | None = None  # the write end of that process's stdin: a line lets it exec the run

    @property
    def held(self) -> bool:
        """Its process starts through JOIN_SHIM, which waits for a line before the run's program."""
        return self.argv[:3] == [SHELL, "-c", JOIN_SHIM]


def prepare(spec: RunSpec) -> Prepared:
    """Everything of a spawn that does not need the instant. Raises one of SPAWN_ERRORS."""
    if not spec.argv:
        raise ValueError("empty command line")
    if not spec.marker:
        raise ValueError("empty run marker")
    if spec.limits and _cgroups is None:
        raise ValueError(f"{OPTION[next(iter(spec.limits)).split('.')[0]]} needs cgroup v2: {_no_cgroups_why}")
    account = runas.for_run(spec.user, spec.group, Path(spec.log_path).parents[2]) if spec.user else None
    cwd = spec.cwd or (runas.workdir(account) if account else None)
    env = dict(spec.env)
    env[MARKER_VAR] = spec.marker
    keeper = _pidfd_supported()
    read_fd, child_fd = open_pipe(pipe_path(spec.log_path), write_only=keeper)
    argv, procs = list(spec.argv), None
    try:
        if account is not None:  # its own FIFO, so that it may reopen /dev/stdout or /dev/stderr
            os.fchown(child_fd, account.uid, account.gid)
        if _cgroups is not None:
            joined, shim = _cgroup(spec, env, cwd, account)
            if shim:
                argv = [SHELL, "-c", JOIN_SHIM, str(joined), *spec.argv]
            else:
                procs = joined
    except BaseException:
        os.close(read_fd)
        os.close(child_fd)
        remove_pipe(pipe_path(spec.log_path))
        release(spec.marker)
        raise
    return Prepared(spec, argv, env, read_fd, child_fd, procs, keeper, account, cwd)


def _cgroup(spec: RunSpec, env: dict[str, str], cwd: str | None,
            account: runas.Account | None) -> tuple[Path | None, bool]:
    """Make the run's cgroup and write its limits: (its cgroup.procs, whether the run joins it
    through JOIN_SHIM rather than a preexec_fn); (None, False) without one: a run without
    limits then goes on, found by its marker, and one with limits fails."""
    try:
        joined = _cgroups.create_dir(spec.marker) / "cgroup.procs"
    except OSError as exc:
        if spec.limits:
            raise
        log.warning("run %d: no cgroup (%s); its tree is found by its marker", spec.run_id, exc)
        return None, False
    if spec.limits:
        _cgroups.limit(spec.marker, spec.limits)
    shim = (account is None and spec.nice is None and not spec.limits  # their join must not fail
            and os.access(SHELL, os.X_OK) and _shell_keeps(env) and _plain_exec(spec.argv[0], env, cwd))
    return joined, shim


def discard(prepared: Prepared) -> None:
    """Undo prepare() (and arm()) for a run that will not start: a held process sees its stdin
    end without the line and exits before the run's program; it is reaped here."""
    for fd in (prepared.read_fd, prepared.child_fd, prepared.go_fd):
        try:
            if fd is not None:
                os.close(fd)
        except OSError:
            pass
    if prepared.pid is not None:
        try:
            os.waitpid(prepared.pid, 0)  # it exits at once (a few ms at most)
        except ChildProcessError:  # reaped by the subreaper's sweep already
            pass
    remove_pipe(pipe_path(prepared.spec.log_path))
    release(prepared.spec.marker)


def arm(prepared: Prepared) -> None:
    """Spawn a held run's process ahead of its start (prepared.held): it joins its cgroup, then
    waits on its stdin; start() then only writes the line that lets it exec the run's program.
    Safe to call from several threads at once. Raises one of SPAWN_ERRORS (the run failed)."""
    go_read, go_write = os.pipe()
    try:
        _spawn(prepared, stdin=go_read)
    except BaseException:
        os.close(go_write)
        raise
    finally:
        os.close(go_read)
    prepared.go_fd = go_write


def start(prepared: Prepared, hold: bool = True) -> tuple[int, int]:
    """Start a prepared run (spawn it, or let an armed one go); returns (pid, read end of its
    output pipe), as spawn(). Safe to call from several threads at once with hold=False; the
    caller then calls hold_pipe()."""
    if prepared.held and prepared.pid is None:
        arm(prepared)
    if prepared.go_fd is not None:
        try:
            os.write(prepared.go_fd, b"\n")
        except BrokenPipeError:  # killed while it waited: supervision reports how it ended
            pass
        finally:
            os.close(prepared.go_fd)
            prepared.go_fd = None
    elif prepared.pid is None:
        _spawn(prepared, stdin=subprocess.DEVNULL)
    if hold:
        hold_pipe(prepared, prepared.pid)
    return prepared.pid, prepared.read_fd


def _spawn(prepared: Prepared, stdin) -> None:
    spec = prepared.spec
    try:
        proc = _popen(spec, prepared, prepared.child_fd, stdin)
    except BaseException:
        os.close(prepared.read_fd)
        prepared.read_fd = None
        remove_pipe(pipe_path(spec.log_path))
        raise
    finally:
        os.close(prepared.child_fd)
        prepared.child_fd = None
    # The pid now belongs to the caller, which reaps it with os.wait4(). Settle the Popen handle
    # so that its finaliser neither warns (ResourceWarning) nor waitpid()s the child behind the
    # caller's back (subprocess._active / _cleanup).
    proc.returncode = 0
    prepared.pid = proc.pid


def hold_pipe(prepared: Prepared, pid: int) -> None:
    """Hand the run's FIFO to the keeper (where there is one)."""
    if prepared.keeper and not _hold_pipe(pid, prepared.read_fd):
        log.warning("run %d: no pipe keeper; a daemon crash may SIGPIPE it", prepared.spec.run_id)


def spawn(spec: RunSpec) -> tuple[int, int]:
    """Start the run; returns (pid, read end of its output pipe). The caller owns both: it must
    reap the pid (os.wait4) and close the fd. Raises one of SPAWN_ERRORS if it cannot start."""
    return start(prepare(spec))


# Joins the run's cgroup ("$0" is its cgroup.procs), waits for a line on its stdin (the go of
# start(): the process can be spawned and join its cgroup ahead of the run's instant, see arm()),
# then becomes the run, stdin from /dev/null: an extra exec of a small shell instead of a
# preexec_fn, which would force a fork of the whole daemon per run (subprocess uses vfork only
# without one). Its stdin closed without a line (the run will not start, or the daemon died),
# it exits before the run's program. Never fails the run: outside its cgroup, the run's tree is
# still found by its marker, and the run's output says so.
JOIN_SHIM = ('echo 0 >"$0" 2>/dev/null || echo "cron-scheduler: this run could not join its cgroup;'
             ' its tree is found by its marker" >&2; read -r go || exit 0; exec "$@" </dev/null')
SHELL = "/bin/sh"


def _popen(spec: RunSpec, prepared: Prepared, out_fd: int, stdin) -> subprocess.Popen:
    """exec the run in a new session; with cgroups, in its own cgroup, joined before the run's
    program starts, so that it cannot fork outside it first: through JOIN_SHIM where exec'ing
    through the shell behaves exactly as a direct exec (an ELF or #! program: prepare() chose),
    else by writing "0" to its cgroup.procs between fork and exec (a preexec_fn), which also
    sets its priority and drops it to its account."""
    def popen(preexec=None) -> subprocess.Popen:
        return subprocess.Popen(prepared.argv, stdin=stdin, stdout=out_fd, stderr=subprocess.STDOUT,
                                cwd=prepared.cwd, env=prepared.env, close_fds=True, start_new_session=True,
                                preexec_fn=preexec)
    if prepared.procs is None and prepared.account is None and spec.nice is None:
        return popen()
    procs_fd = None if prepared.procs is None else os.open(prepared.procs, os.O_WRONLY | os.O_CLOEXEC)
    try:
        try:
            return popen(_child_setup(procs_fd, spec.nice, prepared.account))
        except subprocess.SubprocessError as exc:
            if "preexec_fn" not in str(exc):
                raise
            if prepared.account is not None or spec.nice is not None or spec.limits:
                raise ValueError(_setup_failed(spec)) from None  # never as root, uncapped, unniced
        log.warning("run %d: cannot join its cgroup; its tree is found by its marker", spec.run_id)
        return popen()
    finally:
        if procs_fd is not None:
            os.close(procs_fd)


def _child_setup(procs_fd: int | None, nice: int | None, account: runas.Account | None):
    """What runs in the child between fork and exec: only system calls, no allocation-heavy
    work, no locks (the account was looked up before the fork)."""
    def setup() -> None:
        if procs_fd is not None:
            os.write(procs_fd, b"0")
        if nice is not None:
            os.setpriority(os.PRIO_PROCESS, 0, nice)
        if account is not None:
            os.setgroups(account.groups)
            os.setgid(account.gid)
            os.setuid(account.uid)
    return setup


def _setup_failed(spec: RunSpec) -> str:
    what = ["in its cgroup with its limits"] if spec.limits else []
    what += [f"at nice {spec.nice}"] if spec.nice is not None else []
    what += [f"as user {spec.user!r}"] if spec.user else []
    return "cannot start the run " + ", ".join(what)


_SHELL_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _shell_keeps(env: dict[str, str]) -> bool:
    """Whether the shim's shell passes all of `env` on: dash drops the names it cannot hold as
    variables (`my-var`, `A.B`, legal in a crontab), which a direct execve keeps."""
    return all(_SHELL_NAME_RE.fullmatch(name) for name in env)


def _plain_exec(program: str, env: dict[str, str], cwd: str | None) -> bool:
    """Whether exec'ing `program` (searched in env's PATH like subprocess does) runs an ELF
    binary or a #! script: then the shell's exec does exactly what a direct execve would. A
    missing or unexecutable program, or one the shell would run as a script, is False: the
    direct path reports it as subprocess does (a spawn failure naming it)."""
    candidates = [program] if "/" in program else [os.path.join(d, program) for d in os.get_exec_path(env)]
    for path in candidates:
        if cwd and not os.path.isabs(path):
            path = os.path.join(cwd, path)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError:
            continue
        try:
            regular = stat.S_ISREG(os.fstat(fd).st_mode)
            head = os.read(fd, 4) if regular else b""
        except OSError:
            return False
        finally:
            os.close(fd)
        return regular and os.access(path, os.X_OK) and (head == b"\x7fELF" or head[:2] == b"#!")
    return False


def spawn_error_message(exc: BaseException) -> str:
    """One line for a failed spawn, e.g. "No such file or directory: 'x'"."""
    if isinstance(exc, OSError) and exc.strerror:
        if exc.filename is not None:
            return f"{exc.strerror}: {exc.filename!r}"
        return exc.strerror
    return str(exc) or type(exc).__name__


def exit_status(status: int | None) -> tuple[int | None, int | None]:
    """(exit_code, signal) of a wait status; (None, None) when unknown."""
    if status is not None and os.WIFSIGNALED(status):
        return None, os.WTERMSIG(status)
    if status is not None and os.WIFEXITED(status):
        return os.WEXITSTATUS(status), None
    return None, None


LOST_STATUS = "exit status lost (the process was reaped elsewhere)"
UNKNOWN_STATUS = "exit status unknown (re-supervised after daemon restart)"


def outcome_of(status: int | None, timed_out: bool, cancelled: bool,
               adopted: bool = False) -> tuple[Outcome, str | None]:
    """How a supervised run ended (any pool's supervisor), and the error that goes with it: a
    cap or a stop first; then its wait status; without one, unknowable for a run re-supervised
    after a restart (not our child), lost for our own child."""
    if timed_out:
        return Outcome.TIMED_OUT, None
    if cancelled:
        return Outcome.CANCELLED, None
    if status is not None:
        return (Outcome.SIGNALED if os.WIFSIGNALED(status) else Outcome.EXITED), None
    return (Outcome.UNKNOWN, UNKNOWN_STATUS) if adopted else (Outcome.LOST, LOST_STATUS)


class RunOutput:
    """One run's output: drains its pipe, keeps the first max_output bytes in the log file and
    counts (and discards) the rest, so the child never blocks on a full pipe. Owned by the pool."""

    def __init__(self, pipe_fd: int | None, log_fd: int | None, max_output: int,
                 log_path: Path | None = None, kept: int = 0):
        if pipe_fd is not None:
            os.set_blocking(pipe_fd, False)
        self.pipe_fd = pipe_fd
        self.log_fd = log_fd
        self.max_output = max(0, max_output)
        self.log_path = log_path
        self.total = kept  # bytes read from the pipe (by this daemon and, if resumed, the last)
        self.kept = kept  # bytes in the log file

    @classmethod
    def resume(cls, log_path: Path, max_output: int) -> "RunOutput":
        """The output of a run re-supervised after a daemon restart: its FIFO reopened (data the
        run wrote meanwhile waits in it), its log appended to from where the old daemon stopped."""
        try:
            log_fd = in_run_dir(log_path, lambda dir_fd, name: safefs.open_at(
                dir_fd, name, os.O_WRONLY | os.O_APPEND, 0o600, Path(log_path)))
        except OSError:
            log_fd, kept = None, 0
        else:
            kept = os.fstat(log_fd).st_size
        return cls(reopen_pipe(pipe_path(log_path)), log_fd, max_output, log_path, kept)

    @property
    def truncated(self) -> bool:
        return self.total > self.kept

    def pump(self, max_chunks: int = 16) -> bool:
        """Read what the pipe holds now (at most max_chunks reads); True at end of file."""
        for _ in range(max_chunks):
            try:
                data = os.read(self.pipe_fd, CHUNK)
            except BlockingIOError:
                return False
            except OSError:
                data = b""
            if not data:
                return True
            self.total += len(data)
            room = self.max_output - self.kept
            if room > 0 and self.log_fd is not None:
                self._keep(memoryview(data)[:room])
        return False

    def _keep(self, view: memoryview) -> None:
        try:
            while view:
                n = os.write(self.log_fd, view)
                self.kept += n
                view = view[n:]
        except OSError as exc:  # disk full, ...: keep counting, stop keeping
            log.warning("cannot write run output to %s: %s", self.log_path, exc)
            os.close(self.log_fd)
            self.log_fd = None

    def close_pipe(self) -> None:
        if self.pipe_fd is not None:
            os.close(self.pipe_fd)
            self.pipe_fd = None

    def close(self, remove_fifo: bool = True) -> None:
        """Close the pipe and the log, and remove the FIFO (unless the caller does it later):
        the run is over."""
        self.close_pipe()
        if self.log_fd is not None:
            os.close(self.log_fd)
            self.log_fd = None
        if self.log_path is not None and remove_fifo:
            remove_pipe(pipe_path(self.log_path))


def _stat_fields(pid: int) -> list[bytes] | None:
    """Fields 3.. of /proc/PID/stat (state first), or None if the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # comm (field 2) may contain spaces and parentheses: the fields resume after the last ")".
    return data[data.rfind(b")") + 2:].split()


def process_start_time(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat (start time in clock ticks since boot); None if gone.

    Together with the pid it identifies a process across a daemon restart."""
    fields = _stat_fields(pid)
    try:
        return int(fields[19]) if fields else None
    except (ValueError, IndexError):
        return None


def process_running(pid: int, start_time: int | None = None) -> bool:
    """The process exists, has not exited (zombie), and started at start_time if given."""
    fields = _stat_fields(pid)
    if not fields or fields[0] in (b"Z", b"X", b"x"):
        return False
    return start_time is None or process_start_time(pid) == start_time


def find_marked(marker: str) -> set[int]:
    """Pids whose environment holds exactly CRON_SCHEDULER_RUN_MARKER=<marker>.

    Zombies and exiting processes have an empty environ and are not reported."""
    if not marker:
        return set()
    entry = f"{MARKER_VAR}={marker}".encode()
    return {pid for pid, environ in process_environs() if entry in environ}


def process_environs() -> Iterator[tuple[int, list[bytes]]]:
    """(pid, its environment's NAME=value entries) of every process this one may read, itself
    left out."""
    me = os.getpid()
    try:
        names = os.listdir("/proc")
    except OSError:
        return
    for name in names:
        if not name.isdigit() or int(name) == me:
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                environ = f.read()
        except OSError:  # vanished, or not ours to read
            continue
        yield int(name), environ.split(b"\0")


def survivors(marker: str) -> set[int]:
    """The live processes of a run: those carrying its marker, and those in its cgroup."""
    found = find_marked(marker)
    if _cgroups is not None and marker:
        found |= _cgroups.pids(marker)
    return found


def kill_tree(pgid: int, marker: str, sig: int) -> set[int]:
    """Send sig to process group pgid, to every process carrying the run's marker and, with
    cgroups, to every process in the run's cgroup (SIGKILL: cgroup.kill, all at once).

    Returns the pids found (signalled) - empty once no process of the run is left."""
    if pgid > 1:  # never killpg(0) or (1): that would hit our own group or everything
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            pass
    if _cgroups is not None and marker and sig == signal.SIGKILL:
        _cgroups.kill(marker)
    found = survivors(marker)
    for pid in found:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
    return found


class TreeKill:
    """Stopping one run's tree without blocking: SIGTERM now; at kill_at SIGKILL, then sweep for
    marked survivors until none is left. The caller calls step() at next_at() and whenever the
    run settles; `done` once no process of the run is left (or it gave up on unkillable ones)."""

    TERM_RECHECK = 0.25  # before kill_at: how often to look for survivors once the run settled
    KILL_RECHECK = 0.02  # after SIGKILL: how soon to sweep again
    GIVE_UP = 5.0  # stop sweeping this long after kill_at (e.g. a process stuck in D state)

    def __init__(self, pgid: int, marker: str, grace: float, now: float):
        self.pgid, self.marker = pgid, marker
        self.kill_at = now + grace
        self.hard = self.done = False
        self.check_at: float | None = None
        kill_tree(pgid, marker, signal.SIGTERM)

    def hasten(self, grace: float, now: float) -> None:
        self.kill_at = min(self.kill_at, now + grace)

    def next_at(self) -> float | None:
        if self.done:
            return None
        if self.hard:
            return self.check_at
        return self.kill_at if self.check_at is None else min(self.kill_at, self.check_at)

    def step(self, now: float, settled: bool) -> None:
        """settled: the main process is gone and the output pipe is closed."""
        if self.done:
            return
        if not self.hard and now >= self.kill_at:
            self.hard, self.check_at = True, now
        if self.check_at is not None and now < self.check_at:
            return
        if self.hard:
            if not kill_tree(self.pgid, self.marker, signal.SIGKILL):
                self.done = True
            elif now >= self.kill_at + self.GIVE_UP:
                log.warning("processes with marker %s survive SIGKILL; giving up", self.marker)
                self.done = True
            else:
                self.check_at = now + self.KILL_RECHECK
        elif settled:  # survivors (e.g. ignoring SIGTERM) get the rest of the grace period
            if survivors(self.marker):
                self.check_at = now + self.TERM_RECHECK
            else:
                self.done = True
