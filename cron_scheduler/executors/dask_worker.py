"""The worker side of DaskPool: one Dask task per run starts the job's process on the worker
and supervises it with the runner's semantics (own session, environment with the run's marker,
cwd, stdin /dev/null, stdout+stderr together, timeout with SIGTERM -> grace -> SIGKILL of the
whole tree found by process group and marker, output capped, exit code or signal, rusage).

Exactly once: before it spawns anything the task claims its marker on the Dask scheduler
(`claim`, atomic: it runs on the scheduler's event loop). Dask re-runs a task whose worker
died; that second attempt finds the claim taken and returns {"claimed": False} without
starting the job, and the daemon records the run interrupted (its own retry policy applies).

A run outlives nothing that supervises it: its processes carry the pid, start time and pid
namespace of the worker process that spawned them (SUPERVISOR_VAR). When a worker dies
(killed, out of memory), `kill_orphans` on any other worker of that host kills what it left
running: the daemon asks every worker for it when it sees a worker lost, and each worker does
it as it joins (the OrphanSweep plugin: a restarted worker cleans up after the one it replaces).

Everything the daemon learns travels as Dask events on the run's topic (`topic(marker)`), kept
by the scheduler, so that a restarted daemon replays them and re-attaches: "start" (worker,
pid), "out" chunks (offset, data: only the first max_output bytes; the rest is counted) and
"end" (the result). Control reaches the process through `cancel` (Client.run on the workers).
This module is imported on the workers and on the scheduler: install the package there too.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import subprocess
import threading
import time

from cron_scheduler.pool import OUTPUT_GRACE, resolve_argv
from cron_scheduler.runner import (CHUNK, MARKER_VAR, SPAWN_ERRORS, Outcome, TreeKill, exit_status,
                                   outcome_of, process_environs, process_running, process_start_time,
                                   spawn_error_message)

try:
    from distributed.diagnostics.plugin import WorkerPlugin
except ImportError:  # imported without the dask extra (the daemon's local pool never is)
    WorkerPlugin = object

log = logging.getLogger("cron_scheduler")

TOPIC_PREFIX = "cron-scheduler-run-"
FLUSH_EVERY = 0.2  # output is sent at least this often while a run writes
POLL = 0.05  # supervision tick (exit, deadline, stop) while the pipe is quiet
CLAIM_TTL = 7 * 24 * 3600.0  # claims older than this are forgotten (their futures are long released)
SUPERVISOR_VAR = "CRON_SCHEDULER_DASK_SUPERVISOR"  # the run's worker process: _supervisor()


def topic(marker: str) -> str:
    return TOPIC_PREFIX + marker


class _Control:
    """A stop request for a run executing in this worker process (set from Client.run)."""

    def __init__(self):
        self.reason: str | None = None
        self.grace: float | None = None
        self.pid: int | None = None


_lock = threading.Lock()
_runs: dict[str, _Control] = {}  # marker -> control, for runs executing in this worker process
_stopped: dict[str, tuple[str, float]] = {}  # stops that arrived before their run started


# --- on the scheduler --------------------------------------------------------------------

def claim(marker: str, now: float, dask_scheduler=None) -> bool:
    """Take the run's claim; False if it was taken before (the task is a re-run)."""
    claims = dask_scheduler.__dict__.setdefault("_cron_scheduler_claims", {})
    if marker in claims:
        return False
    claims[marker] = now
    if len(claims) % 4096 == 0:
        for old in [m for m, at in claims.items() if at < now - CLAIM_TTL]:
            del claims[old]
    return True


def forget(topics: list[str], dask_scheduler=None) -> None:
    """Drop the events of finished runs from the scheduler's memory."""
    broker = getattr(dask_scheduler, "_broker", None)
    for name in topics:
        getattr(broker, "_topics", {}).pop(name, None)


# --- on a worker, through Client.run -------------------------------------------------------

def cancel(marker: str, reason: str, grace: float) -> bool:
    """Stop the run with this marker if it executes here (or when it starts here); True if it ran."""
    with _lock:
        control = _runs.get(marker)
        if control is None:
            _stopped[marker] = (reason, grace)
            if len(_stopped) > 10000:
                _stopped.pop(next(iter(_stopped)))
            return False
        if control.reason is None:
            control.reason, control.grace = reason, grace
        else:
            control.grace = min(control.grace, grace)
        return True


