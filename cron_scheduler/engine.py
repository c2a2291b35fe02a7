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
import sys
import uuid
from datetime import datetime, timedelta, tzinfo
from pathlib import Path

from cron_scheduler import planner, schedule
from cron_scheduler.errors import CronSchedulerError
from cron_scheduler.history import ACTIVE, History, Run
from cron_scheduler.home import Config, Home
from cron_scheduler.models import UTC, Job, RunStatus, Trigger, parse_iso, to_iso
from cron_scheduler.pool import UNKNOWN_STATUS, Pool
from cron_scheduler.runner import RunResult, RunSpec, kill_tree, pipe_path, process_start_time
from cron_scheduler.store import Store
from cron_scheduler.validate import printable_id

log = logging.getLogger("cron_scheduler")


class Engine:
    def __init__(self, home: Home, config: Config, pool: Pool, history: History):
        self.home, self.config, self.pool, self.history = home, config, pool, history
        self.store = Store(home)
        self.zone = schedule.get_zone(config.timezone)
        self.jobs: dict[str, Job] = {}
        self.down: dict[str, list[str]] = {}  # planner.dependents(self.jobs)
        self.base_env = dict(os.environ)  # each run's environment starts from this copy
        self.cursors: dict[str, datetime | None] = {}
        self.heap: list[tuple[datetime, str]] = []
        self.signature = None
        self.quarantined: dict[str, str] = {}  # invalid jobs in the store: id -> why (logged once)

    # --- jobs and cursors --------------------------------------------------------------------

    def configure(self, config: Config) -> None:
        """A reloaded config.toml. A new default timezone changes the fingerprint of every job
        without --tz: the next reload re-anchors their cursors in the new zone."""
        zone_changed = config.timezone != self.config.timezone
        self.config, self.zone = config, schedule.get_zone(config.timezone)
        if zone_changed:
            self.forget()

    def zone_of(self, job: Job) -> tzinfo:
        return schedule.get_zone(job.timezone) if job.timezone else self.zone

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
            plan = planner.plan_slots(job, self.zone_of(job), when, now)
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
        self.history.insert_run(job_id=job.id, slot=to_iso(first), scheduled_for=to_iso(first),
                                trigger="schedule", status="missed", queued_at=to_iso(now),
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
            status = "waiting" if job.depends_on and not (is_root and ignore_deps) else "queued"
            values = dict(job_id=job_id, scheduled_for=to_iso(scheduled), wave=wave, priority=job.priority,
                          queued_at=to_iso(now), trigger=(trigger if is_root else Trigger.DEPENDENCY).value,
                          slot=to_iso(slot) if is_root and slot else None)
            if is_root and status == "queued" and trigger in (Trigger.SCHEDULE, Trigger.CATCH_UP):
                decision = planner.overlap(job, [r for r in self.history.with_status(*ACTIVE, job_id=job_id)
                                                 if r.run_id not in planned])
                if decision.action == "skip":
                    status = "skipped"
                    values.update(finished_at=to_iso(now), reason=decision.reason)
                    log.info("job %s slot %s skipped: %s", job_id, values["scheduled_for"], decision.reason)
                elif decision.action == "replace":
                    for victim in decision.victims:
                        self.kill(victim, "replaced by a newer run (overlap=replace)", now)
                elif decision.action == "queue":
                    values.update(reason=decision.reason)
            run_id = self.history.insert_run(status=status, **values)
            if run_id is None:
                continue  # this slot was claimed before (crash recovery): never run it twice
            created.append(run_id)
            if status == "queued":
                log.info("run %d job %s queued (%s, %s)", run_id, job_id, values["trigger"], values["scheduled_for"])
        return created

    def advance_waves(self, now: datetime) -> None:
        """Release or block runs waiting for their upstreams."""
        waiting = self.history.with_status("waiting")
        if not waiting:
            return
        active_jobs = self.history.job_ids("queued", "running")
        waves: dict[int, tuple[dict[str, Run], set[str]]] = {}
        with self.history.transaction():
            for run in waiting:
                job = self.jobs.get(run.job_id)
                if job is None or not job.enabled:
                    why = "job removed" if job is None else "job is paused"
                    self.history.update_run(run.run_id, status="skipped", finished_at=to_iso(now), reason=why)
                    continue
                if run.wave not in waves:  # read each wave once per pass
                    waves[run.wave] = self._wave_state(run.wave)
                latest, members = waves[run.wave]
                decision = planner.wave_decision(job, members, latest, self.history.latest_final, active_jobs)
                if decision.action != "wait":  # later runs of this pass see the decision
                    latest[run.job_id] = dataclasses.replace(
                        run, status="queued" if decision.action == "release" else "blocked", reason=decision.reason)
                if decision.action == "release":
                    self.history.update_run(run.run_id, status="queued", queued_at=to_iso(now))
                    log.info("run %d job %s released: upstreams succeeded", run.run_id, run.job_id)
                elif decision.action == "block":
                    self.history.update_run(run.run_id, status="blocked", finished_at=to_iso(now),
                                            reason=decision.reason)
                    log.warning("run %d job %s %s", run.run_id, run.job_id, decision.reason)

    def release_blocked(self, run: Run, now: datetime) -> None:
        """After a success in a wave, give blocked downstream jobs of that wave one new chance:
        those that no other failed upstream still blocks (a success of an unrelated upstream
        must not release a job only to block it again, recording it blocked twice)."""
        if run.wave is None or not self.down.get(run.job_id):
            return
        downstream = set(planner.wave_members([run.job_id], self.jobs, self.down)) - {run.job_id}
        latest, members = self._wave_state(run.wave)
        active_jobs = self.history.job_ids("queued", "running")
        blocked = sorted(j for j in downstream
                         if j in self.jobs and j in latest and latest[j].status == "blocked")
        progress = True
        while progress:  # a released job counts as pending for the jobs below it
            progress = False
            for job_id in list(blocked):
                decision = planner.wave_decision(self.jobs[job_id], members, latest,
                                                 self.history.latest_final, active_jobs)
                if decision.action == "block":
                    continue
                prev = latest[job_id]
                self.history.insert_run(job_id=job_id, scheduled_for=prev.scheduled_for, wave=run.wave,
                                        trigger="dependency", attempt=prev.attempt + 1, status="waiting",
                                        priority=self.jobs[job_id].priority, queued_at=to_iso(now))
                latest[job_id] = dataclasses.replace(prev, status="waiting")
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
                running_jobs = self.history.job_ids("running")
            for run in runs:
                job = self.jobs.get(run.job_id)
                if job is None or (not job.enabled and run.trigger != "manual"):
                    why = "job removed" if job is None else "job is paused"  # as in advance_waves
                    with self.history.transaction():
                        self.history.update_run(run.run_id, status="skipped", finished_at=to_iso(now),
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
            pid = self.pool.submit(spec)
            if pid is not None:
                started.append((job, run, pid))
        with self.history.transaction():
            for job, run, pid in started:
                self.history.update_run(run.run_id, pid=pid, pid_start=process_start_time(pid))
        for job, run, pid in started:
            log.info("run %d job %s started pid %d (%s, slot %s)", run.run_id, job.id, pid, run.trigger,
                     run.scheduled_for)

    def _write_ahead(self, job: Job, run: Run, now: datetime) -> RunSpec:
        """Record the run as running, with its marker, before its process exists."""
        marker = uuid.uuid4().hex
        log_path = self.home.run_log(job.id, run.run_id)
        late = (now - parse_iso(run.scheduled_for)).total_seconds()
        reason = run.reason
        if run.trigger in ("schedule", "catch-up", "retry") and late > planner.MISS_AFTER.total_seconds():
            reason = f"started {late:.0f}s late"
        self.history.update_run(run.run_id, status="running", started_at=to_iso(now), marker=marker,
                                output_path=str(log_path), reason=reason)
        return RunSpec(run_id=run.run_id, job_id=job.id, argv=self.argv(job), env=self.env(job, run),
                       cwd=job.cwd, log_path=log_path, max_output=job.max_output, timeout=job.timeout,
                       marker=marker)

    @staticmethod
    def argv(job: Job) -> tuple[str, ...]:
        if job.shell:
            return ("/bin/sh", "-c", job.command[0])
        if job.command[0].endswith(".py"):
            return (sys.executable,) + job.command
        return job.command

    def env(self, job: Job, run: Run) -> dict[str, str]:
        env = dict(self.base_env)
        env.update(job.env)
        env.update(CRON_SCHEDULER_JOB=job.id, CRON_SCHEDULER_RUN_ID=str(run.run_id),
                   CRON_SCHEDULER_SCHEDULED_FOR=run.scheduled_for, CRON_SCHEDULER_HOME=str(self.home.root))
        return env

    def record_all(self, results: list[RunResult], now: datetime) -> None:
        """Record the runs that finished since the last wake, in one commit."""
        if results:
            with self.history.transaction():
                for result in results:
                    self.record(result, now)

    def record(self, result: RunResult, now: datetime, status: str | None = None) -> Run:
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
            self.history.update_run(
                run.run_id, status=status, finished_at=to_iso(_instant(result.finished_at) or now),
                started_at=to_iso(_instant(result.started_at)) or run.started_at, exit_code=result.exit_code,
                signal=signame, reason=reason, output_bytes=result.output_bytes, truncated=int(result.truncated),
                cpu_user=result.cpu_user, cpu_sys=result.cpu_sys, max_rss_kb=result.max_rss_kb)
            run = dataclasses.replace(run, status=status)
            job = self.jobs.get(run.job_id)
            if job is not None and planner.should_retry(job, run):
                delay = planner.retry_delay(job, run.attempt)
                self.history.insert_run(job_id=job.id, slot=run.slot, scheduled_for=run.scheduled_for,
                                        trigger="retry", wave=run.wave, attempt=run.attempt + 1, status="queued",
                                        priority=job.priority, queued_at=to_iso(now),
                                        not_before=to_iso(now + timedelta(seconds=delay)),
                                        reason=f"retry of run {run.run_id} after {delay:g}s")
                log.info("job %s attempt %d scheduled in %gs", job.id, run.attempt + 1, delay)
            if status == "succeeded":
                self.release_blocked(run, now)
            for path in self.history.prune(run.job_id, self.config.retention_runs):
                Path(path).unlink(missing_ok=True)
        duration = (result.finished_at - result.started_at)
        log.info("run %d job %s finished: %s in %.2fs%s%s", run.run_id, run.job_id, status, duration,
                 f" exit {result.exit_code}" if result.exit_code is not None else "",
                 f" signal {signame}" if signame else "")
        return run

    def kill(self, run_id: int, reason: str, now: datetime) -> None:
        run = self.history.get_run(run_id)
        if run.status == "running" and run_id in self.pool.running():
            self.pool.cancel(run_id, reason)
            log.info("run %d job %s stopping: %s", run_id, run.job_id, reason)
        elif run.status in ("queued", "waiting"):
            with self.history.transaction():
                self.history.update_run(run_id, status="killed", finished_at=to_iso(now), reason=reason)

    def retry_due(self) -> datetime | None:
        """The earliest not-before time of a queued retry."""
        return parse_iso(self.history.earliest_retry())


def _log_unschedulable(job_id: str, exc: Exception) -> None:
    """Why a job's fire times cannot be computed; it has no next slot until it is changed."""
    what = str(exc) if isinstance(exc, CronSchedulerError) else f"{type(exc).__name__}: {exc}"
    log.error("job %s: no next slot, not scheduled until it is changed: %s", job_id, what)


def _status_of(result: RunResult) -> str:
    if result.timed_out:
        return RunStatus.TIMEOUT.value
    if result.cancelled:
        return RunStatus.KILLED.value
    if result.error == UNKNOWN_STATUS:  # re-supervised after a crash: its exit status is unknowable
        return RunStatus.INTERRUPTED.value
    if result.exit_code == 0 and not result.error:
        return RunStatus.SUCCEEDED.value
    return RunStatus.FAILED.value


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
            handler = getattr(self, f"do_{request.kind}", None)
            try:
                result = (handler(request.args, now) if handler else
                          f"error: unknown request {request.kind!r}")
            except CronSchedulerError as exc:
                result = f"error: {exc}"
            with history.transaction():
                history.finish_request(request.id, to_iso(now), result)
            log.info("request %d %s %s: %s", request.id, request.kind, request.args, result)

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
        if not RunStatus(run.status).final:
            return f"error: run {run.run_id} is still {run.status}"
        attempts = [r.attempt for r in engine.history.wave_runs(run.wave)] if run.wave else [run.attempt]
        with engine.history.transaction():
            new_id = engine.history.insert_run(
                job_id=job.id, scheduled_for=run.scheduled_for, trigger="rerun", wave=run.wave,
                attempt=max(attempts) + 1, status="queued", priority=job.priority, queued_at=to_iso(now),
                reason=f"rerun of run {run.run_id}")
        return f"runs {new_id}"


def recover(engine: Engine, now: datetime) -> None:
    """Resolve runs a previous daemon left `running`: re-supervise the ones whose process still
    lives (pid and start time match), else record them interrupted (and retry if allowed)."""
    for run in engine.history.with_status("running"):
        alive = (run.pid is not None and run.pid_start is not None
                 and process_start_time(run.pid) == run.pid_start)
        job = engine.jobs.get(run.job_id)
        if alive and job is not None:
            elapsed = (now - parse_iso(run.started_at)).total_seconds()
            remaining = None if job.timeout is None else max(0.0, job.timeout - elapsed)
            if engine.pool.adopt(run.run_id, run.pid, run.marker, parse_iso(run.started_at).timestamp(),
                                 remaining, Path(run.output_path), start_time=run.pid_start,
                                 max_output=job.max_output):
                log.warning("run %d job %s re-supervised (pid %d still running)", run.run_id, run.job_id, run.pid)
                continue
        if run.marker:  # descendants that outlived it: by marker only (its group id may be reused)
            kill_tree(0, run.marker, signal.SIGKILL)
        if run.output_path:
            pipe_path(Path(run.output_path)).unlink(missing_ok=True)
        why = ("daemon stopped while it ran; outcome unknown" if run.pid is not None
               else "daemon stopped while starting it; it may not have started")
        result = RunResult(run_id=run.run_id, pid=run.pid, started_at=parse_iso(run.started_at).timestamp(),
                           finished_at=now.timestamp(), error=why)
        engine.record(result, now, status="interrupted")
        log.warning("run %d job %s interrupted: %s", run.run_id, run.job_id, why)
