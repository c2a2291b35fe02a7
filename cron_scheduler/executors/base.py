"""The contract between the engine and the pools that run its jobs (DESIGN.md sections 5, 7).

The engine hands a pool a `RunSpec`, stores the `Handle` it gets back as is, and later closes the
run from its `RunResult`, whose `Outcome` says how it ended. After a daemon restart it gives the
pool back what it stored (`Claim`s) and `Pool.recover()` says which runs still run. How a pool
finds a run again (pids, start times, /proc, markers, a cluster's events) stays inside the pool:
nothing here, and nothing in the engine, knows of processes.
"""

from __future__ import annotations

import abc
import enum
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cron_scheduler.loop import Loop


@dataclass(frozen=True)
class RunSpec:
    run_id: int
    job_id: str
    argv: tuple[str, ...]  # final argv, exec'd directly
    env: dict[str, str]  # complete child environment; spawn() adds the marker
    cwd: str | None
    log_path: Path  # stdout+stderr together; parent dirs 0700, file 0600
    max_output: int  # bytes kept in log_path; the rest is read, counted and discarded
    timeout: float | None  # seconds; None = no cap
    marker: str  # unique token identifying every process of this run
    resources: dict[str, float] | None = None  # placement on a cluster (executors/): worker resources
    worker: str | None = None  # placement on a cluster: this worker only
    user: str | None = None  # the account it runs as (runas.py)
    group: str | None = None
    nice: int | None = None
    limits: dict[str, str] | None = None  # cgroup file -> value (cgroup.limit_files)


class Outcome(enum.Enum):
    """How a run ended, as its pool saw it (the engine maps it to a run status)."""

    EXITED = "exited"  # exit_code holds its exit status
    SIGNALED = "signaled"  # killed by a signal nobody in the scheduler sent
    TIMED_OUT = "timed out"  # hit its cap; the pool killed its tree
    CANCELLED = "cancelled"  # stopped on request (stop, replace, shutdown)
    SPAWN_FAILED = "spawn failed"  # never started; error says why
    UNKNOWN = "unknown"  # re-supervised after a daemon restart: not our child, status unknowable
    LOST = "lost"  # our child, but its status was reaped elsewhere


@dataclass(frozen=True)
class RunResult:
    run_id: int
    pid: int | None
    started_at: float  # time.time() just before spawn
    finished_at: float
    exit_code: int | None = None  # None when killed by a signal, unknown, or spawn failed
    signal: int | None = None  # terminating signal number
    outcome: Outcome = Outcome.EXITED
    cancel_reason: str | None = None
    output_bytes: int = 0  # total bytes written by the run, discarded ones included
    truncated: bool = False
    cpu_user: float = 0.0
    cpu_sys: float = 0.0
    max_rss_kb: int = 0
    error: str | None = None  # why the run could not be started / observed
    oom_killed: bool = False  # the kernel's OOM killer killed a process of the run (its cgroup's)
    memory_peak: int | None = None  # bytes: its cgroup's memory.peak (runs with limits)

    @property
    def timed_out(self) -> bool:
        return self.outcome is Outcome.TIMED_OUT

    @property
    def cancelled(self) -> bool:
        return self.outcome is Outcome.CANCELLED


@dataclass(frozen=True)
class Handle:
    """What a pool needs to find a started run again after a daemon restart. The engine stores
    `state` (JSON text) as one column and gives it back in a Claim; only the pool that made it
    reads it. `pid` is for people (history's pid, the log), never used to find the run."""

    state: str
    pid: int | None = None

    @classmethod
    def of(cls, state: dict[str, Any], pid: int | None = None) -> "Handle":
        return cls(json.dumps(state, sort_keys=True), pid)

    def fields(self) -> dict[str, Any]:
        """The pool's side: its state back ({} if it is not a JSON object)."""
        try:
            state = json.loads(self.state)
        except ValueError:
            return {}
        return state if isinstance(state, dict) else {}


@dataclass(frozen=True)
class Claim:
    """A run a previous daemon left claimed or running, as the engine gives it to recover()."""

    run_id: int
    marker: str  # its RunSpec.marker, stored with the claim before the run started
    handle: Handle | None  # None: the daemon died before recording what submit() returned
    started_at: float
    timeout_remaining: float | None  # of its cap; None: no cap
    log_path: Path | None
    max_output: int


class Pool(abc.ABC):
    """Runs that are started now and supervised until they finish, on the scheduler's loop."""

    max_workers: int
    kill_grace: float  # seconds between SIGTERM and SIGKILL of a stop or a cap; may change (reload)
    loop: Loop

    @abc.abstractmethod
    def free_slots(self) -> int:
        """How many more runs may be submitted now."""

    @abc.abstractmethod
    def submit(self, spec: RunSpec) -> Handle | None:
        """Start a run now; its handle, or None when it could not start (its SPAWN_FAILED
        result comes with the next results())."""

    def submit_many(self, specs: list[RunSpec]) -> list[Handle | None]:
        """submit() each, in order; a pool may start them concurrently."""
        return [self.submit(spec) for spec in specs]

    def prepare(self, spec: RunSpec) -> None:
        """Do ahead what submit(spec) can do before the instant it starts (optional)."""

    def discard(self, run_id: int) -> None:
        """Undo prepare() for a run that will not be submitted."""

    @abc.abstractmethod
    def cancel(self, run_id: int, reason: str) -> None:
        """Stop a run: SIGTERM now, SIGKILL after the grace period. Unknown ids are ignored."""

    @abc.abstractmethod
    def running(self) -> set[int]:
        """The ids of the runs not finished yet."""

    @abc.abstractmethod
    def results(self) -> list[RunResult]:
        """The runs that finished since the last call (never blocks). The pool calls
        loop.notify() whenever one is ready."""

    def recover(self, claims: list[Claim]) -> set[int]:
        """Re-supervise what a previous daemon left: each claim's run if it still runs (found
        by its handle, or by its marker when none was recorded); the ids of those. The others
        are forgotten: what the pool kept for them is cleaned up, what they left running is not
        chased (it would not have been without the crash). A pool whose runs cannot outlive it
        finds none."""
        return set()

    @abc.abstractmethod
    def shutdown(self, grace: float) -> list[RunResult]:
        """Stop every run (SIGTERM, SIGKILL after grace) and return all outstanding results.
        The pool is closed afterwards."""

    def wait(self, timeout: float | None) -> list[RunResult]:
        """Run the loop until a run finishes (or another notification, or timeout); the runs
        that finished. For callers that own no loop of their own (tests, tools)."""
        done = self.results()
        if not done:
            self.loop.run(timeout)
            done = self.results()
        return done
