"""After a crash: what a previous daemon left claimed or `running` is re-supervised or
interrupted; the files of its ended runs are swept."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING

from cron_scheduler.executors.base import Claim, Handle, Outcome, RunResult
from cron_scheduler.history import Run
from cron_scheduler.models import DEFAULT_MAX_OUTPUT, RunStatus, parse_iso, to_iso
from cron_scheduler.runfiles import sweep_run_files

if TYPE_CHECKING:
    from cron_scheduler.engine import Engine

log = logging.getLogger("cron_scheduler")


def recover(engine: "Engine", now: datetime) -> None:
    """Resolve the runs a previous daemon left claimed or `running`. The pool says which still
    run (Pool.recover: found by their handle, or by the marker of a claim); it re-supervises
    those, even of a job removed meanwhile (it finishes, as it would have; it gets no new
    slots). Of the claims (queued runs with a marker, maybe spawned: `running` is recorded only
    after the spawn), one whose slot is still to come was prepared ahead and surely not spawned
    (spawns happen at the slot): it stays queued, prepared again. The others are interrupted
    (and retried if allowed): a claim may have run and finished, and is not run again. What
    they left running is not chased, as it would not have been without the crash."""
    left = [run for run in engine.history.with_status(RunStatus.QUEUED) if run.marker]
    left += engine.history.with_status(RunStatus.RUNNING)
    live = engine.pool.recover([_claim(engine, run, now) for run in left])
    for run in left:
        if run.status is not RunStatus.QUEUED:
            continue
        if run.run_id not in live and run.not_before and parse_iso(run.not_before) > now:
            engine.history.update_run(run.run_id, marker=None, output_path=None)
            continue
        # running, pid unknown: re-supervised by its marker above, or interrupted below
        engine.history.transition(run.run_id, RunStatus.RUNNING, to_iso(now), started_at=to_iso(now),
                                  reason="claimed for a start when the daemon stopped")
    for run in engine.history.with_status(RunStatus.RUNNING):
        job = engine.jobs.get(run.job_id)
        if run.run_id in live:
            log.warning("run %d job %s re-supervised (still running%s)", run.run_id, run.job_id,
                        "" if job is not None else "; its job was removed: it finishes, no new slots")
            continue
        why = ("daemon stopped while it ran; outcome unknown" if run.pid is not None
               else "daemon stopped while starting it; it may not have started")
        result = RunResult(run_id=run.run_id, pid=run.pid, started_at=parse_iso(run.started_at).timestamp(),
                           finished_at=now.timestamp(), outcome=Outcome.UNKNOWN, error=why)
        engine.record(result, now, status=RunStatus.INTERRUPTED)
        log.warning("run %d job %s interrupted: %s", run.run_id, run.job_id, why)


def _claim(engine: "Engine", run: Run, now: datetime) -> Claim:
    """What the pool gets of a run left claimed (started now, if it started) or running."""
    job = engine.jobs.get(run.job_id)
    started = parse_iso(run.started_at if run.status is RunStatus.RUNNING else to_iso(now))
    elapsed = (now - started).total_seconds()
    remaining = None if job is None or job.timeout is None else max(0.0, job.timeout - elapsed)
    # the log's (and FIFO's) place comes from the home, never from state.db
    log_path = engine.home.run_log(run.job_id, run.run_id) if run.output_path else None
    return Claim(run_id=run.run_id, marker=run.marker or "",
                 handle=Handle(run.handle, run.pid) if run.handle is not None else None,
                 started_at=started.timestamp(), timeout_remaining=remaining, log_path=log_path,
                 max_output=job.max_output if job is not None else DEFAULT_MAX_OUTPUT)


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
