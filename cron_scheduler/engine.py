"""The daemon's engine: applies the planner's decisions to state.db and the pool.

Each pass of the daemon's loop calls `reload` (the store, when it changed), `fire_due` (timer
slots), `advance_waves` (runs waiting for dependencies) and `start_queued` (free workers);
`record(result)` closes a finished run (retry, block or release downstream jobs);
`Requests` handles CLI requests and `recover` what a crashed daemon left running.
"""

from __future__ import annotations

import dataclasses
import heapq
import logging
import os
import signal
import uuid
from datetime import datetime, timedelta, tzinfo

from cron_scheduler import planner, schedule
from cron_scheduler.errors import CorruptRun, CronSchedulerError
from cron_scheduler.history import History, Run
from cron_scheduler.home import Config, Home
from cron_scheduler.jobs import zone_of as job_zone
from cron_scheduler.models import ACTIVE, DEFAULT_MAX_OUTPUT, UTC, Job, RunStatus, Trigger, parse_iso, to_iso
from cron_scheduler.pool import Pool
from cron_scheduler.runner import Outcome, RunResult, RunSpec, remove_run_log
from cron_scheduler.store import Store

log = logging.getLogger("cron_scheduler")


class Engine:
    def __init__(self, home: Home, config: Config, pool: Pool, history: History,
                 started: datetime | None = None):
        self.home, self.config, self.pool, self.history = home, config, pool, history
        self.started = started  # slots before it fell while no daemon ran: they follow catch_up
        self.store = Store(home)
        self.zone = schedule.get_zone(config.timezone)
        self.jobs: dict[str, Job] = {}
        self.down: dict[str, list[str]] = {}  # planner.dependents(self.jobs)
        self.base_env = dict(os.environ)  # each run's environment starts from this copy
        self.cursors: dict[str, datetime | None] = {}
        self.heap: list[tuple[datetime, str]] = []
        self.signature = None

    # --- jobs and cursors --------------------------------------------------------------------

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
        """Re-read jobs.json if it changed (True); a corrupt store keeps the last good jobs."""
        signature = self.store.signature()
        if signature == self.signature and not force:
            return False
        try:
            jobs = self.store.load().decode_all()
        except CronSchedulerError as exc:
            log.error("job store unusable, keeping the last good jobs: %s", exc)
            self.signature = signature
            return False
        states = self.history.job_states()
        with self.history.transaction():
            for job_id in set(self.jobs) - set(jobs):
                log.info("job %s removed", job_id)
                self.cursors.pop(job_id, None)
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
        fp = planner.fingerprint(job, self.config.timezone)
        old = self.jobs.get(job.id)
        if old == job and job.id in self.cursors:
            return
        if state and state[0] == fp:
            cursor = parse_iso(state[1])
        else:
            try:
                cursor = planner.first_cursor(job, self.zone_of(job), now, first_sight=state is None)
            except Exception as exc:  # noqa: BLE001 - one job's schedule must not stop the others
                _log_unschedulable(job.id, exc)
                cursor = None
            self.history.set_job_state(job.id, fp, to_iso(cursor))
        if old is None and self.jobs:  # at start, one summary line instead of one per job
            log.info("job %s added (%s)", job.id, job.schedule)
        elif old is not None and old != job:
            log.info("job %s changed", job.id)
        self.cursors[job.id] = cursor
        if cursor is not None:
            heapq.heappush(self.heap, (cursor, job.id))

    def next_slot(self) -> datetime | None:
        while self.heap:
            when, job_id = self.heap[0]
            if self.cursors.get(job_id) == when:
                return when
            heapq.heappop(self.heap)  # stale entry
        return None

    # --- timer slots -------------------------------------------------------------------------

    def fire_due(self, now: datetime) -> None:
        """Queue the runs of every slot that has come, all due jobs in one commit."""
        due = self.next_slot()
        if due is None or due > now:
            return
        with self.history.transaction():
            while (when := self.next_slot()) is not None and when <= now:
                self._fire(heapq.heappop(self.heap)[1], when, now)

    def _fire(self, job_id: str, when: datetime, now: datetime) -> None:
        job = self.jobs[job_id]
        try:
            plan = planner.plan_slots(job, self.zone_of(job), when, now, since=self.started)
        except Exception as exc:  # noqa: BLE001 - as in _sync_cursor
            _log_unschedulable(job_id, exc)
            self.cursors[job_id] = None
            return
        for first, last, count in plan.missed:
            self._record_missed(job, first, last, count, plan, now)
        planned: list[int] = []  # catch-up runs of this plan: they do not skip each other
        for slot, trigger in plan.runs:
            created = self.open_wave([job_id], trigger, slot, now, slot=slot, planned=planned)
            if trigger is Trigger.CATCH_UP:
                planned += created
        self.history.set_job_state(job_id, planner.fingerprint(job, self.config.timezone), to_iso(plan.cursor))
        self.cursors[job_id] = plan.cursor
        if plan.cursor is not None:
            heapq.heappush(self.heap, (plan.cursor, job_id))

    def _record_missed(self, job: Job, first: datetime, last: datetime, count: int,
                       plan: planner.SlotPlan, now: datetime) -> None:
        ran = [s for s, t in plan.runs if t is Trigger.CATCH_UP]
        what = f"catch-up={job.catch_up.value}" + (f", ran {to_iso(ran[-1])}" if ran else "")
        span = to_iso(first) if count == 1 else f"{to_iso(first)} .. {to_iso(last)}"
        self.history.add_run(RunStatus.MISSED, to_iso(now), job_id=job.id, slot=to_iso(first),
                             scheduled_for=to_iso(first), trigger=Trigger.SCHEDULE.value, queued_at=to_iso(now),
                             finished_at=to_iso(now), missed_count=count, missed_until=to_iso(last),
                             reason=f"missed {'' if plan.counted else 'at least '}{count} slot(s) {span}: not seen in time "
                                       f"(daemon down or stalled); {what}")
        log.warning("job %s missed %d slot(s) %s (%s)", job.id, count, span, what)

    # --- waves -------------------------------------------------------------------------------

    def open_wave(self, roots: list[str], trigger: Trigger, scheduled: datetime, now: datetime,
                  slot: datetime | None = None, ignore_deps: bool = False,
                  planned: list[int] | tuple[int, ...] = ()) -> list[int]:
        """A trigger opens a wave: the roots and, waiting for them, every job downstream.
        `planned` are catch-up runs just opened for earlier slots of the same plan: the overlap
        policy does not apply against them (catch-up=all runs every missed slot, one after the
        other, and a catch-up run does not make the on-time slot that follows it skip)."""
        members = planner.wave_members(roots, self.jobs, self.down)
        wave = self.history.new_wave(trigger.value, to_iso(now), members)
        created = []
        for job_id in members:
            job = self.jobs[job_id]
            is_root = job_id in roots
            status = (RunStatus.WAITING if job.depends_on and not (is_root and ignore_deps)
                      else RunStatus.QUEUED)
            values = dict(job_id=job_id, scheduled_for=to_iso(scheduled), wave=wave, priority=job.priority,
                          queued_at=to_iso(now), trigger=(trigger if is_root else Trigger.DEPENDENCY).value,
                          slot=to_iso(slot) if is_root and slot else None)
            if is_root and status is RunStatus.QUEUED and trigger in (Trigger.SCHEDULE, Trigger.CATCH_UP):
                decision = planner.overlap(job, [r for r in self.history.with_status(*ACTIVE, job_id=job_id)
                                                 if r.run_id not in planned])
                if decision.action == "skip":
                    status = RunStatus.SKIPPED
                    values.update(finished_at=to_iso(now), reason=decision.reason)
                    log.info("job %s slot %s skipped: %s", job_id, values["scheduled_for"], decision.reason)
                elif decision.action == "replace":
                    for victim in decision.victims:
                        self.kill(victim, "replaced by a newer run (overlap=replace)", now)
                elif decision.action == "queue":
                    values.update(reason=decision.reason)
            run_id = self.history.add_run(status, to_iso(now), **values)
            if run_id is None:
                continue  # this slot was claimed before (crash recovery): never run it twice
            created.append(run_id)
            if status is RunStatus.QUEUED:
                log.info("run %d job %s queued (%s, %s)", run_id, job_id, values["trigger"], values["scheduled_for"])
        return created

    def advance_waves(self, now: datetime) -> None:
        """Release or block runs waiting for their upstreams."""
        waiting = self.history.with_status(RunStatus.WAITING)
        if not waiting:
            return
        active_jobs = self.history.job_ids(RunStatus.QUEUED, RunStatus.RUNNING)
        waves: dict[int, tuple[dict[str, Run], set[str]]] = {}
        with self.history.transaction():
            for run in waiting:
                job = self.jobs.get(run.job_id)
                why = _not_runnable(job, run)
                if why:
                    self.history.transition(run.run_id, RunStatus.SKIPPED, to_iso(now), finished_at=to_iso(now),
                                            reason=why)
                    continue
                if run.wave not in waves:  # read each wave once per pass
                    waves[run.wave] = self._wave_state(run.wave)
                latest, members = waves[run.wave]
                decision = planner.wave_decision(job, members, latest, self.history.latest_final, active_jobs)
                if decision.action == "wait":
                    continue
                status = _WAVE_STATUS[decision.action]
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
        if run.wave is None or not self.down.get(run.job_id):
            return
        downstream = set(planner.wave_members([run.job_id], self.jobs, self.down)) - {run.job_id}
        latest, members = self._wave_state(run.wave)
        active_jobs = self.history.job_ids(RunStatus.QUEUED, RunStatus.RUNNING)
        blocked = sorted(j for j in downstream
                         if j in self.jobs and j in latest and latest[j].status is RunStatus.BLOCKED)
        progress = True
        while progress:  # a released job counts as pending for the jobs below it
            progress = False
            for job_id in list(blocked):
                decision = planner.wave_decision(self.jobs[job_id], members, latest,
                                                 self.history.latest_final, active_jobs)
                if decision.action == "block":
                    continue
                prev = latest[job_id]
                self.history.add_run(RunStatus.WAITING, to_iso(now), job_id=job_id, scheduled_for=prev.scheduled_for,
                                     wave=run.wave, trigger=Trigger.DEPENDENCY.value, attempt=prev.attempt + 1,
                                     priority=self.jobs[job_id].priority, queued_at=to_iso(now))
                latest[job_id] = dataclasses.replace(prev, status=RunStatus.WAITING)
                blocked.remove(job_id)
                progress = True
                log.info("job %s released in wave %d after run %d succeeded", job_id, run.wave, run.run_id)

    def _wave_state(self, wave: int) -> tuple[dict[str, Run], set[str]]:
        """The latest run of each job in a wave, and the wave's members."""
        return ({r.job_id: r for r in self.history.wave_runs(wave)}, set(self.history.wave_members(wave)))

    # --- starting and finishing runs ---------------------------------------------------------

    def start_queued(self, now: datetime) -> None:
        """Give free workers to queued runs in priority order. All chosen runs are marked
        running in one commit before any is spawned (write-ahead), their pids in a second."""
        free = self.pool.free_slots()
        chosen: list[tuple[Job, Run]] = []
        running_jobs: set[str] | None = None  # read once something is queued (idle wakes skip it)
        offset, page = 0, max(16, 2 * free)
        while len(chosen) < free:
            runs = self.history.queued(to_iso(now), page, offset)
            if runs and running_jobs is None:
                running_jobs = self.history.job_ids(RunStatus.RUNNING)
            for run in runs:
                job = self.jobs.get(run.job_id)
                why = _not_runnable(job, run)
                if why:
                    self.history.transition(run.run_id, RunStatus.SKIPPED, to_iso(now), finished_at=to_iso(now),
                                            reason=why)
                elif planner.can_start(job, run, running_jobs, now) and len(chosen) < free:
                    chosen.append((job, run))
                    running_jobs.add(job.id)
            if len(runs) < page:
                break
            offset += page
        if not chosen:
            return
        specs = []
        with self.history.transaction():
            for job, run in chosen:
                specs.append(self._write_ahead(job, run, now))
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

    def _write_ahead(self, job: Job, run: Run, now: datetime) -> RunSpec:
        """Record the run as running, with its marker, before its process exists."""
        marker = uuid.uuid4().hex
        log_path = self.home.run_log(job.id, run.run_id)
        late = (now - parse_iso(run.scheduled_for)).total_seconds()
        reason = run.reason
        if run.trigger in _TIMED and late > planner.MISS_AFTER.total_seconds():
            reason = f"started {late:.0f}s late"
        self.history.transition(run.run_id, RunStatus.RUNNING, to_iso(now), started_at=to_iso(now), marker=marker,
                                output_path=str(log_path), reason=reason)
        return RunSpec(run_id=run.run_id, job_id=job.id, argv=self.argv(job), env=self.env(job, run),
                       cwd=job.cwd, log_path=log_path, max_output=job.max_output, timeout=job.timeout,
                       marker=marker, resources=job.resources or None, worker=job.worker)

    @staticmethod
    def argv(job: Job) -> tuple[str, ...]:
        """The job's command line; the pool picks the interpreter of a `.py` script."""
        if job.shell:
            return ("/bin/sh", "-c", job.command[0])
        return job.command

    def env(self, job: Job, run: Run) -> dict[str, str]:
        env = dict(self.base_env)
        env.update(job.env)
        env.update(CRON_SCHEDULER_JOB=job.id, CRON_SCHEDULER_RUN_ID=str(run.run_id),
                   CRON_SCHEDULER_SCHEDULED_FOR=run.scheduled_for, CRON_SCHEDULER_HOME=str(self.home.root))
        return env

    def record_all(self, results: list[RunResult], now: datetime) -> None:
        """Record the runs that finished since the last wake, in one commit. The jobs are
        loaded first: after a failed write they were forgotten, and a result recorded without
        its job would lose its retry and its effect on downstream jobs."""
        if results:
            self.reload(now)
            with self.history.transaction():
                for result in results:
                    try:
                        self.record(result, now)
                    except CorruptRun as exc:  # its row was damaged meanwhile: reported, dropped
                        log.error("run %d finished but cannot be recorded: %s", result.run_id, exc)

    def record(self, result: RunResult, now: datetime, status: RunStatus | None = None) -> Run:
        """Close a finished run: its status, then retry, release or block what follows."""
        run = self.history.get_run(result.run_id)
        status = status or _status_of(result)
        reason = result.error or result.cancel_reason or run.reason
        if result.timed_out:
            # the job may have been edited (timeout cleared) or removed while it ran
            cap = self.jobs[run.job_id].timeout if run.job_id in self.jobs else None
            reason = (f"hit its {cap:g}s cap" if cap is not None else
                      f"hit its time cap after {result.finished_at - result.started_at:.1f}s")
        signame = _signal_name(result.signal)
        with self.history.transaction():
            self.history.transition(
                run.run_id, status, to_iso(now), finished_at=to_iso(_instant(result.finished_at) or now),
                started_at=to_iso(_instant(result.started_at)) or run.started_at, exit_code=result.exit_code,
                signal=signame, reason=reason, output_bytes=result.output_bytes, truncated=int(result.truncated),
                cpu_user=result.cpu_user, cpu_sys=result.cpu_sys, max_rss_kb=result.max_rss_kb)
            run = dataclasses.replace(run, status=status)
            job = self.jobs.get(run.job_id)
            if job is not None and planner.should_retry(job, run):
                delay = planner.retry_delay(job, run.attempt)
                self.history.add_run(RunStatus.QUEUED, to_iso(now), job_id=job.id, slot=run.slot,
                                     scheduled_for=run.scheduled_for, trigger=Trigger.RETRY.value, wave=run.wave,
                                     attempt=run.attempt + 1, priority=job.priority, queued_at=to_iso(now),
                                     not_before=to_iso(now + timedelta(seconds=delay)),
                                     reason=f"retry of run {run.run_id} after {delay:g}s")
                log.info("job %s attempt %d scheduled in %gs", job.id, run.attempt + 1, delay)
            if status is RunStatus.SUCCEEDED:
                self.release_blocked(run, now)
            for path in self.history.prune(run.job_id, self.config.retention_runs):
                remove_run_log(self.home.root, run.job_id, path)  # only under runs/<job>/
        duration = (result.finished_at - result.started_at)
        log.log(logging.INFO if status is RunStatus.SUCCEEDED else logging.WARNING,
                "run %d job %s finished: %s in %.2fs%s%s", run.run_id, run.job_id, status, duration,
                 f" exit {result.exit_code}" if result.exit_code is not None else "",
                 f" signal {signame}" if signame else "")
        return run

    def kill(self, run_id: int, reason: str, now: datetime) -> None:
        run = self.history.get_run(run_id)
        if run.status is RunStatus.RUNNING and run_id in self.pool.running():
            self.pool.cancel(run_id, reason)
            log.info("run %d job %s stopping: %s", run_id, run.job_id, reason)
        elif run.status in (RunStatus.QUEUED, RunStatus.WAITING):
            self.history.transition(run_id, RunStatus.KILLED, to_iso(now), finished_at=to_iso(now), reason=reason)

    def retry_due(self, after: datetime | None = None) -> datetime | None:
        """The earliest not-before time of a queued retry (later than `after`)."""
        return parse_iso(self.history.earliest_retry(to_iso(after) if after else ""))


