"""Launching and stopping runs: queued runs get free workers in priority order, marked
`running` in one commit before any is handed to the pool (write-ahead), the handles the pool
returns recorded in a second commit; `stop` cancels a running run or kills a pending one."""

from __future__ import annotations

import logging
import os
import uuid
from datetime import datetime

from cron_scheduler import planner
from cron_scheduler.engine.catalogue import Catalogue
from cron_scheduler.history import History, Run
from cron_scheduler.models import Job, RunStatus, Trigger, parse_iso, to_iso
from cron_scheduler.pool import Pool
from cron_scheduler.runner import RunSpec

log = logging.getLogger("cron_scheduler")

_TIMED = (Trigger.SCHEDULE, Trigger.CATCH_UP, Trigger.RETRY)


class Launcher:
    def __init__(self, catalogue: Catalogue, history: History, pool: Pool):
        self.catalogue, self.history, self.pool = catalogue, history, pool
        self.base_env = dict(os.environ)  # each run's environment starts from this copy

    def start_queued(self, now: datetime) -> None:
        """Give free workers to queued runs in priority order."""
        chosen = self._choose(now)
        if not chosen:
            return
        with self.history.transaction():
            specs = [self._write_ahead(job, run, now) for job, run in chosen]
        started = []
        for (job, run), spec in zip(chosen, specs):
            handle = self.pool.submit(spec)  # what the pool needs to find the run again
            if handle is not None:
                started.append((job, run, handle))
        with self.history.transaction():
            for job, run, handle in started:
                self.history.update_run(run.run_id, **handle)
        for job, run, handle in started:
            log.info("run %d job %s started%s (%s, slot %s)", run.run_id, job.id,
                     f" pid {handle['pid']}" if handle.get("pid") else "", run.trigger, run.scheduled_for)

    def _choose(self, now: datetime) -> list[tuple[Job, Run]]:
        """Queued runs that may start now, as many as there are free workers; pending runs of
        removed or paused jobs are skipped on the way."""
        free = self.pool.free_slots()
        chosen: list[tuple[Job, Run]] = []
        running_jobs: set[str] | None = None  # read once something is queued (idle wakes skip it)
        offset, page = 0, max(16, 2 * free)
        while len(chosen) < free:
            runs = self.history.queued(to_iso(now), page, offset)
            if runs and running_jobs is None:
                running_jobs = self.history.job_ids(RunStatus.RUNNING)
            for run in runs:
                why = self.catalogue.not_runnable(run)
                job = self.catalogue.jobs.get(run.job_id)
                if why:
                    self.history.transition(run.run_id, RunStatus.SKIPPED, to_iso(now), finished_at=to_iso(now),
                                            reason=why)
                elif planner.can_start(job, run, running_jobs, now) and len(chosen) < free:
                    chosen.append((job, run))
                    running_jobs.add(job.id)
            if len(runs) < page:
                break
            offset += page
        return chosen

    def _write_ahead(self, job: Job, run: Run, now: datetime) -> RunSpec:
        """Record the run as running, with its marker, before its process exists."""
        marker = uuid.uuid4().hex
        log_path = self.catalogue.home.run_log(job.id, run.run_id)
        late = (now - parse_iso(run.scheduled_for)).total_seconds()
        reason = run.reason
        if run.trigger in _TIMED and late > planner.MISS_AFTER.total_seconds():
            reason = f"started {late:.0f}s late"
        self.history.transition(run.run_id, RunStatus.RUNNING, to_iso(now), started_at=to_iso(now), marker=marker,
                                output_path=str(log_path), reason=reason)
        return RunSpec(run_id=run.run_id, job_id=job.id, argv=argv(job), env=self.env(job, run),
                       cwd=job.cwd, log_path=log_path, max_output=job.max_output, timeout=job.timeout,
                       marker=marker, resources=job.resources or None, worker=job.worker)

    def env(self, job: Job, run: Run) -> dict[str, str]:
        env = dict(self.base_env)
        env.update(job.env)
        env.update(CRON_SCHEDULER_JOB=job.id, CRON_SCHEDULER_RUN_ID=str(run.run_id),
                   CRON_SCHEDULER_SCHEDULED_FOR=run.scheduled_for,
                   CRON_SCHEDULER_HOME=str(self.catalogue.home.root))
        return env

    def stop(self, run_id: int, reason: str, now: datetime) -> None:
        """Cancel a running run (the pool's TERM, grace, KILL) or kill a pending one."""
        run = self.history.get_run(run_id)
        if run.status is RunStatus.RUNNING and run_id in self.pool.running():
            self.pool.cancel(run_id, reason)
            log.info("run %d job %s stopping: %s", run_id, run.job_id, reason)
        elif run.status in (RunStatus.QUEUED, RunStatus.WAITING):
            self.history.transition(run_id, RunStatus.KILLED, to_iso(now), finished_at=to_iso(now), reason=reason)


def argv(job: Job) -> tuple[str, ...]:
    """The job's command line; the pool picks the interpreter of a `.py` script."""
    if job.shell:
        return ("/bin/sh", "-c", job.command[0])
    return job.command
