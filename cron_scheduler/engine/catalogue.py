"""The job catalogue: the jobs of jobs.json as the daemon last read them, and each job's
schedule cursor (its next slot, kept in memory as a heap and in state.db's job_state)."""

from __future__ import annotations

import heapq
import logging
from datetime import datetime, tzinfo

from cron_scheduler import planner, schedule
from cron_scheduler.errors import CronSchedulerError
from cron_scheduler.history import History, Run
from cron_scheduler.home import Config, Home
from cron_scheduler.jobs import zone_of as job_zone
from cron_scheduler.models import Job, Trigger, parse_iso, to_iso
from cron_scheduler.store import Store
from cron_scheduler.validate import printable_id

log = logging.getLogger("cron_scheduler")


class Catalogue:
    def __init__(self, home: Home, config: Config, history: History):
        self.home, self.config, self.history = home, config, history
        self.store = Store(home)
        self.zone = schedule.get_zone(config.timezone)
        self.jobs: dict[str, Job] = {}
        self.down: dict[str, list[str]] = {}  # planner.dependents(self.jobs)
        self.cursors: dict[str, datetime | None] = {}
        self.heap: list[tuple[datetime, str]] = []
        self.signature = None
        self.quarantined: dict[str, str] = {}  # invalid jobs in the store: id -> why (logged once)

    def configure(self, config: Config) -> None:
        """A reloaded config.toml. A new default timezone changes the fingerprint of every job
        without --tz: the next reload re-anchors their cursors in the new zone."""
        zone_changed = config.timezone != self.config.timezone
        self.config, self.zone = config, schedule.get_zone(config.timezone)
        if zone_changed:
            self.forget()

    def zone_of(self, job: Job) -> tzinfo:
        return job_zone(job, self.zone)  # the one zone rule, shared with the CLI

    def reload(self, now: datetime, force: bool = False) -> bool:
        """Re-read jobs.json if it changed (True); a corrupt or insecure store keeps the last
        good jobs. Invalid jobs are quarantined: logged once, left out, the others run."""
        signature = self.store.signature()
        if signature == self.signature and not force:
            return False
        try:
            self.store.check_secure(signature)
            jobs, errors = self.store.load().valid()
        except CronSchedulerError as exc:
            log.error("job store unusable, keeping the last good jobs: %s", exc)
            self.signature = signature
            return False
        for job_id, error in errors.items():
            if self.quarantined.get(job_id) != error:
                log.error("job %s quarantined, not scheduled until it is fixed: %s", printable_id(job_id), error)
        for job_id in set(self.quarantined) - set(errors):
            if job_id in jobs:
                log.info("job %s is valid again", job_id)
        self.quarantined = errors
        states = self.history.job_states()
        with self.history.transaction():
            for job_id in set(self.jobs) - set(jobs):
                self.cursors.pop(job_id, None)
                if job_id not in errors:  # a quarantined job keeps its cursor state for when it is fixed
                    log.info("job %s removed", job_id)
                    self.history.drop_job_state(job_id)
            for job in jobs.values():
                self._sync_cursor(job, states.get(job.id), now)
        self.jobs, self.down, self.signature = jobs, planner.dependents(jobs), signature
        return True

    def forget(self) -> None:
        """Drop the jobs and cursors held in memory; the next reload takes them from state.db
        again (after a failed write they may be ahead of what was committed)."""
        self.jobs, self.down, self.cursors, self.heap, self.signature = {}, {}, {}, [], None

    def _sync_cursor(self, job: Job, state: tuple[str, str | None] | None, now: datetime) -> None:
        old = self.jobs.get(job.id)
        if (old is job or old == job) and job.id in self.cursors:
            return
        fp = planner.fingerprint(job, self.config.timezone)
        if state and state[0] == fp:
            cursor = parse_iso(state[1])
        else:
            try:
                cursor = planner.first_cursor(job, self.zone_of(job), now, first_sight=state is None)
            except Exception as exc:  # noqa: BLE001 - one job's schedule must not stop the others
                log_unschedulable(job.id, exc)
                cursor = None
            self.history.set_job_state(job.id, fp, to_iso(cursor))
        if old is None and self.jobs:  # at start, one summary line instead of one per job
            log.info("job %s added (%s)", job.id, job.schedule)
        elif old is not None and old != job:
            log.info("job %s changed", job.id)
        self._set(job.id, cursor)

    # --- cursors -------------------------------------------------------------------------

    def next_slot(self) -> datetime | None:
        while self.heap:
            when, job_id = self.heap[0]
            if self.cursors.get(job_id) == when:
                return when
            heapq.heappop(self.heap)  # stale entry
        return None

    def pop_due(self, now: datetime) -> tuple[str, datetime] | None:
        """The job whose cursor is due by `now` (earliest first), taken off the heap."""
        when = self.next_slot()
        if when is None or when > now:
            return None
        return heapq.heappop(self.heap)[1], when

    def push(self, job_id: str, when: datetime) -> None:
        """Put back a cursor taken by pop_due but not fired."""
        heapq.heappush(self.heap, (when, job_id))

    def advance(self, job: Job, cursor: datetime | None) -> None:
        """Move a job's cursor (in state.db too: in the caller's transaction)."""
        self.history.set_job_state(job.id, planner.fingerprint(job, self.config.timezone), to_iso(cursor))
        self._set(job.id, cursor)

    def park(self, job_id: str, exc: Exception) -> None:
        """A job whose slots cannot be computed gets no next slot until it is changed."""
        log_unschedulable(job_id, exc)
        self.cursors[job_id] = None

    def _set(self, job_id: str, cursor: datetime | None) -> None:
        self.cursors[job_id] = cursor
        if cursor is not None:
            heapq.heappush(self.heap, (cursor, job_id))

    # --- what may run ----------------------------------------------------------------------

    def not_runnable(self, run: Run) -> str | None:
        """Why a pending run of a removed or paused job is skipped; a manual run of a paused
        job still runs (README: `run` on a paused job runs it)."""
        job = self.jobs.get(run.job_id)
        if job is None:
            return "job removed"
        if not job.enabled and run.trigger is not Trigger.MANUAL:
            return "job is paused"
        return None


def log_unschedulable(job_id: str, exc: Exception) -> None:
    """Why a job's fire times cannot be computed; it has no next slot until it is changed."""
    what = str(exc) if isinstance(exc, CronSchedulerError) else f"{type(exc).__name__}: {exc}"
    log.error("job %s: no next slot, not scheduled until it is changed: %s", job_id, what)
