"""Timer slots: each job whose cursor is due opens the waves of its slots that run (on time
or caught up), records the ones it missed, and moves its cursor on."""

from __future__ import annotations

import logging
from datetime import datetime

from cron_scheduler import planner
from cron_scheduler.engine.catalogue import Catalogue
from cron_scheduler.engine.waves import Waves
from cron_scheduler.history import History
from cron_scheduler.models import Job, RunStatus, Trigger, to_iso

log = logging.getLogger("cron_scheduler")


class Firing:
    def __init__(self, catalogue: Catalogue, history: History, waves: Waves, started: datetime | None):
        self.catalogue, self.history, self.waves = catalogue, history, waves
        self.started = started  # slots before it fell while no daemon ran: they follow catch_up

    def fire_due(self, now: datetime) -> None:
        """Queue the runs of every slot that has come, all due jobs in one commit."""
        due = self.catalogue.next_slot()
        if due is None or due > now:
            return
        with self.history.transaction():
            while (item := self.catalogue.pop_due(now)) is not None:
                self._fire(*item, now)

    def _fire(self, job_id: str, when: datetime, now: datetime) -> None:
        job = self.catalogue.jobs[job_id]
        try:
            plan = planner.plan_slots(job, self.catalogue.zone_of(job), when, now, since=self.started)
        except Exception as exc:  # noqa: BLE001 - one job's schedule must not stop the others
            self.catalogue.park(job_id, exc)
            return
        for first, last, count in plan.missed:
            self._record_missed(job, first, last, count, plan, now)
        planned: list[int] = []  # catch-up runs of this plan: they do not skip each other
        for slot, trigger in plan.runs:
            created = self.waves.open([job_id], trigger, slot, now, slot=slot, planned=planned)
            if trigger is Trigger.CATCH_UP:
                planned += created
        self.catalogue.advance(job, plan.cursor)

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
