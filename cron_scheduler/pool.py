"""The bounded pool of supervised children (DESIGN.md sections 5 and 7).

`Pool` is the interface the daemon talks to (submit, cancel, wait, ...); `LocalPool` runs the
children on this host, single-threaded: one selector over every run's output pipe, a pidfd per
run (exit notification) and the daemon's wake fd. wait() sleeps in select() until output, an
exit, a wake-up or the nearest deadline - never a busy poll. Children are reaped with
os.wait4(-1): the daemon is a child subreaper, so orphaned descendants of runs land here too and
are reaped and dropped.
"""

from __future__ import annotations

import abc
import logging
import os
import selectors
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cron_scheduler.runner import (SPAWN_ERRORS, RunOutput, RunResult, RunSpec, TreeKill,
                                   exit_status, open_log, process_running, process_start_time,
                                   release, spawn, spawn_error_message)

log = logging.getLogger(__name__)

OUTPUT_GRACE = 1.0  # after the main process exits, how long descendants may hold the pipe
NO_PIDFD_POLL = 0.5  # exit polling interval on kernels without pidfd_open
UNKNOWN_STATUS = "exit status unknown (re-supervised after daemon restart)"
LOST_STATUS = "exit status lost (the process was reaped elsewhere)"


class Pool(abc.ABC):
    """Runs that are started now and supervised until they finish."""

    max_workers: int

    @abc.abstractmethod
    def free_slots(self) -> int:
        """How many more runs may be submitted now."""

    @abc.abstractmethod
    def submit(self, spec: RunSpec) -> int | None:
        """Start a run now; its pid, or None when it could not start (the failed RunResult is
        returned by the next wait())."""

    @abc.abstractmethod
    def cancel(self, run_id: int, reason: str) -> None:
        """Stop a run: SIGTERM now, SIGKILL after the grace period. Unknown ids are ignored."""

    @abc.abstractmethod
    def running(self) -> dict[int, int]:
        """run_id -> pid of every run not finished yet."""

    @abc.abstractmethod
    def wait(self, timeout: float | None) -> list[RunResult]:
        """Block until a run finishes, a wake-up arrives or timeout; the runs that finished."""

    def adopt(self, run_id: int, pid: int, marker: str, started_at: float,
              timeout_remaining: float | None, log_path: Path | None = None,
              start_time: int | None = None, max_output: int = 0) -> bool:
        """Re-supervise a process left by a previous daemon, and drain its output pipe again;
        False if it is gone."""
        raise NotImplementedError(f"{type(self).__name__} cannot re-supervise runs")

    @abc.abstractmethod
    def shutdown(self, grace: float) -> list[RunResult]:
        """Stop every run (SIGTERM, SIGKILL after grace) and return all outstanding results.
        The pool is closed afterwards."""


@dataclass(eq=False)
class _Run:
    """Live bookkeeping of one supervised run (mutable by nature; never leaves the pool)."""

    run_id: int
    pid: int
    marker: str
    started_at: float
    log_path: Path | None
    output: RunOutput | None = None
    adopted: bool = False
    start_time: int | None = None  # /proc start time, to detect pid reuse without a pidfd
    pidfd: int | None = None
    pidfd_fired: bool = False
    deadline: float | None = None  # monotonic timeout cap
    stop: TreeKill | None = None  # set once a timeout, cancel or shutdown began
    timed_out: bool = False
    cancelled: bool = False
    cancel_reason: str | None = None
    exited_at: float | None = None  # monotonic time the main process was seen gone
    status: int | None = None  # wait status, None if unknown
    rusage: Any = None

    @property
    def piped(self) -> bool:
        """Its output pipe is still open (some process of the run may still write)."""
        return self.output is not None and self.output.pipe_fd is not None


