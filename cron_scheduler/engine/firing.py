"""Timer slots: each job whose cursor is due opens the waves of its slots that run (on time
or caught up), records the ones it missed, and moves its cursor on.

Slots up to LOOKAHEAD ahead are fired early where nothing can change the decision by then (the
job has no active run and waits for no upstream): its run is claimed as a queued run that may
not start before the slot (not_before), and the launcher prepares it (files, argv,
environment), so that at the instant only the spawn is left. Other slots fire at their instant.

Jobs due at one instant whose waves would share a job (roots of one DAG) open one wave: one
DAG run, each job at most once in it."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from cron_scheduler import planner
from cron_scheduler.engine.catalogue import Catalogue
from cron_scheduler.engine.waves import Waves
from cron_scheduler.history import History
from cron_scheduler.models import ACTIVE, Job, RunStatus, Trigger, to_iso

log = logging.getLogger("cron_scheduler")

LOOKAHEAD = timedelta(milliseconds=250)

_Slots = dict  # (slot, trigger, fired ahead) -> the jobs whose plan runs it


class Firing:
    def __init__(self, catalogue: Catalogue, history: History, waves: Waves, started: datetime | None):
        self.catalogue, self.history, self.waves = catalogue, history, waves
        self.started = started  # slots before it fell while no daemon ran: they follow catch_up
        self.launcher = None  # prepares runs of slots fired ahead (Engine sets it)
        self.prepared_through: datetime | None = None  # slots up to here were prepared or deferred

    def fire_due(self, now: datetime) -> None:
        """Queue the runs of every slot that has come, all due jobs in one commit; prepare the
        runs of slots within LOOKAHEAD."""
        horizon = now + LOOKAHEAD
        due = self.catalogue.next_slot()
        if due is None or due > horizon:
            return
        deferred: list[tuple[str, datetime]] = []
        busy: set[str] | None = None
        slots = _Slots()
        with self.history.transaction(durable=self.launcher is not None):  # it claims runs prepared ahead
            while (item := self.catalogue.pop_due(horizon)) is not None:
                job_id, when = item
                if when <= now:
                    self._plan(job_id, when, now, slots)
                    continue
                if busy is None:
                    busy = self.history.job_ids(*ACTIVE)
                job = self.catalogue.jobs[job_id]
                if self.launcher is None or job_id in busy or job.depends_on or not job.enabled:
                    deferred.append(item)  # decided at its instant
                else:
                    self._plan(job_id, when, when, slots, ahead=True)
            self._open(slots, now)
        for job_id, when in deferred:
            self.catalogue.push(job_id, when)
        self.prepared_through = max(self.prepared_through or horizon, horizon)

    def next_wake(self) -> datetime | None:
        """When fire_due has work: LOOKAHEAD before the next slot, or at a slot deferred to its
        instant."""
        due = self.catalogue.next_slot()
        if due is None or (self.prepared_through is not None and due <= self.prepared_through):
            return due
        return due - LOOKAHEAD

    def _plan(self, job_id: str, when: datetime, now: datetime, slots: "_Slots", ahead: bool = False) -> None:
        """A due job's slots: the missed ones recorded, the ones that run added to `slots`, its
        cursor moved on."""
        job = self.catalogue.jobs[job_id]
        try:
            plan = planner.plan_slots(job, self.catalogue.zone_of(job), when, now, since=self.started)
        except Exception as exc:  # noqa: BLE001 - one job's schedule must not stop the others
            self.catalogue.park(job_id, exc)
            return
        for first, last, count in plan.missed:
            self._record_missed(job, first, last, count, plan, now)
        for slot, trigger in plan.runs:
            slots.setdefault((slot, trigger, ahead), []).append(job_id)
        self.catalogue.advance(job, plan.cursor)

    def _open(self, slots: "_Slots", now: datetime) -> None:
        """One wave per slot for the jobs due at it that share a downstream job (one DAG run:
        each job at most once), earliest slot first. Runs fired ahead are held by not_before
        until their slot and prepared."""
        planned: list[int] = []  # catch-up runs opened so far: they do not skip each other
        for (slot, trigger, ahead), job_ids in sorted(slots.items(), key=lambda item: item[0][0]):
            for roots in self._connected(job_ids):
                if ahead:
                    for run_id in self.waves.open(roots, trigger, slot, now, slot=slot, not_before=slot):
                        run = self.history.get_run(run_id)
                        if run.job_id in roots and run.status is RunStatus.QUEUED:
                            self.launcher.prepare(self.catalogue.jobs[run.job_id], run, now)
                    continue
                created = self.waves.open(roots, trigger, slot, now, slot=slot, planned=planned)
                if trigger is Trigger.CATCH_UP:
                    planned += created

    def _connected(self, job_ids: list[str]) -> list[list[str]]:
        """Jobs due at one slot, grouped where their waves would share a job."""
        jobs, down = self.catalogue.jobs, self.catalogue.down
        groups: dict[int, tuple[list[str], list[str]]] = {}  # -> (roots, wave members)
        owner: dict[str, int] = {}  # a wave member -> its group
        for i, job_id in enumerate(job_ids):
            roots, members = [job_id], planner.wave_members([job_id], jobs, down)
            for met in sorted({owner[m] for m in members if m in owner}):
                other_roots, other_members = groups.pop(met)
                roots, members = other_roots + roots, other_members + members
            groups[i] = (roots, members)
            owner.update(dict.fromkeys(members, i))
        return [roots for roots, _ in groups.values()]

    def _record_missed(self, job: Job, first: datetime, last: datetime, count: int,
                       plan: planner.SlotPlan, now: datetime) -> None:
        ran = [s for s, t in plan.runs if t is Trigger.CATCH_UP]
        what = f"catch-up={job.catch_up.value}" + (f", ran {to_iso(ran[-1])}" if ran else "")
        span = to_iso(first) if count == 1 else f"{to_iso(first)} .. {to_iso(last)}"
        self.history.add_run(RunStatus.MISSED, to_iso(now), job_id=job.id, slot=to_iso(first),
                             scheduled_for=to_iso(first), trigger=Trigger.SCHEDULE.value, queued_at=to_iso(now),
                             finished_at=to_iso(now), missed_count=count, missed_until=to_iso(last),
                             reason=f"missed {'' if plan.counted else 'at least '}{count} slot(s) {span}: "
                                    f"not seen in time (daemon down or stalled); {what}")
        log.warning("job %s missed %d slot(s) %s (%s)", job.id, count, span, what)