def _log_unschedulable(job_id: str, exc: Exception) -> None:
    """Why a job's fire times cannot be computed; it has no next slot until it is changed."""
    what = str(exc) if isinstance(exc, CronSchedulerError) else f"{type(exc).__name__}: {exc}"
    log.error("job %s: no next slot, not scheduled until it is changed: %s", job_id, what)


_OUTCOME_STATUS = {Outcome.TIMED_OUT: RunStatus.TIMEOUT, Outcome.CANCELLED: RunStatus.KILLED,
                   Outcome.UNKNOWN: RunStatus.INTERRUPTED}  # UNKNOWN: re-supervised after a crash


def _status_of(result: RunResult) -> RunStatus:
    status = _OUTCOME_STATUS.get(result.outcome)
    if status is None:
        ok = result.outcome is Outcome.EXITED and result.exit_code == 0
        status = RunStatus.SUCCEEDED if ok else RunStatus.FAILED
    return status


_TIMED = (Trigger.SCHEDULE, Trigger.CATCH_UP, Trigger.RETRY)
_WAVE_STATUS = {"release": RunStatus.QUEUED, "block": RunStatus.BLOCKED, "skip": RunStatus.SKIPPED}


def _not_runnable(job: Job | None, run: Run) -> str | None:
    """Why a pending run of a removed or paused job is skipped; a manual run of a paused job
    still runs (README: `run` on a paused job runs it)."""
    if job is None:
        return "job removed"
    if not job.enabled and run.trigger is not Trigger.MANUAL:
        return "job is paused"
    return None