async def cancel_soon(marker: str, reason: str, grace: float) -> None:
    """cancel() as a coroutine: Client.run(..., wait=False) accepts only those."""
    cancel(marker, reason, grace)


def kill_orphans() -> list[str]:
    """SIGKILL, on this host, every process of a run whose supervising worker process is gone:
    nothing would stop it at its time cap or report it any more, and the daemon has recorded
    the run interrupted. Returns the markers of the runs killed."""
    killed: set[str] = set()
    for _ in range(5):  # a process forked during a round is found by the next one
        orphans = _orphans()
        if not orphans:
            break
        for pid, marker in orphans.items():
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                continue
            killed.add(marker)
    if killed:
        log.warning("killed the processes of %d run(s) whose Dask worker died: %s", len(killed),
                    ", ".join(sorted(killed)))
    return sorted(killed)


async def kill_orphans_soon() -> None:
    """kill_orphans() as a coroutine, for Client.run(..., wait=False)."""
    kill_orphans()


class OrphanSweep(WorkerPlugin):
    """Registered by the daemon: every worker, as it joins the cluster, kills the runs left by
    a worker process of its host that died (kill_orphans)."""

    name = "cron-scheduler-orphan-sweep"

    def setup(self, worker) -> None:
        kill_orphans()


def _orphans() -> dict[int, str]:
    """pid -> run marker of the processes whose SUPERVISOR_VAR names a process that is gone."""
    found: dict[int, str] = {}
    alive: dict[str, bool] = {}
    for pid, environ in process_environs():
        values = dict(entry.partition(b"=")[::2] for entry in environ)
        marker, supervisor = values.get(MARKER_VAR.encode()), values.get(SUPERVISOR_VAR.encode())
        if marker and supervisor:
            supervisor = supervisor.decode(errors="replace")
            if supervisor not in alive:
                alive[supervisor] = _running(supervisor)
            if not alive[supervisor]:
                found[pid] = marker.decode(errors="replace")
    return found


def _running(supervisor: str) -> bool:
    pid, start, space = (supervisor.split(":") + ["", "", ""])[:3]
    if not (pid.isdigit() and start.isdigit()) or space != _pid_namespace():
        return True  # not written by _spawn, or a pid of another pid namespace: never a reason to kill
    return process_running(int(pid), int(start))


def _supervisor() -> str:
    """This worker process, as its runs' processes carry it: pid, start time, pid namespace."""
    return f"{os.getpid()}:{process_start_time(os.getpid())}:{_pid_namespace()}"


def _pid_namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid").strip("pid:[]")
    except OSError:
        return "?"


def find(marker: str) -> int | None:
    """The pid of the run with this marker if it executes in this worker process, else None;
    0 if it executes but has no process yet."""
    with _lock:
        control = _runs.get(marker)
    return None if control is None else (control.pid or 0)


# --- the task --------------------------------------------------------------------------------

def run_job(spec: dict) -> dict:
    """The Dask task of one run: claim, spawn, supervise, report. Returns the "end" message
    (or {"claimed": False} for a re-run, which starts nothing)."""
    from distributed import get_client, get_worker
    worker = get_worker()
    marker = spec["marker"]
    if not get_client().run_on_scheduler(claim, marker, time.time()):
        return {"claimed": False}
    name = topic(marker)

    def send(msg: dict) -> None:
        worker.log_event(name, msg)

    control = _Control()
    with _lock:
        _runs[marker] = control
        early = _stopped.pop(marker, None)
    try:
        if early is not None:  # stopped before it started: nothing is spawned
            now = time.time()
            end = _end(spec, None, now, now, Outcome.CANCELLED, cancel_reason=early[0])
        else:
            end = _supervise(spec, control, worker.address, send)
        send(end)
        return end
    finally:
        with _lock:
            _runs.pop(marker, None)


