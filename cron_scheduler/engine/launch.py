"""Launching and stopping runs: queued runs get free workers in priority order. A run's claim
carries its marker and log path before it starts (write-ahead: the pool finds a started run by
its marker after a crash); the pool spawns; then `running` and the handles the pool returned
(opaque: only the pool reads them) are recorded in one commit. A slot's runs can be prepared
ahead (`prepare`, shortly before the slot): claim, files, argv and environment; at the instant
only the spawns remain.
`stop` cancels a running run or kills a pending one."""

from __future__ import annotations

import logging
import os
import uuid
from datetime import datetime

from cron_scheduler import planner
from cron_scheduler.cgroup import limit_files
from cron_scheduler.engine.catalogue import Catalogue
from cron_scheduler.executors.base import Handle, Pool, RunSpec
from cron_scheduler.history import History, Run
from cron_scheduler.models import Job, RunStatus, Trigger, parse_iso, to_iso
from cron_scheduler.runas import login_env

log = logging.getLogger("cron_scheduler")

_TIMED = (Trigger.SCHEDULE, Trigger.CATCH_UP, Trigger.RETRY)


class Launcher:
    def __init__(self, catalogue: Catalogue, history: History, pool: Pool):
        self.catalogue, self.history, self.pool = catalogue, history, pool
        self.base_env = dict(os.environ)  # each run's environment starts from this copy
        self.prepared: dict[int, tuple[Job, Run | None, RunSpec]] = {}  # claimed, not spawned yet
        self.unrecorded: dict[int, tuple[Job, Run, Handle | None, datetime]] = {}  # spawned, not `running` yet

    def start_queued(self, now: datetime) -> None:
        """Give free workers to queued runs in priority order: the spawns first, nothing
        between two of them; then `running` and the handles in one commit."""
        self.flush()
        chosen = self._choose(now)
        if chosen:
            fresh = [(job, run) for job, run in chosen if run.run_id not in self.prepared]
            if fresh:
                with self.history.transaction(durable=True):  # the claims: on disk before the spawns
                    for job, run in fresh:
                        self._claim(job, run, now)
            specs = [self.prepared.pop(run.run_id)[2] for _, run in chosen]
            handles = self.pool.submit_many(specs)  # what the pool needs to find each run again
            for (job, run), handle in zip(chosen, handles):
                self.unrecorded[run.run_id] = (job, run, handle, now)
            self.flush()
        # prepared runs whose instant came without a worker (or with their job still running)
        # wait as plain queued runs: a crash meanwhile leaves runs that provably never started,
        # which the next daemon starts; they are claimed again when they can start
        self._unclaim([run_id for run_id, (_, run, _) in self.prepared.items()
                       if run is not None and run.not_before and parse_iso(run.not_before) <= now])

    def flush(self) -> None:
        """Record `running` for the runs spawned but not recorded yet, in one commit. A refused
        write (lock, full disk) ends the pass and keeps them here, supervised by the pool: the
        next pass flushes them before anything else (Engine.record_all), so no result is
        recorded on a run still `queued` and no run is chosen twice."""
        if not self.unrecorded:
            return
        with self.history.transaction():
            for job, run, handle, at in self.unrecorded.values():
                self.history.transition(run.run_id, RunStatus.RUNNING, to_iso(at), was=run, started_at=to_iso(at),
                                        reason=self._reason(run, at), **_stored(handle))
        started, self.unrecorded = self.unrecorded, {}
        for job, run, handle, at in started.values():
            if handle is not None:
                log.info("run %d job %s started%s (%s, slot %s)", run.run_id, job.id,
                         f" pid {handle.pid}" if handle.pid else "", run.trigger, run.scheduled_for)

    def prepare(self, job: Job, run: Run, now: datetime) -> None:
        """Make a queued run of a slot still to come ready to start (in the caller's transaction)."""
        self._claim(job, run, now)
        self.pool.prepare(self.prepared[run.run_id][2])

    def has_due(self, now: datetime) -> bool:
        """A prepared run's slot has come."""
        return any(run.not_before and parse_iso(run.not_before) <= now for _, run, _ in self.prepared.values()
                   if run is not None)

    def drop(self, run_id: int) -> None:
        """A prepared run will not start (skipped, killed)."""
        if self.prepared.pop(run_id, None) is not None:
            self.pool.discard(run_id)

    def unprepare(self) -> None:
        """The daemon stops: prepared runs go back to plain queued claims (no marker), which
        the next daemon starts at their slot, or late if it starts after it."""
        self._unclaim(list(self.prepared))

    def _unclaim(self, run_ids: list[int]) -> None:
        """Prepared runs back to plain queued claims (no marker, no files)."""
        if run_ids:
            with self.history.transaction():
                for run_id in run_ids:
                    self.history.update_run(run_id, marker=None, output_path=None)
                    self.drop(run_id)

    def forget(self) -> None:
        """After a failed write: what was prepared may not be committed."""
        for run_id in list(self.prepared):
            self.drop(run_id)

    def _choose(self, now: datetime) -> list[tuple[Job, Run]]:
        """Queued runs that may start now, as many as there are free workers; pending runs of
        removed or paused jobs, and prepared runs of jobs changed since, are skipped on the way."""
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
                if not why and run.run_id in self.prepared and self.prepared[run.run_id][0] != job:
                    why = "job changed before its slot"
                if why:
                    self.drop(run.run_id)
                    self.history.transition(run.run_id, RunStatus.SKIPPED, to_iso(now), finished_at=to_iso(now),
                                            reason=why)
                elif planner.can_start(job, run, running_jobs, now) and len(chosen) < free:
                    chosen.append((job, run))
                    running_jobs.add(job.id)
            if len(runs) < page:
                break
            offset += page
        return chosen

    def _claim(self, job: Job, run: Run, now: datetime) -> None:
        """Give the claim its marker and log path (no status change) before its process exists."""
        marker = uuid.uuid4().hex
        log_path = self.catalogue.home.run_log(job.id, run.run_id)
        self.history.claim(run.run_id, marker=marker, output_path=str(log_path))
        spec = RunSpec(run_id=run.run_id, job_id=job.id, argv=argv(job), env=self.env(job, run),
                       cwd=job.cwd, log_path=log_path, max_output=job.max_output, timeout=job.timeout,
                       marker=marker, resources=job.resources or None, worker=job.worker,
                       user=job.user, group=job.group, nice=job.nice,
                       limits=limit_files(job.memory_max, job.cpu_max, job.pids_max) or None)
        self.prepared[run.run_id] = (job, run, spec)

    def _reason(self, run: Run, now: datetime) -> str | None:
        late = (now - parse_iso(run.scheduled_for)).total_seconds()
        if run.trigger in _TIMED and late > planner.MISS_AFTER.total_seconds():
            return f"started {late:.0f}s late"
        return run.reason

    def env(self, job: Job, run: Run) -> dict[str, str]:
        env = dict(self.base_env)
        env.update(login_env(job.user))  # HOME, USER, LOGNAME, SHELL of its account, as cron
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
            self.drop(run_id)
            self.history.transition(run_id, RunStatus.KILLED, to_iso(now), finished_at=to_iso(now), reason=reason)


def _stored(handle: Handle | None) -> dict:
    """The columns a run's handle is recorded in: as is, and its pid for people (history)."""
    return {} if handle is None else {"handle": handle.state, "pid": handle.pid}


def argv(job: Job) -> tuple[str, ...]:
    """The job's command line; the pool picks the interpreter of a `.py` script."""
    if job.shell:
        return ("/bin/sh", "-c", job.command[0])
    return job.command