class LocalPool(Pool):
    def __init__(self, max_workers: int = 10, kill_grace: float = 10.0,
                 wake_fd: int | None = None):
        if max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        self.max_workers = max_workers
        self.kill_grace = kill_grace
        self._wake_fd = wake_fd
        self._sel = selectors.DefaultSelector()
        self._runs: dict[int, _Run] = {}
        self._by_pid: dict[int, _Run] = {}
        self._done: list[RunResult] = []
        if wake_fd is not None:
            self._sel.register(wake_fd, selectors.EVENT_READ, ("wake", None))

    # --- the interface ---------------------------------------------------------------------

    def free_slots(self) -> int:
        return max(0, self.max_workers - len(self._runs))

    def running(self) -> dict[int, int]:
        return {run.run_id: run.pid for run in self._runs.values()}

    def submit(self, spec: RunSpec) -> int | None:
        if spec.run_id in self._runs:
            raise ValueError(f"run {spec.run_id} is already running")
        started = time.time()
        log_fd = None
        try:
            log_fd = open_log(spec.log_path)
            pid, out_fd = spawn(spec)
        except SPAWN_ERRORS as exc:
            if log_fd is not None:
                os.close(log_fd)
            error = spawn_error_message(exc)
            self._done.append(RunResult(spec.run_id, None, started, time.time(), error=error))
            return None
        output = RunOutput(out_fd, log_fd, spec.max_output, spec.log_path)
        run = _Run(spec.run_id, pid, spec.marker, started, spec.log_path, output=output)
        self._sel.register(out_fd, selectors.EVENT_READ, ("out", run))
        self._track(run, spec.timeout)
        return pid

    def adopt(self, run_id: int, pid: int, marker: str, started_at: float,
              timeout_remaining: float | None, log_path: Path | None = None,
              start_time: int | None = None, max_output: int = 0) -> bool:
        current = process_start_time(pid)
        if current is None or not process_running(pid, start_time):
            return False
        output = RunOutput.resume(log_path, max_output) if log_path is not None else None
        run = _Run(run_id, pid, marker, started_at, log_path, output=output, adopted=True, start_time=current)
        if not self._track(run, timeout_remaining):
            if output is not None:
                output.close()
            return False
        if run.piped:
            self._sel.register(output.pipe_fd, selectors.EVENT_READ, ("out", run))
        return True

    def cancel(self, run_id: int, reason: str) -> None:
        run = self._runs.get(run_id)
        if run is None or run.stop is not None:
            return
        run.cancelled, run.cancel_reason = True, reason
        self._terminate(run, self.kill_grace)

    def wait(self, timeout: float | None) -> list[RunResult]:
        end = None if timeout is None else time.monotonic() + timeout
        woke = polled = False
        while True:
            self._service()
            now = time.monotonic()
            idle_forever = end is None and not self._runs and self._wake_fd is None
            # even wait(0) selects once: output and EOF are only ever seen by a select()
            if self._done or woke or idle_forever or (polled and end is not None and now >= end):
                done, self._done = self._done, []
                return done
            woke, polled = self._poll(self._select_timeout(now, end)), True

    def shutdown(self, grace: float) -> list[RunResult]:
        for run in list(self._runs.values()):
            if run.stop is None:
                run.cancelled, run.cancel_reason = True, "daemon shutdown"
            self._terminate(run, grace)
        results: list[RunResult] = []
        end = time.monotonic() + grace + TreeKill.GIVE_UP + OUTPUT_GRACE + 1.0
        while self._runs and time.monotonic() < end:
            results.extend(self.wait(max(0.0, end - time.monotonic())))
        for run in list(self._runs.values()):  # unkillable: report, do not hang the daemon
            results.append(self._finish(run, error="still running after SIGKILL"))
        results.extend(self._done)
        self._done = []
        self._sel.close()
        return results

    # --- supervision -------------------------------------------------------------------------

    def _track(self, run: _Run, timeout: float | None) -> bool:
        """Supervise run: its exit (a pidfd) and timeout cap. False if the process is gone."""
        try:
            run.pidfd = os.pidfd_open(run.pid)
        except ProcessLookupError:
            return False
        except (AttributeError, OSError):  # old kernel or seccomp: exits are polled instead
            pass
        else:
            self._sel.register(run.pidfd, selectors.EVENT_READ, ("exit", run))
        if timeout is not None:
            run.deadline = time.monotonic() + max(0.0, timeout)
        self._runs[run.run_id] = self._by_pid[run.pid] = run
        return True

    def _poll(self, timeout: float | None) -> bool:
        """One select(); handles what it reports. True if the wake fd fired."""
        woke = False
        for key, _ in self._sel.select(timeout):
            kind, run = key.data
            if kind == "wake":
                woke = True
                self._drain_wake()
            elif kind == "out":
                self._pump(run)
            else:
                run.pidfd_fired = True
                self._close_pidfd(run)
        return woke

    def _drain_wake(self) -> None:
        try:  # one read; if more is pending, select() reports it again (level-triggered)
            data = os.read(self._wake_fd, 65536)
        except (BlockingIOError, InterruptedError):
            return
        if not data:  # writer gone: stop watching, or select() would spin on EOF
            self._sel.unregister(self._wake_fd)
            self._wake_fd = None

    def _pump(self, run: _Run, max_chunks: int = 16) -> None:
        if run.output.pump(max_chunks):
            self._close_output(run)

    def _reap(self) -> None:
        while True:
            try:
                pid, status, rusage = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            run = self._by_pid.get(pid)  # anything else is a re-parented orphan: dropped
            if run is not None and run.exited_at is None:
                run.status, run.rusage, run.exited_at = status, rusage, time.monotonic()
                self._close_pidfd(run)

    def _service(self) -> None:
        """Reap, act on due deadlines, and move finished runs to self._done."""
        self._reap()
        now = time.monotonic()
        for run in list(self._runs.values()):
            if run.exited_at is None and (run.pidfd_fired or (
                    run.adopted and run.pidfd is None
                    and not process_running(run.pid, run.start_time))):
                run.exited_at = now  # gone, but not our child: its status is unknowable
            self._advance(run, now)
            if self._ready(run, now):
                self._done.append(self._finish(run))

    def _advance(self, run: _Run, now: float) -> None:
        """Timeout cap, then the stop's SIGKILL deadline and sweeps for survivors."""
        if run.stop is not None:
            run.stop.step(now, settled=run.exited_at is not None and not run.piped)
        elif run.deadline is not None and now >= run.deadline and run.exited_at is None:
            run.timed_out = True
            log.warning("run %d (pid %d) hit its time cap: SIGTERM to its tree, SIGKILL after %gs",
                        run.run_id, run.pid, self.kill_grace)
            self._terminate(run, self.kill_grace)

    def _ready(self, run: _Run, now: float) -> bool:
        if run.exited_at is None or (run.stop is not None and not run.stop.done):
            return False
        if run.piped:  # a descendant still holds the pipe: take what is there, then let go
            if now < run.exited_at + OUTPUT_GRACE:
                return False
            self._pump(run, max_chunks=64)
            self._close_output(run)
        return True

    def _terminate(self, run: _Run, grace: float) -> None:
        if run.stop is not None:
            run.stop.hasten(grace, time.monotonic())
        else:
            run.stop = TreeKill(run.pid, run.marker, grace, time.monotonic())

    def _select_timeout(self, now: float, end: float | None) -> float | None:
        times = [] if end is None else [end]
        for run in self._runs.values():
            if run.stop is not None:
                times.append(run.stop.next_at())
            elif run.deadline is not None and run.exited_at is None:
                times.append(run.deadline)
            if run.exited_at is not None and run.piped:
                times.append(run.exited_at + OUTPUT_GRACE)
            if run.exited_at is None and run.pidfd is None and not run.pidfd_fired:
                times.append(now + NO_PIDFD_POLL)
        times = [t for t in times if t is not None]
        return None if not times else max(0.0, min(times) - now)

    def _finish(self, run: _Run, error: str | None = None) -> RunResult:
        self._close_output(run)
        self._close_pidfd(run)
        if run.output is not None:
            run.output.close()  # the log file
        release(run.marker)  # its cgroup, if it has one
        del self._runs[run.run_id]
        self._by_pid.pop(run.pid, None)
        exit_code, sig = exit_status(run.status)
        if run.status is None and error is None and run.exited_at is not None:
            error = UNKNOWN_STATUS if run.adopted else LOST_STATUS
        out = run.output
        output_bytes = out.total if out else _size(run.log_path)
        ru = run.rusage
        return RunResult(
            run_id=run.run_id, pid=run.pid, started_at=run.started_at, finished_at=time.time(),
            exit_code=exit_code, signal=sig, timed_out=run.timed_out, cancelled=run.cancelled,
            cancel_reason=run.cancel_reason, output_bytes=output_bytes,
            truncated=bool(out and out.truncated),
            cpu_user=ru.ru_utime if ru else 0.0, cpu_sys=ru.ru_stime if ru else 0.0,
            max_rss_kb=ru.ru_maxrss if ru else 0, error=error)

    def _close_output(self, run: _Run) -> None:
        if run.piped:
            self._sel.unregister(run.output.pipe_fd)
            run.output.close_pipe()

    def _close_pidfd(self, run: _Run) -> None:
        if run.pidfd is not None:
            self._sel.unregister(run.pidfd)
            os.close(run.pidfd)
            run.pidfd = None


def _size(path: Path | None) -> int:
    try:
        return os.stat(path).st_size if path is not None else 0
    except OSError:
        return 0