def _signal_name(signum: int | None) -> str | None:
    if signum is None:
        return None
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"SIG{signum}"


def _instant(ts: float | None) -> datetime | None:
    return datetime.fromtimestamp(ts, UTC) if ts else None


class Requests:
    """CLI requests (run now, stop, rerun) taken from state.db."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def handle(self, now: datetime) -> None:
        history = self.engine.history
        if not history.others_wrote():
            return
        for request in history.pending_requests():
            # The effect (runs created, runs killed) and the request's completion commit together:
            # a crash in between leaves neither, and the next daemon handles the request once.
            with history.transaction():
                result = self._apply(request, now)
                history.finish_request(request.id, to_iso(now), result)
            log.info("request %d %s %s: %s", request.id, request.kind, request.args, result)

    def _apply(self, request, now: datetime) -> str:
        handler = getattr(self, f"do_{request.kind}", None)
        if handler is None:
            return f"error: unknown request {request.kind!r}"
        try:
            return handler(request.args, now)
        except CronSchedulerError as exc:
            return f"error: {exc}"
        except (KeyError, TypeError, ValueError, AttributeError) as exc:  # a malformed request row
            return f"error: malformed request: {type(exc).__name__}: {exc}"

    def do_run(self, args: dict, now: datetime) -> str:
        engine = self.engine
        unknown = [j for j in args["jobs"] if j not in engine.jobs]
        if unknown:
            return f"error: unknown job id: {unknown[0]!r}"
        with engine.history.transaction():
            created = engine.open_wave(args["jobs"], Trigger.MANUAL, now, now, ignore_deps=args.get("no_deps", False))
        return "runs " + " ".join(map(str, created))

    def do_stop(self, args: dict, now: datetime) -> str:
        engine = self.engine
        targets = [r for r in engine.history.with_status(*ACTIVE)
                   if args.get("all") or r.job_id in args.get("jobs", ()) or r.run_id in args.get("runs", ())]
        with engine.history.transaction():
            for run in targets:
                engine.kill(run.run_id, "stopped by user", now)
        return "stopping " + (" ".join(str(r.run_id) for r in targets) or "nothing")

    def do_rerun(self, args: dict, now: datetime) -> str:
        engine = self.engine
        run = engine.history.get_run(args["run_id"])
        job = engine.jobs.get(run.job_id)
        if job is None:
            return f"error: job {run.job_id!r} no longer exists"
        if not run.status.final:
            return f"error: run {run.run_id} is still {run.status}"
        attempts = [r.attempt for r in engine.history.wave_runs(run.wave)] if run.wave else [run.attempt]
        new_id = engine.history.add_run(
            RunStatus.QUEUED, to_iso(now), job_id=job.id, scheduled_for=run.scheduled_for,
            trigger=Trigger.RERUN.value, wave=run.wave, attempt=max(attempts) + 1, priority=job.priority,
            queued_at=to_iso(now), reason=f"rerun of run {run.run_id}")
        return f"runs {new_id}"


def recover(engine: Engine, now: datetime) -> None:
    """Resolve runs a previous daemon left `running`: the pool re-supervises the ones that still
    run (matched by what it stored: pid and start time), even of a job removed meanwhile (it
    finishes, as it would have; it gets no new slots). The others are interrupted (and retried
    if allowed); what they left running is not chased, as it would not have been without the
    crash."""
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
