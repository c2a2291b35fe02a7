"""After a crash: what a previous daemon left `running` is re-supervised or interrupted."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING

from cron_scheduler.models import DEFAULT_MAX_OUTPUT, RunStatus, parse_iso, to_iso
from cron_scheduler.runner import Outcome, RunResult, find_marked, sweep_run_files

if TYPE_CHECKING:
    from cron_scheduler.engine import Engine

log = logging.getLogger("cron_scheduler")


def recover(engine: "Engine", now: datetime) -> None:
    """Resolve runs a previous daemon left `running`: the pool re-supervises the ones that still
    run (matched by what it stored: pid and start time), even of a job removed meanwhile (it
    finishes, as it would have; it gets no new slots). The others are interrupted (and retried
    if allowed); what they left running is not chased, as it would not have been without the
    crash."""
    _claimed(engine, now)
    for run in engine.history.with_status(RunStatus.RUNNING):
        handle = {"pid": run.pid, "pid_start": run.pid_start, "marker": run.marker}
        job = engine.jobs.get(run.job_id)
        started = parse_iso(run.started_at)
        elapsed = (now - started).total_seconds()
        remaining = None if job is None or job.timeout is None else max(0.0, job.timeout - elapsed)
        max_output = job.max_output if job is not None else DEFAULT_MAX_OUTPUT
        # the log's (and FIFO's) place comes from the home, never from state.db
        log_path = engine.home.run_log(run.job_id, run.run_id) if run.output_path else None
        if engine.pool.adopt(run.run_id, handle, started.timestamp(), remaining, log_path, max_output):
            log.warning("run %d job %s re-supervised (still running%s)", run.run_id, run.job_id,
                        "" if job is not None else "; its job was removed: it finishes, no new slots")
            continue
        engine.pool.abandon(run.run_id, handle, log_path)
        why = ("daemon stopped while it ran; outcome unknown" if run.pid is not None
               else "daemon stopped while starting it; it may not have started")
        result = RunResult(run_id=run.run_id, pid=run.pid, started_at=started.timestamp(),
                           finished_at=now.timestamp(), outcome=Outcome.UNKNOWN, error=why)
        engine.record(result, now, status=RunStatus.INTERRUPTED)
        log.warning("run %d job %s interrupted: %s", run.run_id, run.job_id, why)


def _claimed(engine: "Engine", now: datetime) -> None:
    """Queued runs with a marker: claimed for a start, and maybe spawned, when the previous
    daemon died (`running` is recorded only after the spawn). A process carrying the marker is
    the run: it is recorded running and re-supervised by recover(). With none, a claim
    whose slot is still to come was prepared ahead and surely not spawned (spawns happen at the
    slot): it stays queued, prepared again. Any other may have run and finished: it is not run
    again, but recorded as interrupted (and retried if the job allows)."""
    for run in engine.history.with_status(RunStatus.QUEUED):
        if not run.marker:
            continue
        if run.not_before and parse_iso(run.not_before) > now and not find_marked(run.marker):
            engine.history.update_run(run.run_id, marker=None, output_path=None)
            continue
        # running, pid unknown: recover() finds its process by the marker, or interrupts it
        engine.history.transition(run.run_id, RunStatus.RUNNING, to_iso(now), started_at=to_iso(now),
                                  reason="claimed for a start when the daemon stopped")


def sweep(engine: "Engine") -> None:
    """Remove the files of runs a crashed daemon left under runs/: the FIFO of any run not
    active, the log of a run state.db no longer has (pruned). Files of runs newer than
    state.db's last run (state.db rebuilt, or written since) are kept."""
    active = {run_id for run_id, _ in engine.history.active_runs()}
    last = engine.history.last_run_id()
    known: dict[str, set[int]] = {}  # a job's run ids, read once one of its logs is checked

    def keep(job_id: str, run_id: int, kind: str) -> bool:
        if run_id > last or run_id in active:
            return True
        if kind == "pipe":
            return False
        if job_id not in known:
            known[job_id] = engine.history.run_ids(job_id)
        return run_id in known[job_id]
    removed = sweep_run_files(engine.home.root, keep)
    if removed:
        log.info("removed %d file(s) that ended runs left under runs/ (a crash)", removed)