def _end(spec: dict, pid: int | None, started: float, finished: float, outcome: Outcome, **fields) -> dict:
    end = {"kind": "end", "run_id": spec["run_id"], "pid": pid, "started_at": started, "finished_at": finished,
           "outcome": outcome.value, "exit_code": None, "signal": None, "cancel_reason": None,
           "output_bytes": 0, "kept": 0, "truncated": False, "cpu_user": 0.0, "cpu_sys": 0.0,
           "max_rss_kb": 0, "error": None}
    end.update(fields)
    return end


def _spawn(spec: dict) -> tuple[subprocess.Popen, int]:
    argv = resolve_argv(tuple(spec["argv"]))
    if not argv:
        raise ValueError("empty command line")
    env = dict(spec["env"])
    env[MARKER_VAR] = spec["marker"]
    env[SUPERVISOR_VAR] = _supervisor()
    read_fd, write_fd = os.pipe()
    try:
        proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=write_fd, stderr=subprocess.STDOUT,
                                cwd=spec.get("cwd"), env=env, close_fds=True, start_new_session=True)
    except BaseException:
        os.close(read_fd)
        raise
    finally:
        os.close(write_fd)
    return proc, read_fd


def _supervise(spec: dict, control: _Control, address: str, send) -> dict:
    started = time.time()
    try:
        proc, fd = _spawn(spec)
    except SPAWN_ERRORS as exc:
        return _end(spec, None, started, time.time(), Outcome.SPAWN_FAILED, error=spawn_error_message(exc))
    pid = control.pid = proc.pid
    proc.returncode = 0  # reaped below with os.wait4 (its status and rusage), not by Popen
    send({"kind": "start", "worker": address, "pid": pid, "started_at": started})
    os.set_blocking(fd, False)
    max_output, grace = max(0, int(spec["max_output"])), float(spec["kill_grace"])
    deadline = None if spec.get("timeout") is None else time.monotonic() + max(0.0, float(spec["timeout"]))
    total = kept = 0
    pending = bytearray()
    flushed = time.monotonic()
    status = rusage = exited_at = None
    stop: TreeKill | None = None
    timed_out = False

    def flush() -> None:
        nonlocal pending, flushed
        if pending:
            send({"kind": "out", "offset": kept - len(pending), "data": bytes(pending)})
            pending = bytearray()
        flushed = time.monotonic()

    while True:
        if fd is not None:
            ready, _, _ = select.select([fd], [], [], POLL)
            for _ in range(16 if ready else 0):
                try:
                    data = os.read(fd, CHUNK)
                except BlockingIOError:
                    break
                if not data:
                    os.close(fd)
                    fd = None
                    break
                total += len(data)
                room = max_output - kept
                if room > 0:
                    pending += data[:room]
                    kept += min(room, len(data))
                if len(pending) >= CHUNK:
                    flush()
        else:
            time.sleep(POLL)
        now = time.monotonic()
        if now - flushed >= FLUSH_EVERY:
            flush()
        if exited_at is None:
            try:
                got, wstatus, ru = os.wait4(pid, os.WNOHANG)
            except ChildProcessError:
                got, wstatus, ru = pid, None, None
            if got == pid:
                status, rusage, exited_at = wstatus, ru, now
        if stop is not None:
            if control.grace is not None:
                stop.hasten(control.grace, now)
            stop.step(now, settled=exited_at is not None and fd is None)
        elif control.reason is not None:
            stop = TreeKill(pid, spec["marker"], control.grace, now)
        elif deadline is not None and now >= deadline and exited_at is None:
            timed_out = True
            stop = TreeKill(pid, spec["marker"], grace, now)
        if exited_at is not None and (stop is None or stop.done):
            if fd is None or now >= exited_at + OUTPUT_GRACE:
                break
    if fd is not None:
        os.close(fd)
    flush()
    code, sig = exit_status(status)
    outcome, error = outcome_of(status, timed_out, control.reason is not None)
    return _end(spec, pid, started, time.time(), outcome, exit_code=code, signal=sig,
                cancel_reason=control.reason, output_bytes=total, kept=kept, truncated=total > kept,
                cpu_user=rusage.ru_utime if rusage else 0.0, cpu_sys=rusage.ru_stime if rusage else 0.0,
                max_rss_kb=rusage.ru_maxrss if rusage else 0, error=error)
