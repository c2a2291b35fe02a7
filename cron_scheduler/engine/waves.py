"""Waves (DESIGN.md section 6): a trigger opens a wave of the triggered jobs and everything
downstream of them; runs waiting for their upstreams are released, blocked or skipped."""

from __future__ import annotations

import dataclasses
import logging
from datetime import datetime
from typing import Callable

from cron_scheduler import planner
from cron_scheduler.engine.catalogue import Catalogue
from cron_scheduler.history import History, Run
from cron_scheduler.models import ACTIVE, RunStatus, Trigger, to_iso

log = logging.getLogger("cron_scheduler")

_DECIDED = {"release": RunStatus.QUEUED, "block": RunStatus.BLOCKED, "skip": RunStatus.SKIPPED}


class Waves:
    def __init__(self, catalogue: Catalogue, history: History,
                 stop: Callable[[int, str, datetime], None]):
        self.catalogue, self.history, self.stop = catalogue, history, stop

    def open(self, roots: list[str], trigger: Trigger, scheduled: datetime, now: datetime,
             slot: datetime | None = None, ignore_deps: bool = False,
             planned: list[int] | tuple[int, ...] = (), not_before: datetime | None = None) -> list[int]:
        """A trigger opens a wave: the roots and, waiting for them, every job downstream.
        `planned` are catch-up runs just opened for earlier slots of the same plan: the overlap
        policy does not apply against them (catch-up=all runs every missed slot, one after the
        other, and a catch-up run does not make the on-time slot that follows it skip)."""
        jobs = self.catalogue.jobs
        members = planner.wave_members(roots, jobs, self.catalogue.down)
        wave = self.history.new_wave(trigger.value, to_iso(now), members)
        created = []
        for job_id in members:
            job = jobs[job_id]
            is_root = job_id in roots
            status = (RunStatus.WAITING if job.depends_on and not (is_root and ignore_deps)
                      else RunStatus.QUEUED)
            values = dict(job_id=job_id, scheduled_for=to_iso(scheduled), wave=wave, priority=job.priority,
                          queued_at=to_iso(now), trigger=(trigger if is_root else Trigger.DEPENDENCY).value,
                          slot=to_iso(slot) if is_root and slot else None)
            if is_root and not_before is not None:  # fired ahead of its slot (firing.py)
                values.update(not_before=to_iso(not_before))
            if is_root and status is RunStatus.QUEUED and trigger in (Trigger.SCHEDULE, Trigger.CATCH_UP):
                decision = planner.overlap(job, [r for r in self.history.with_status(*ACTIVE, job_id=job_id)
                                                 if r.run_id not in planned])
                if decision.action == "skip":
                    status = RunStatus.SKIPPED
                    values.update(finished_at=to_iso(now), reason=decision.reason)
                    log.info("job %s slot %s skipped: %s", job_id, values["scheduled_for"], decision.reason)
                elif decision.action == "replace":
                    for victim in decision.victims:
                        self.stop(victim, "replaced by a newer run (overlap=replace)", now)
                elif decision.action == "queue":
                    values.update(reason=decision.reason)
            run_id = self.history.add_run(status, to_iso(now), **values)
            if run_id is None:
                continue  # this slot was claimed before (crash recovery): never run it twice
            created.append(run_id)
            if status is RunStatus.QUEUED:
                log.info("run %d job %s queued (%s, %s)", run_id, job_id, values["trigger"], values["scheduled_for"])
        return created

    def advance(self, now: datetime) -> None:
        """Release, block or skip runs waiting for their upstreams."""
        waiting = self.history.with_status(RunStatus.WAITING)
        if not waiting:
            return
        active_jobs = self.history.job_ids(RunStatus.QUEUED, RunStatus.RUNNING)
        waves: dict[int, tuple[dict[str, Run], set[str]]] = {}
        with self.history.transaction():
            for run in waiting:
                why = self.catalogue.not_runnable(run)
                if why:
                    self.history.transition(run.run_id, RunStatus.SKIPPED, to_iso(now), finished_at=to_iso(now),
                                            reason=why)
                    continue
                if run.wave not in waves:  # read each wave once per pass
                    waves[run.wave] = self._state(run.wave)
                latest, members = waves[run.wave]
                decision = planner.wave_decision(self.catalogue.jobs[run.job_id], members, latest,
                                                 self.history.latest_final, active_jobs)
                if decision.action == "wait":
                    continue
                status = _DECIDED[decision.action]
                latest[run.job_id] = dataclasses.replace(run, status=status, reason=decision.reason)
                if status is RunStatus.QUEUED:  # later runs of this pass see the decision
                    self.history.transition(run.run_id, status, to_iso(now), queued_at=to_iso(now))
                    log.info("run %d job %s released: upstreams succeeded", run.run_id, run.job_id)
                else:
                    self.history.transition(run.run_id, status, to_iso(now), finished_at=to_iso(now),
                                            reason=decision.reason)
                    (log.warning if status is RunStatus.BLOCKED else log.info)(
                        "run %d job %s %s", run.run_id, run.job_id, decision.reason)

    def release_blocked(self, run: Run, now: datetime) -> None:
        """After a success in a wave, give blocked downstream jobs of that wave one new chance:
        those that no other failed upstream still blocks (a success of an unrelated upstream
        must not release a job only to block it again, recording it blocked twice)."""
        jobs, down = self.catalogue.jobs, self.catalogue.down
        if run.wave is None or not down.get(run.job_id):
            return
        downstream = set(planner.wave_members([run.job_id], jobs, down)) - {run.job_id}
        latest, members = self._state(run.wave)
        active_jobs = self.history.job_ids(RunStatus.QUEUED, RunStatus.RUNNING)
        blocked = sorted(j for j in downstream
                         if j in jobs and j in latest and latest[j].status is RunStatus.BLOCKED)
        progress = True
        while progress:  # a released job counts as pending for the jobs below it
            progress = False
            for job_id in list(blocked):
                decision = planner.wave_decision(jobs[job_id], members, latest,
                                                 self.history.latest_final, active_jobs)
                if decision.action == "block":
                    continue
                prev = latest[job_id]
                self.history.add_run(RunStatus.WAITING, to_iso(now), job_id=job_id, scheduled_for=prev.scheduled_for,
                                     wave=run.wave, trigger=Trigger.DEPENDENCY.value, attempt=prev.attempt + 1,
                                     priority=jobs[job_id].priority, queued_at=to_iso(now))
                latest[job_id] = dataclasses.replace(prev, status=RunStatus.WAITING)
                blocked.remove(job_id)
                progress = True
                log.info("job %s released in wave %d after run %d succeeded", job_id, run.wave, run.run_id)

    def _state(self, wave: int) -> tuple[dict[str, Run], set[str]]:
        """The latest run of each job in a wave, and the wave's members."""
        return ({r.job_id: r for r in self.history.wave_runs(wave)}, set(self.history.wave_members(wave)))
