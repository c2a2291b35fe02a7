"""DaskPool: the Pool contract (executors/base.py) with every run executed on a Dask `distributed` cluster.

Each run is one Dask task (executors/dask_worker.run_job, `retries=0`) that starts the job's
process on a worker with the runner's semantics and reports over Dask events on the run's
topic: its start, its output (written here to runs/<job>/<run-id>.log as it comes, so `logs
--follow` works unchanged) and its end (the RunResult). Dask's callbacks run in the client's
thread: they only queue what they got and write a byte to a pipe the daemon's loop watches;
everything else happens on the loop.

- Control: cancel() asks every worker to stop the run (Client.run), which kills the tree
  there (TERM -> grace -> KILL); a task not started yet is cancelled in Dask too.
- Worker loss: a run whose worker left the cluster, or whose task Dask re-ran elsewhere (the
  re-run finds the run's claim taken and starts nothing), ends with Outcome.UNKNOWN: the engine
  records it `interrupted`, and the job's retries apply. What the lost worker left running is
  killed by the other workers of its host (asked at once) or by a worker that joins there later
  (dask_worker.OrphanSweep, registered here).
- Daemon restart: the claim's marker names the run's topic; recover() replays it and asks the
  workers whether it still executes, and follows it to its end (or takes the end it reached
  while no daemon was watching).
- Placement: RunSpec.resources -> Dask worker resources, RunSpec.worker -> that worker only.
  max_workers stays the limit of runs at once across the cluster.
- A run that cannot start is known only on its worker: submit() returns a handle and the
  SPAWN_FAILED result comes later.
`distributed` is imported only when this pool is built (`--executor dask`).
"""

from __future__ import annotations

import logging
import os
import queue
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cron_scheduler import safefs
from cron_scheduler.errors import OperationalError
from cron_scheduler.executors import dask_worker
from cron_scheduler.loop import Loop, Timer
from cron_scheduler.executors.base import Claim, Handle, Pool
from cron_scheduler.runner import SPAWN_ERRORS, TreeKill, Outcome, RunResult, RunSpec, open_log, spawn_error_message
from cron_scheduler.runfiles import in_run_dir

log = logging.getLogger(__name__)

CHECK_EVERY = 1.0  # how often the cluster's workers are checked while runs execute
END_WAIT = 2.0  # a task that returned waits this long for its "end" event (and the output before it)
CONNECT_TIMEOUT = 20.0
WORKER_LOST = "its Dask worker {} left the cluster while it ran; not started again"
RERUN = "its Dask worker was lost while it ran (Dask re-ran the task; the claim stopped it)"


@dataclass(eq=False)
class _DaskRun:
    run_id: int
    marker: str
    started_at: float
    log_path: Path | None
    log_fd: int | None
    max_output: int
    kept: int = 0  # bytes in the log file
    future: Any = None
    worker: str | None = None
    pid: int | None = None
    adopted: bool = False
    cancelled: bool = False
    cancel_reason: str | None = None
    returned: dict | None = None  # what the task returned, while its "end" event is awaited
    end_timer: Timer | None = None


