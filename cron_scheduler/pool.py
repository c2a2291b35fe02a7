"""The bounded pool of supervised children (DESIGN.md sections 5 and 7).

`Pool` (executors/base.py) is the boundary the engine talks to. `LocalPool`'s handle holds the
run's pid and its /proc start time; recover() finds a run by them, or by the marker its claim
carries when the previous daemon died before recording the handle.

`LocalPool` runs the children on this host, single-threaded, on the scheduler's event loop
(loop.py): it registers each run's output pipe and pidfd (exit notification) and one timer for
its nearest deadline (a cap, a SIGKILL, an output grace). Each run is reaped by its own pid when
its pidfd fires, so a status is never attributed to another process; the daemon is a child
subreaper, and orphaned descendants of runs that land on it are reaped separately
(`reap_orphans`), without ever taking a run's status.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
import time
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cron_scheduler.executors.base import Claim, Handle, Pool
from cron_scheduler.loop import Loop, Timer
from cron_scheduler import runner
from cron_scheduler.runner import (SPAWN_ERRORS, UNKNOWN_STATUS, Outcome, RunOutput, RunResult, RunSpec,  # noqa: F401
                                   TreeKill, exit_status, find_marked, open_log, outcome_of, pipe_path,
                                   process_running, remove_pipe, process_start_time, release,
                                   spawn_error_message)

log = logging.getLogger(__name__)

SPAWN_THREADS = 4  # spawns of one instant in flight at once (measured on 2 cores: 4 > 2 > 1)
OUTPUT_GRACE = 1.0  # after the main process exits, how long descendants may hold the pipe
LEFTOVERS = 256  # finished runs whose FIFO and cgroup may wait for removal while others run
# Prepared runs armed ahead at the most (or max_workers, if more): their processes wait before
# the run's program. Arming a second's runs before its instant, not only the first max_workers,
# takes each one's spawn and cgroup join out of the busy part of that second.
ARMED_AHEAD = 128
NO_PIDFD_POLL = 0.5  # exit polling interval on kernels without pidfd_open
AT_LEAST = ("output_bytes is a lower bound: output discarded past max_output before the daemon "
            "restart was not counted")

def resolve_argv(argv: tuple[str, ...]) -> tuple[str, ...]:
    """The executor's side of a command line: a `.py` script runs under this interpreter (the
    interpreter of the host that runs it, not of the process that scheduled it)."""
    if argv and argv[0].endswith(".py"):
        return (sys.executable,) + tuple(argv)
    return tuple(argv)


@dataclass(eq=False)
class _Run:
    """Live bookkeeping of one supervised run (mutable by nature; never leaves the pool)."""

    run_id: int
    pid: int
    marker: str
    started_at: float
    log_path: Path | None
    output: RunOutput | None = None
    adopted: bool = False  # left by a previous daemon: not our child, its status is unknowable
    at_least: bool = False  # adopted with its log full: earlier discarded output was not counted
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
    limited: bool = False  # its cgroup caps it: its OOM kills and peak memory are read at its end

    @property
    def piped(self) -> bool:
        """Its output pipe is still open (some process of the run may still write)."""
        return self.output is not None and self.output.pipe_fd is not None


class LocalPool(Pool):
    def __init__(self, max_workers: int = 10, kill_grace: float = 10.0, loop: Loop | None = None,
                 reap_orphans: bool = False):
        """reap_orphans: this process is a child subreaper, so orphaned descendants of runs
        re-parent to it; reap every child that is not a run (nothing else in the process may
        wait for children of its own then)."""
        if max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        self.max_workers = max_workers
        self.kill_grace = kill_grace
        self._own_loop = loop is None
        self.loop = Loop() if loop is None else loop
        self.reap_orphans = reap_orphans
        self._runs: dict[int, _Run] = {}
        self._children: dict[int, _Run] = {}  # pid -> run, for our own children not reaped yet
        self._done: list[RunResult] = []
        self._timer: Timer | None = None
        self._leftovers: list[tuple[str, Path | None]] = []  # (marker, log path) of finished runs
        self._soon: Timer | None = None  # one _service() after the current batch of events
        self._spawner = None  # threads for spawning several runs at one instant
        # prepared runs: run id -> (log fd, spawn, its arming on a spawn thread or None)
        self._prepared: dict[int, tuple[int, runner.Prepared, Future | None]] = {}
        self._unarmed: dict[int, None] = {}  # prepared runs that could be armed, in prepare order
        self._armed = 0  # prepared runs armed (or arming)
        if reap_orphans:
            self.loop.on_wake(self._service_soon)  # SIGCHLD

    # --- the interface ---------------------------------------------------------------------

    def free_slots(self) -> int:
        return max(0, self.max_workers - len(self._runs))

    def running(self) -> set[int]:
        return set(self._runs)

    def results(self) -> list[RunResult]:
        done, self._done = self._done, []
        return done

    def prepare(self, spec: RunSpec) -> None:
        """Open the run's log and output pipe, make its cgroup, build its argv and environment;
        a failure is left for submit() to report."""
        self.discard(spec.run_id)
        try:
            spec = dataclasses.replace(spec, argv=resolve_argv(spec.argv))
            log_fd = open_log(spec.log_path)
        except SPAWN_ERRORS:
            return
        try:
            prepared = runner.prepare(spec)
        except SPAWN_ERRORS:
            os.close(log_fd)
            return
        self._prepared[spec.run_id] = (log_fd, prepared, None)
        if prepared.held:
            self._unarmed[spec.run_id] = None
        self._arm_more()

    def discard(self, run_id: int) -> None:
        ready = self._take(run_id)
        if ready is not None:
            log_fd, prepared, arming = ready
            os.close(log_fd)
            if arming is None or arming.result() is None:  # a failed arming left nothing behind
                runner.discard(prepared)

    def _take(self, run_id: int) -> tuple[int, runner.Prepared, Future | None] | None:
        """A prepared run out of the prepared ones (to start it or discard it)."""
        ready = self._prepared.pop(run_id, None)
        if ready is not None and ready[2] is not None:
            self._armed -= 1
        self._unarmed.pop(run_id, None)
        return ready

    def _arm_more(self) -> None:
        """Keep up to ARMED_AHEAD (or max_workers) prepared runs armed (runner.arm: the process
        spawned and in its cgroup, held before the run's program), in the order they were
        prepared, on the spawn threads and without waiting for them: their start is then a write.
        Called at every prepare and start: a count and a queue, no scan of the prepared runs."""
        limit = max(self.max_workers, ARMED_AHEAD)
        while self._armed < limit and self._unarmed:
            run_id = next(iter(self._unarmed))
            del self._unarmed[run_id]
            log_fd, prepared, _ = self._prepared[run_id]
            self._prepared[run_id] = (log_fd, prepared, self._threads().submit(_arm_quiet, prepared))
            self._armed += 1

    def _threads(self):
        if self._spawner is None:
            from concurrent.futures import ThreadPoolExecutor
            self._spawner = ThreadPoolExecutor(SPAWN_THREADS, thread_name_prefix="spawn")
        return self._spawner

    def submit(self, spec: RunSpec) -> Handle | None:
        return self.submit_many([spec])[0]

    def submit_many(self, specs: list[RunSpec]) -> list[Handle | None]:
        """Start runs now. Everything but the spawns happens on this thread; the spawns (each
        blocks its thread until the child has exec'd) run on SPAWN_THREADS threads when there
        are several, which overlaps one child's exec with the next spawn."""
        ready = []  # (spec, log fd, prepared, started) of the runs that may spawn
        handles: list[Handle | None] = [None] * len(specs)
        for spec in specs:
            if spec.run_id in self._runs:
                raise ValueError(f"run {spec.run_id} is already running")
            started = time.time()
            got = self._prepared.get(spec.run_id)
            if got is not None and got[1].spec.marker != spec.marker:
                self.discard(spec.run_id)
                got = None
            self._take(spec.run_id)
            log_fd = None
            try:
                if got is None:
                    spec = dataclasses.replace(spec, argv=resolve_argv(spec.argv))
                    log_fd = open_log(spec.log_path)
                    got = (log_fd, runner.prepare(spec), None)
                elif got[2] is not None and got[2].result() is not None:  # its arming failed
                    os.close(got[0])
                    raise got[2].result()
            except SPAWN_ERRORS as exc:
                if log_fd is not None:
                    os.close(log_fd)
                self._failed(spec, started, exc)
                ready.append(None)
                continue
            ready.append((got[1].spec, got[0], got[1], started))
        todo = [r for r in ready if r is not None]
        cold = [r[2] for r in todo if r[2].pid is None]  # not armed: spawned now
        spawns = self._threads().map(_start_quiet, cold) if len(cold) > 1 else map(_start_quiet, cold)
        spawned = dict(zip(map(id, cold), spawns))
        # an armed run's start is one write: on this thread
        outcomes = [spawned[id(p)] if id(p) in spawned else _start_quiet(p) for _, _, p, _ in todo]
        for index, item in enumerate(ready):
            if item is None:
                continue
            spec, log_fd, prepared, started = item
            outcome = outcomes.pop(0)
            if isinstance(outcome, BaseException):
                os.close(log_fd)
                self._failed(spec, started, outcome)
                continue
            pid, out_fd = outcome
            runner.hold_pipe(prepared, pid)
            handles[index] = self._supervise(spec, log_fd, pid, out_fd, started)
        self._arm_more()
        return handles

    def _failed(self, spec: RunSpec, started: float, exc: BaseException) -> None:
        self._result(RunResult(spec.run_id, None, started, time.time(), outcome=Outcome.SPAWN_FAILED,
                               error=spawn_error_message(exc)))

    def _supervise(self, spec: RunSpec, log_fd: int, pid: int, out_fd: int, started: float) -> Handle:
        output = RunOutput(out_fd, log_fd, spec.max_output, spec.log_path)
        run = _Run(spec.run_id, pid, spec.marker, started, spec.log_path, output=output,
                   start_time=process_start_time(pid), limited=bool(spec.limits))
        self._children[pid] = run
        self.loop.add_reader(out_fd, lambda: self._on_output(run))
        if not self._track(run, spec.timeout):  # an armed process that died and was reaped
            self._runs[run.run_id] = run  # while it waited: its status is lost
            self._service_soon()
        self._arm()
        return Handle.of({"pid": pid, "pid_start": run.start_time}, pid)

    def recover(self, claims: list[Claim]) -> set[int]:
        """A run still runs if its main process does: the pid and start time its handle holds,
        or without a handle the session leader carrying its marker."""
        live = set()
        for claim in claims:
            if self._adopt(claim):
                live.add(claim.run_id)
            else:
                self._abandon(claim)
        return live

    def _adopt(self, claim: Claim) -> bool:
        state = claim.handle.fields() if claim.handle is not None else {}
        pid, start_time = state.get("pid"), state.get("pid_start")
        if pid is None:  # the previous daemon died before recording it: find it by its marker
            pid = _session_leader(claim.marker)
            start_time = None if pid is None else process_start_time(pid)
        if pid is None or start_time is None or not process_running(pid, start_time):
            return False
        log_path, max_output = claim.log_path, claim.max_output
        output = RunOutput.resume(log_path, max_output) if log_path is not None else None
        run = _Run(claim.run_id, pid, claim.marker, claim.started_at, log_path, output=output, adopted=True,
                   at_least=output is not None and output.kept >= max_output, start_time=start_time)
        if not self._track(run, claim.timeout_remaining):
            if output is not None:
                output.close()
            return False
        if run.piped:
            self.loop.add_reader(output.pipe_fd, lambda: self._on_output(run))
        self._arm()
        return True

    def _abandon(self, claim: Claim) -> None:
        """Forget a run that no longer runs: its FIFO goes (its directories are not followed)."""
        if claim.log_path is not None:
            remove_pipe(pipe_path(Path(claim.log_path)))

    def cancel(self, run_id: int, reason: str) -> None:
        run = self._runs.get(run_id)
        if run is None or run.stop is not None:
            return
        run.cancelled, run.cancel_reason = True, reason
        self._terminate(run, self.kill_grace)
        self._arm()

    def shutdown(self, grace: float) -> list[RunResult]:
        for run_id in list(self._prepared):
            self.discard(run_id)
        for run in list(self._runs.values()):
            if run.stop is None:
                run.cancelled, run.cancel_reason = True, "daemon shutdown"
            self._terminate(run, grace)
        self._service()
        end = time.monotonic() + grace + TreeKill.GIVE_UP + OUTPUT_GRACE + 1.0
        while self._runs and time.monotonic() < end:
            self.loop.run(max(0.0, end - time.monotonic()))
        for run in list(self._runs.values()):  # unkillable: report, do not hang the daemon
            self._done.append(self._finish(run, error="still running after SIGKILL"))
        self._tidy()
        if self._timer is not None:
            self._timer.cancel()
        if self._spawner is not None:
            self._spawner.shutdown()
            self._spawner = None
        if self._own_loop:
            self.loop.close()
        return self.results()

    # --- supervision -------------------------------------------------------------------------

    def _result(self, result: RunResult) -> None:
        self._done.append(result)
        self.loop.notify()

    def _track(self, run: _Run, timeout: float | None) -> bool:
        """Supervise run: its exit (a pidfd) and timeout cap. False if the process is gone."""
        try:
            run.pidfd = os.pidfd_open(run.pid)
        except ProcessLookupError:
            return False
        except (AttributeError, OSError):  # old kernel or seccomp: exits are polled instead
            pass
        else:
            self.loop.add_reader(run.pidfd, lambda: self._on_exit(run))
        if timeout is not None:
            run.deadline = time.monotonic() + max(0.0, timeout)
        self._runs[run.run_id] = run
        return True

    def _on_exit(self, run: _Run) -> None:
        run.pidfd_fired = True
        self._close_pidfd(run)
        self._service_soon()

    def _on_output(self, run: _Run) -> None:
        if run.piped and run.output.pump():
            self._close_output(run)
            self._service_soon()  # end of output may be what the run waited for

    def _service_soon(self) -> None:
        """_service() once the loop has dispatched the events at hand (one pass for all)."""
        if self._soon is None or self._soon.cancelled:
            self._soon = self.loop.call_at(0.0, self._service)

    def _reap(self, run: _Run, now: float) -> None:
        """Take our child's wait status by its own pid (never wait4(-1): that could hand us
        another process's status)."""
        try:
            pid, status, rusage = os.wait4(run.pid, os.WNOHANG)
        except ChildProcessError:  # reaped by someone else: status lost
            pid, status, rusage = run.pid, None, None
        if pid == run.pid:
            run.status, run.rusage, run.exited_at = status, rusage, now
            self._children.pop(run.pid, None)
            self._close_pidfd(run)

    def _reap_orphans(self, now: float) -> None:
        """Reap descendants of runs re-parented to this subreaper. Looks first (WNOWAIT): a
        run's own exit is taken by its pid, for that run."""
        while True:
            try:
                info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                return
            if info is None or not info.si_pid:
                return
            run = self._children.get(info.si_pid)
            if run is not None:
                self._reap(run, now)
                continue
            try:
                os.waitpid(info.si_pid, os.WNOHANG)
            except ChildProcessError:
                pass

    def _service(self) -> None:
        """Reap, act on due deadlines, and hand finished runs over; then re-arm the timer."""
        now = time.monotonic()
        if self.reap_orphans:
            self._reap_orphans(now)
        for run in list(self._runs.values()):
            if run.exited_at is None:
                self._check_exit(run, now)
            self._advance(run, now)
            if self._ready(run, now):
                self._result(self._finish(run))
        self._arm(now)
        if not self._runs or len(self._leftovers) >= LEFTOVERS:
            self._tidy()

    def _tidy(self) -> None:
        """Remove what finished runs left: their FIFOs and cgroups. Nothing waits for it, so
        it waits until no run is live (or it piles up): a cgroup's rmdir costs the kernel
        ~0.2 ms, which a burst of runs spends better on starting the next ones."""
        leftovers, self._leftovers = self._leftovers, []
        for marker, log_path in leftovers:
            if log_path is not None:
                remove_pipe(pipe_path(log_path))
            release(marker)  # its cgroup, if it has one

    def _check_exit(self, run: _Run, now: float) -> None:
        if not run.adopted:
            if run.pidfd_fired or run.pidfd is None:
                self._reap(run, now)
        elif run.pidfd_fired or (run.pidfd is None and not process_running(run.pid, run.start_time)):
            run.exited_at = now  # gone, but not our child: its status is unknowable

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
            run.output.pump(max_chunks=64)
            self._close_output(run)
        return True

    def _terminate(self, run: _Run, grace: float) -> None:
        if run.stop is not None:
            run.stop.hasten(grace, time.monotonic())
        else:
            run.stop = TreeKill(run.pid, run.marker, grace, time.monotonic())

    def _arm(self, now: float | None = None) -> None:
        """One loop timer at the nearest deadline of any run (replacing the previous one)."""
        now = time.monotonic() if now is None else now
        times = []
        for run in self._runs.values():
            if run.stop is not None:
                times.append(run.stop.next_at())
            elif run.deadline is not None and run.exited_at is None:
                times.append(run.deadline)
            if run.exited_at is not None and run.piped and (run.stop is None or run.stop.done):
                times.append(run.exited_at + OUTPUT_GRACE)  # while a stop runs, its times rule
            if run.exited_at is None and run.pidfd is None and not run.pidfd_fired:
                times.append(now + NO_PIDFD_POLL)
        times = [t for t in times if t is not None]
        when = min(times) if times else None
        if self._timer is not None:
            if not self._timer.cancelled and self._timer.when == when:
                return
            self._timer.cancel()
            self._timer = None
        if when is not None:
            self._timer = self.loop.call_at(when, self._service)

    def _finish(self, run: _Run, error: str | None = None) -> RunResult:
        self._close_output(run)
        self._close_pidfd(run)
        if run.output is not None:
            run.output.close(remove_fifo=False)  # the log file
        self._leftovers.append((run.marker, run.log_path))
        del self._runs[run.run_id]
        self._children.pop(run.pid, None)
        exit_code, sig = exit_status(run.status)
        outcome, why = outcome_of(run.status, run.timed_out, run.cancelled, run.adopted)
        error = error or why
        if run.at_least:
            error = f"{error}; {AT_LEAST}" if error else AT_LEAST
        out = run.output
        output_bytes = out.total if out else _size(run.log_path)
        ru = run.rusage
        oom, peak = runner.usage(run.marker) if run.limited else (False, None)  # before release()
        return RunResult(
            run_id=run.run_id, pid=run.pid, started_at=run.started_at, finished_at=time.time(),
            exit_code=exit_code, signal=sig, outcome=outcome, cancel_reason=run.cancel_reason,
            output_bytes=output_bytes, truncated=bool(out and out.truncated),
            cpu_user=ru.ru_utime if ru else 0.0, cpu_sys=ru.ru_stime if ru else 0.0,
            max_rss_kb=ru.ru_maxrss if ru else 0, error=error, oom_killed=oom, memory_peak=peak)

    def _close_output(self, run: _Run) -> None:
        if run.piped:
            self.loop.remove_reader(run.output.pipe_fd)
            run.output.close_pipe()

    def _close_pidfd(self, run: _Run) -> None:
        if run.pidfd is not None:
            self.loop.remove_reader(run.pidfd)
            os.close(run.pidfd)
            run.pidfd = None


def _arm_quiet(prepared: runner.Prepared) -> BaseException | None:
    """runner.arm() on a spawn thread: None, or the exception it raised."""
    try:
        runner.arm(prepared)
    except SPAWN_ERRORS as exc:
        return exc
    return None


def _start_quiet(prepared: runner.Prepared):
    """runner.start() on a spawn thread: (pid, fd), or the exception it raised."""
    try:
        return runner.start(prepared, hold=False)
    except SPAWN_ERRORS as exc:
        return exc


def _session_leader(marker: str) -> int | None:
    """The main process of a run found by its marker: it leads its own session (setsid at
    spawn); of several such (a descendant may call setsid too), the oldest."""
    leaders = []
    for pid in find_marked(marker):
        try:
            if os.getsid(pid) == pid:
                leaders.append((process_start_time(pid) or 0, pid))
        except OSError:
            continue
    return min(leaders)[1] if leaders else None


def _size(path: Path | None) -> int:
    try:
        return os.stat(path).st_size if path is not None else 0
    except OSError:
        return 0
