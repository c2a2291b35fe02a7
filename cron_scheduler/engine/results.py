"""Finished runs: each result closes its run (status, exit, rusage, output), then a retry is
queued, blocked downstream jobs are released, and old runs beyond the retention are pruned."""

from __future__ import annotations

import dataclasses
import functools
import logging
import signal
from datetime import datetime, timedelta

from cron_scheduler import planner
from cron_scheduler.engine.catalogue import Catalogue
from cron_scheduler.engine.waves import Waves
from cron_scheduler.errors import CorruptRun
from cron_scheduler.executors.base import Outcome, RunResult
from cron_scheduler.history import History, Run
from cron_scheduler.models import UTC, RunStatus, Trigger, to_iso
from cron_scheduler.runfiles import remove_run_files

log = logging.getLogger("cron_scheduler")

OOM_REASON = "killed by the kernel: out of memory"  # its cgroup's memory.events counted an oom_kill
_OUTCOME_STATUS = {Outcome.TIMED_OUT: RunStatus.TIMEOUT, Outcome.CANCELLED: RunStatus.KILLED,
                   Outcome.UNKNOWN: RunStatus.INTERRUPTED}  # UNKNOWN: re-supervised after a crash


class Recorder:
    def __init__(self, catalogue: Catalogue, history: History, waves: Waves):
        self.catalogue, self.history, self.waves = catalogue, history, waves

    def record_all(self, results: list[RunResult], now: datetime) -> None:
        """Record the runs that finished since the last wake, in one commit. The jobs are
        loaded first: after a failed write they were forgotten, and a result recorded without
        its job would lose its retry and its effect on downstream jobs."""
        if results:
            self.catalogue.reload(now)
            with self.history.transaction():
                for result in results:
                    try:
                        self.record(result, now)
                    except CorruptRun as exc:  # its row was damaged meanwhile: reported, dropped
                        log.error("run %d finished but cannot be recorded: %s", result.run_id, exc)

    def record(self, result: RunResult, now: datetime, status: RunStatus | None = None) -> Run:
        """Close a finished run: its status, then retry, release or block what follows."""
        run = self.history.get_run(result.run_id)
        job = self.catalogue.jobs.get(run.job_id)  # edited or removed while it ran, maybe
        status = status or status_of(result)
        reason = result.error or result.cancel_reason or run.reason
        if result.timed_out:
            cap = job.timeout if job is not None else None
            reason = (f"hit its {cap:g}s cap" if cap is not None else
                      f"hit its time cap after {result.finished_at - result.started_at:.1f}s")
        if result.oom_killed and status is not RunStatus.SUCCEEDED:
            reason = OOM_REASON
        signame = signal_name(result.signal)
        with self.history.transaction():
            self.history.transition(
                run.run_id, status, to_iso(now), was=run, finished_at=to_iso(_instant(result.finished_at) or now),
                started_at=to_iso(_instant(result.started_at)) or run.started_at, exit_code=result.exit_code,
                signal=signame, reason=reason, output_bytes=result.output_bytes, truncated=int(result.truncated),
                cpu_user=result.cpu_user, cpu_sys=result.cpu_sys, max_rss_kb=result.max_rss_kb,
                memory_peak_kb=None if result.memory_peak is None else result.memory_peak // 1024)
            run = dataclasses.replace(run, status=status)
            if job is not None and planner.should_retry(job, run):
                delay = planner.retry_delay(job, run.attempt)
                self.history.add_run(RunStatus.QUEUED, to_iso(now), job_id=job.id, slot=run.slot,
                                     scheduled_for=run.scheduled_for, trigger=Trigger.RETRY.value, wave=run.wave,
                                     attempt=run.attempt + 1, priority=job.priority, queued_at=to_iso(now),
                                     not_before=to_iso(now + timedelta(seconds=delay)),
                                     reason=f"retry of run {run.run_id} after {delay:g}s")
                log.info("job %s attempt %d scheduled in %gs", job.id, run.attempt + 1, delay)
            if status is RunStatus.SUCCEEDED:
                self.waves.release_blocked(run, now)
            for path in self.history.prune(run.job_id, self.catalogue.config.retention_runs):
                # once their rows are gone for good (the start-up sweep ends what a crash cut short)
                self.history.after_commit(functools.partial(
                    remove_run_files, self.catalogue.home.root, run.job_id, path))  # only under runs/<job>/
        log.log(logging.INFO if status is RunStatus.SUCCEEDED else logging.WARNING,
                "run %d job %s finished: %s in %.2fs%s%s", run.run_id, run.job_id, status,
                result.finished_at - result.started_at,
                f" exit {result.exit_code}" if result.exit_code is not None else "",
                f" signal {signame}" if signame else "")
        return run


def status_of(result: RunResult) -> RunStatus:
    status = _OUTCOME_STATUS.get(result.outcome)
    if status is None:
        ok = result.outcome is Outcome.EXITED and result.exit_code == 0
        status = RunStatus.SUCCEEDED if ok else RunStatus.FAILED
    return status


def signal_name(signum: int | None) -> str | None:
    if signum is None:
        return None
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"SIG{signum}"


def _instant(ts: float | None) -> datetime | None:
    return datetime.fromtimestamp(ts, UTC) if ts else None