class DaskPool(Pool):
    def __init__(self, address: str, max_workers: int = 10, kill_grace: float = 10.0, loop: Loop | None = None,
                 connect_timeout: float = CONNECT_TIMEOUT):
        if max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        try:
            import distributed
        except ImportError:
            raise OperationalError("--executor dask needs the dask extra: pip install 'cron-scheduler-server[dask]'") from None
        try:
            self.client = distributed.Client(address, timeout=connect_timeout, set_as_default=False)
        except (OSError, TimeoutError, ValueError) as exc:
            raise OperationalError(f"cannot reach the Dask scheduler at {address}: {exc}") from None
        try:
            self.client.register_plugin(dask_worker.OrphanSweep(), name=dask_worker.OrphanSweep.name)
        except Exception as exc:  # an old worker, a failed sweep: runs still execute
            log.warning("cannot register the orphan sweep on the Dask workers: %s", exc)
        self.address = address
        self.max_workers = max_workers
        self.kill_grace = kill_grace
        self._own_loop = loop is None
        self.loop = Loop() if loop is None else loop
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._wake_r, self._wake_w = os.pipe()
        for fd in (self._wake_r, self._wake_w):
            os.set_blocking(fd, False)
            os.set_inheritable(fd, False)
        self.loop.add_reader(self._wake_r, self._drain)
        self._runs: dict[int, _DaskRun] = {}
        self._by_marker: dict[str, _DaskRun] = {}
        self._done: list[RunResult] = []
        self._forget: list[str] = []  # topics of finished runs, dropped from the scheduler in batches
        self._check: Timer | None = None
        self._closed = False

    # --- the interface ---------------------------------------------------------------------

    def free_slots(self) -> int:
        return max(0, self.max_workers - len(self._runs))

    def running(self) -> set[int]:
        return set(self._runs)

    def results(self) -> list[RunResult]:
        self._drain()
        done, self._done = self._done, []
        return done

    def submit(self, spec: RunSpec) -> Handle | None:
        if spec.run_id in self._runs:
            raise ValueError(f"run {spec.run_id} is already running")
        started = time.time()
        try:
            if spec.user or spec.limits or spec.nice is not None:  # refused, never ignored
                raise ValueError("--user, --nice and resource limits are not supported with the dask executor")
            log_fd = open_log(spec.log_path)
        except SPAWN_ERRORS as exc:
            self._result(RunResult(spec.run_id, None, started, time.time(), outcome=Outcome.SPAWN_FAILED,
                                   error=spawn_error_message(exc)))
            return None
        run = _DaskRun(spec.run_id, spec.marker, started, spec.log_path, log_fd, spec.max_output)
        self._add(run)
        payload = {"run_id": spec.run_id, "job_id": spec.job_id, "argv": list(spec.argv), "env": dict(spec.env),
                   "cwd": spec.cwd, "max_output": spec.max_output, "timeout": spec.timeout,
                   "marker": spec.marker, "kill_grace": self.kill_grace}
        placement: dict[str, Any] = {}
        if getattr(spec, "resources", None):
            placement["resources"] = dict(spec.resources)
        if getattr(spec, "worker", None):
            placement.update(workers=[spec.worker], allow_other_workers=False)
        run.future = self.client.submit(dask_worker.run_job, payload, key=f"cron-run-{spec.run_id}-{spec.marker}",
                                        pure=False, retries=0, **placement)
        run.future.add_done_callback(lambda f, marker=spec.marker: self._post(("done", marker, f)))
        self._arm()
        return Handle.of({})  # the claim's marker names the run's topic: nothing more to keep

    def recover(self, claims: list[Claim]) -> set[int]:
        live = set()
        for claim in claims:
            if self._adopt(claim):
                live.add(claim.run_id)
            elif claim.marker:  # forgotten: its topic goes
                self._forget.append(dask_worker.topic(claim.marker))
        return live

    def _adopt(self, claim: Claim) -> bool:
        """The run's topic replayed; it still runs if a worker executes it or its end is there."""
        marker, log_path = claim.marker, claim.log_path
        if not marker or claim.run_id in self._runs:
            return False
        run = _DaskRun(claim.run_id, marker, claim.started_at, log_path, None, claim.max_output, adopted=True)
        self._add(run)  # subscribed before the replay: nothing is missed in between
        events = [msg for _, msg in self.client.get_events(dask_worker.topic(marker)) if isinstance(msg, dict)]
        found = {addr: pid for addr, pid in self.client.run(dask_worker.find, marker, on_error="ignore").items()
                 if isinstance(pid, int)}
        if not found and not any(msg.get("kind") == "end" for msg in events):
            self._drop(run)
            return False
        run.log_fd, run.kept = _reopen_log(log_path)
        if found:
            run.worker = next(iter(found))
        for msg in events:
            self._on_event(run, msg)
        self._arm()
        return True

    def cancel(self, run_id: int, reason: str) -> None:
        run = self._runs.get(run_id)
        if run is None or run.cancelled:
            return
        run.cancelled, run.cancel_reason = True, reason
        self._stop(run, self.kill_grace)

    def shutdown(self, grace: float) -> list[RunResult]:
        if self._closed:
            return []
        self._closed = True
        for run in list(self._runs.values()):
            if not run.cancelled:
                run.cancelled, run.cancel_reason = True, "daemon shutdown"
            self._stop(run, grace)
        end = time.monotonic() + grace + TreeKill.GIVE_UP + END_WAIT + 2.0
        while self._runs and time.monotonic() < end:
            self.loop.run(max(0.0, end - time.monotonic()))
            self._drain()
        for run in list(self._runs.values()):
            self._finish(run, self._lost(run, "still running on its Dask worker after SIGKILL"))
        self._flush_forgets()
        if self._check is not None:
            self._check.cancel()
        self.loop.remove_reader(self._wake_r)
        os.close(self._wake_r)
        os.close(self._wake_w)
        try:
            self.client.close(timeout=5)
        except Exception as exc:  # the cluster went away meanwhile: nothing left to close
            log.warning("closing the Dask client: %s", exc)
        if self._own_loop:
            self.loop.close()
        done, self._done = self._done, []
        return done

    # --- from Dask's thread to the loop ----------------------------------------------------------

    def _post(self, item: tuple) -> None:
        """Called in the Dask client's thread: queue it and wake the loop."""
        self._inbox.put(item)
        try:
            os.write(self._wake_w, b"x")
        except (BlockingIOError, OSError):
            pass  # a wake is pending already (or the pool is closed)

    def _drain(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except (BlockingIOError, OSError):
            pass
        while True:
            try:
                kind, marker, payload = self._inbox.get_nowait()
            except queue.Empty:
                return
            run = self._by_marker.get(marker)
            if run is None:
                continue  # a run finished already
            if kind == "event":
                self._on_event(run, payload)
            elif kind == "done":
                self._on_done(run, payload)
            elif kind == "end-wait" and run.returned is not None:
                self._on_event(run, run.returned)

    # --- a run's life ----------------------------------------------------------------------------

    def _add(self, run: _DaskRun) -> None:
        self._runs[run.run_id] = run
        self._by_marker[run.marker] = run
        self.client.subscribe_topic(dask_worker.topic(run.marker),
                                    lambda event, m=run.marker: self._post(("event", m, event[1])))

    def _drop(self, run: _DaskRun) -> None:
        self._runs.pop(run.run_id, None)
        self._by_marker.pop(run.marker, None)
        try:
            self.client.unsubscribe_topic(dask_worker.topic(run.marker))
        except Exception:  # the client is closing: the subscription goes with it
            pass
        if run.end_timer is not None:
            run.end_timer.cancel()
        if run.log_fd is not None:
            os.close(run.log_fd)
            run.log_fd = None
        if run.future is not None:
            run.future.release()  # a released key is never recomputed by Dask
            run.future = None
        self._forget.append(dask_worker.topic(run.marker))

    def _on_event(self, run: _DaskRun, msg: Any) -> None:
        if not isinstance(msg, dict) or run.run_id not in self._runs:
            return
        kind = msg.get("kind")
        if kind == "start":
            run.worker, run.pid = msg.get("worker"), msg.get("pid")
        elif kind == "out":
            self._write(run, int(msg.get("offset", 0)), msg.get("data") or b"")
        elif kind == "end":
            self._finish(run, self._result_of(run, msg))

    def _on_done(self, run: _DaskRun, future) -> None:
        """The task returned (or failed): its end, unless its "end" event is on the way."""
        if future.status == "finished":
            try:
                value = future.result(timeout=5)
            except Exception as exc:
                value = {"error": str(exc)}
            if isinstance(value, dict) and value.get("claimed") is False:
                self._finish(run, self._lost(run, RERUN))
                self._kill_orphans()
            elif isinstance(value, dict) and value.get("kind") == "end":
                run.returned = value  # the end event normally comes first; if lost, this is it
                run.end_timer = self.loop.call_at(time.monotonic() + END_WAIT,
                                                  lambda m=run.marker: self._post(("end-wait", m, None)))
            else:
                self._finish(run, self._lost(run, f"its Dask task ended without a result: {value!r}"))
        elif future.status == "cancelled":
            if run.pid is None:  # stopped before it started on any worker
                self._finish(run, RunResult(run.run_id, None, run.started_at, time.time(), outcome=Outcome.CANCELLED,
                                            cancel_reason=run.cancel_reason))
        else:  # erred: e.g. KilledWorker, or the task could not be deserialised on the worker
            try:
                why = repr(future.exception(timeout=5))
            except Exception as exc:
                why = repr(exc)
            self._finish(run, self._lost(run, f"its Dask task failed: {why}"))
            self._kill_orphans()  # KilledWorker: the workers it ran on died

    def _kill_orphans(self) -> None:
        """A worker died: every worker kills, on its host, the runs' processes it left."""
        self.client.run(dask_worker.kill_orphans_soon, wait=False, on_error="ignore")

    def _stop(self, run: _DaskRun, grace: float) -> None:
        self.client.run(dask_worker.cancel_soon, run.marker, run.cancel_reason or "stopped", grace,
                        wait=False, on_error="ignore")
        if run.pid is None and run.future is not None and not run.adopted:
            run.future.cancel()  # not started on a worker yet: it never will

    def _write(self, run: _DaskRun, offset: int, data: bytes) -> None:
        """Append a chunk of output at its offset (replays and duplicates skip what is there)."""
        if offset + len(data) <= run.kept or run.log_fd is None:
            return
        data = data[max(0, run.kept - offset):][:max(0, run.max_output - run.kept)]
        try:
            os.write(run.log_fd, data)
        except OSError as exc:  # disk full, ...: keep counting, stop keeping
            log.warning("cannot write run output to %s: %s", run.log_path, exc)
            os.close(run.log_fd)
            run.log_fd = None
        run.kept += len(data)

    def _result_of(self, run: _DaskRun, end: dict) -> RunResult:
        outcome = Outcome(end.get("outcome", Outcome.UNKNOWN.value))
        reason = run.cancel_reason or end.get("cancel_reason") if outcome is Outcome.CANCELLED else None
        return RunResult(
            run_id=run.run_id, pid=end.get("pid"), started_at=end.get("started_at") or run.started_at,
            finished_at=end.get("finished_at") or time.time(), exit_code=end.get("exit_code"),
            signal=end.get("signal"), outcome=outcome, cancel_reason=reason,
            output_bytes=int(end.get("output_bytes") or 0), truncated=bool(end.get("truncated")),
            cpu_user=float(end.get("cpu_user") or 0.0), cpu_sys=float(end.get("cpu_sys") or 0.0),
            max_rss_kb=int(end.get("max_rss_kb") or 0), error=end.get("error"))

    def _lost(self, run: _DaskRun, why: str) -> RunResult:
        return RunResult(run.run_id, run.pid, run.started_at, time.time(), outcome=Outcome.UNKNOWN,
                         output_bytes=run.kept, error=why)

    def _finish(self, run: _DaskRun, result: RunResult) -> None:
        self._drop(run)
        self._result(result)

    def _result(self, result: RunResult) -> None:
        self._done.append(result)
        self.loop.notify()

    # --- the cluster -------------------------------------------------------------------------------

    def _arm(self) -> None:
        if (self._runs or self._forget) and (self._check is None or self._check.cancelled):
            self._check = self.loop.call_at(time.monotonic() + CHECK_EVERY, self._check_workers)

    def _check_workers(self) -> None:
        """Runs whose worker left the cluster are lost (a re-run on another worker, if Dask
        makes one, starts nothing). Also drops the events of finished runs."""
        self._drain()
        watched = [run for run in self._runs.values() if run.worker is not None]
        if watched:
            try:
                workers = set(self.client.scheduler_info(n_workers=-1).get("workers", {}))
            except Exception as exc:
                log.warning("cannot list the Dask workers: %s", exc)
            else:
                lost = [run for run in watched if run.worker not in workers and run.run_id in self._runs]
                for run in lost:
                    log.warning("run %d: Dask worker %s is gone", run.run_id, run.worker)
                    self._finish(run, self._lost(run, WORKER_LOST.format(run.worker)))
                if lost:
                    self._kill_orphans()
        self._flush_forgets()
        self._arm()

    def _flush_forgets(self) -> None:
        if not self._forget:
            return
        topics, self._forget = self._forget, []
        try:
            self.client.run_on_scheduler(dask_worker.forget, topics)
        except Exception as exc:  # the scheduler keeps them until its event log drops them
            log.warning("cannot drop the events of %d finished run(s): %s", len(topics), exc)


def _reopen_log(log_path: Path | None) -> tuple[int | None, int]:
    """The log of a re-attached run, appended to from where the previous daemon stopped."""
    if log_path is None:
        return None, 0
    try:
        fd = in_run_dir(log_path, lambda dir_fd, name: safefs.open_at(
            dir_fd, name, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600, Path(log_path)), create=True)
    except OSError as exc:
        log.warning("cannot reopen %s: %s", log_path, exc)
        return None, 0
    return fd, os.fstat(fd).st_size
