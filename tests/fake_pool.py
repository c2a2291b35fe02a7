"""FakePool: the Pool contract without processes, on the same event loop (its runs end on loop
timers). It understands three programs: /bin/true (exit 0), /bin/false (exit 1) and
/bin/sleep N; anything else fails to spawn. A stand-in for any other executor (e.g. a Dask
cluster) in the contract tests of tests/test_pool_contract.py."""

from __future__ import annotations

import time

from cron_scheduler.loop import Loop, Timer
from cron_scheduler.executors.base import Claim, Handle, Outcome, Pool, RunResult, RunSpec


class FakePool(Pool):
    def __init__(self, max_workers: int = 10, kill_grace: float = 10.0, loop: Loop | None = None):
        self.max_workers = max_workers
        self.loop = Loop() if loop is None else loop
        self._runs: dict[int, tuple[RunSpec, float, Timer]] = {}
        self._done: list[RunResult] = []
        self._adoptable: dict[str, RunSpec] = {}  # handles it would find again

    def free_slots(self) -> int:
        return max(0, self.max_workers - len(self._runs))

    def running(self) -> set[int]:
        return set(self._runs)

    def results(self) -> list[RunResult]:
        done, self._done = self._done, []
        return done

    def submit(self, spec: RunSpec) -> Handle | None:
        started = time.time()
        program = spec.argv[0] if spec.argv else ""
        if program == "/bin/sleep":
            delay, code = float(spec.argv[1]), 0
        elif program in ("/bin/true", "/bin/false"):
            delay, code = 0.0, int(program == "/bin/false")
        else:
            self._end(spec.run_id, started, Outcome.SPAWN_FAILED, error=f"no such program: {program!r}")
            return None
        now = time.monotonic()
        timer = self.loop.call_at(now + delay, lambda: self._finish(spec.run_id, Outcome.EXITED, code))
        if spec.timeout is not None and spec.timeout < delay:
            timer.cancel()
            timer = self.loop.call_at(now + spec.timeout,
                                      lambda: self._finish(spec.run_id, Outcome.TIMED_OUT))
        self._runs[spec.run_id] = (spec, started, timer)
        handle = Handle.of({"marker": spec.marker})
        self._adoptable[spec.marker] = spec
        return handle

    def cancel(self, run_id: int, reason: str) -> None:
        if run_id in self._runs:
            self._runs[run_id][2].cancel()
            self._finish(run_id, Outcome.CANCELLED, cancel_reason=reason)

    def recover(self, claims: list[Claim]) -> set[int]:
        for claim in claims:  # nothing outlives a fake pool: all are forgotten
            self._adoptable.pop(claim.marker, None)
        return set()

    def shutdown(self, grace: float) -> list[RunResult]:
        for run_id in list(self._runs):
            self.cancel(run_id, "daemon shutdown")
        return self.results()

    def _finish(self, run_id: int, outcome: Outcome, code: int | None = None,
                cancel_reason: str | None = None) -> None:
        spec, started, _ = self._runs.pop(run_id)
        self._end(run_id, started, outcome, code, cancel_reason)

    def _end(self, run_id: int, started: float, outcome: Outcome, code: int | None = None,
             cancel_reason: str | None = None, error: str | None = None) -> None:
        self._done.append(RunResult(run_id, None, started, time.time(), exit_code=code, outcome=outcome,
                                    cancel_reason=cancel_reason, error=error))
        self.loop.notify()
