"""The planner: pure decisions, no I/O and no clock (`now` is always a parameter).

The scheduler loop asks it, for each due job, which slots run, which are missed and where the
job's cursor goes next; whether a new run may start beside the job's active runs (overlap);
when a retry is due; whether a run waiting for its dependencies is released or blocked; and
whether a queued run may start now (their start order is an indexed query in `history`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from typing import Callable, Iterable, Sequence

from cron_scheduler import schedule
from cron_scheduler.history import Run
from cron_scheduler.models import (MAX_RETRY_DELAY, RETRYABLE, CatchUp, Job, Overlap, RunStatus, Trigger,
                                   parse_iso)

MISS_AFTER = timedelta(seconds=60)   # a slot first seen later than this counts as missed
MAX_CATCH_UP = 100                   # catch-up=all runs at most this many missed slots
MAX_ENUMERATE = 10000                # slots counted one by one in a missed range
EPSILON = timedelta(microseconds=1)


@dataclass(frozen=True)
class SlotPlan:
    runs: list[tuple[datetime, Trigger]] = field(default_factory=list)
    missed: list[tuple[datetime, datetime, int]] = field(default_factory=list)  # first, last, count
    cursor: datetime | None = None
    counted: bool = True    # False: past MAX_ENUMERATE slots, counts are lower bounds


def newest_until(job: Job, tz: tzinfo, limit: datetime, floor: datetime) -> datetime:
    """The newest slot at or before `limit`, given that `floor` is one: search back in
    growing windows, then walk forward inside the window."""
    window = timedelta(seconds=1)
    while True:
        start = max(floor, limit - window)
        found = fire_after(job, start, tz) if start > floor else floor
        if found is not None and found <= limit:
            while (after := fire_after(job, found, tz)) is not None and after <= limit:
                found = after
            return found
        window *= 8


def fingerprint(job: Job, default_zone: str | None = None) -> str:
    """What the schedule cursor depends on: a change re-anchors the cursor. `default_zone` is
    config.toml's timezone, the zone of jobs without --tz (None: the machine's)."""
    # The text is json.dumps([schedule, zone, start_at, end_at, created_at, enabled]), built
    # without the encoder json.dumps makes for each call: fingerprints are kept in state.db,
    # and a different text would re-anchor every cursor once.
    text = (f"[{_json(job.schedule)}, {_json(job.timezone or default_zone)}, {_json(job.start_at)}, "
            f"{_json(job.end_at)}, {_json(job.created_at)}, {'true' if job.enabled else 'false'}]")
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def _json(text: str | None) -> str:
    return "null" if text is None else _json_string(text)


_json_string = json.encoder.encode_basestring_ascii  # json.dumps' own, for ensure_ascii=True


def fire_after(job: Job, after: datetime, tz: tzinfo) -> datetime | None:
    sched = schedule.parse(job.schedule, job.id)
    return schedule.next_fire(sched, after, tz, anchor=parse_iso(job.created_at),
                              start_at=parse_iso(job.start_at), end_at=parse_iso(job.end_at))


def first_cursor(job: Job, tz: tzinfo, now: datetime, first_sight: bool) -> datetime | None:
    """Where a job's cursor starts. A job the daemon sees for the first time starts at its
    creation, so slots it missed while no daemon looked count as missed; an edited job
    starts now (no catch-up for an edit)."""
    if not job.enabled:
        return None
    created = parse_iso(job.created_at) or now
    return fire_after(job, min(created, now) if first_sight else now, tz)


def plan_slots(job: Job, tz: tzinfo, cursor: datetime, now: datetime,
               since: datetime | None = None) -> SlotPlan:
    """All slots from `cursor` up to `now`: on-time ones run; the others follow catch_up.
    `since` is when this daemon started: a slot before it fell while no daemon ran and follows
    catch_up however short the outage was; MISS_AFTER is the lateness a running daemon may
    have (a stall, a long pass) before a slot counts as missed."""
    on_time: list[datetime] = []
    head: list[datetime] = []          # the oldest late slots, up to one more than catch-up runs
    counted = True
    prev = last = None                 # the two newest late slots
    count = 0
    slot: datetime | None = cursor
    while slot is not None and slot <= now:
        if now - slot <= MISS_AFTER and (since is None or slot >= since):
            on_time.append(slot)
        else:
            count += 1
            if len(head) <= MAX_CATCH_UP:
                head.append(slot)
            prev, last = last, slot
            if count >= MAX_ENUMERATE:  # do not walk years of per-second slots one by one
                counted = False
                # the newest late instant: a slot exactly MISS_AFTER old, or at `since`, is on time
                late_limit = max(now - MISS_AFTER, since or now - MISS_AFTER) - EPSILON
                newest = newest_until(job, tz, late_limit, slot)
                if newest > slot:
                    prev, last = newest_until(job, tz, newest - EPSILON, slot), newest
                    count += 1 if prev == slot else 2  # a lower bound from here on
                slot = fire_after(job, late_limit, tz)
                continue
        slot = fire_after(job, slot, tz)
    plan = SlotPlan(cursor=slot, counted=counted)
    if count and job.catch_up is CatchUp.ALL:
        plan.runs.extend((s, Trigger.CATCH_UP) for s in head[:MAX_CATCH_UP])
        if count > MAX_CATCH_UP:
            plan.missed.append((head[MAX_CATCH_UP], last, count - MAX_CATCH_UP))
    elif count and job.catch_up is CatchUp.LATEST:
        if count > 1:
            plan.missed.append((head[0], prev, count - 1))
        plan.runs.append((last, Trigger.CATCH_UP))
    elif count:
        plan.missed.append((head[0], last, count))
    plan.runs.extend((s, Trigger.SCHEDULE) for s in on_time)
    return plan


@dataclass(frozen=True)
class OverlapDecision:
    action: str                 # "start", "queue", "skip" or "replace"
    reason: str | None = None
    victims: tuple[int, ...] = ()


def overlap(job: Job, active: Sequence[Run]) -> OverlapDecision:
    """What a new slot does beside the job's runs that are queued or running."""
    running = [r for r in active if r.status is RunStatus.RUNNING]
    pending = [r for r in active if r.status in (RunStatus.QUEUED, RunStatus.WAITING)]
    if not active or job.overlap is Overlap.ALLOW:
        return OverlapDecision("start")
    if job.overlap is Overlap.REPLACE:
        return OverlapDecision("replace", victims=tuple(r.run_id for r in active))
    if job.overlap is Overlap.QUEUE:
        if pending:
            return OverlapDecision("skip", f"run {pending[0].run_id} is already queued (overlap=queue)")
        return OverlapDecision("queue", f"queued behind run {running[0].run_id} (overlap=queue)")
    busy = running[0] if running else active[0]
    return OverlapDecision("skip", f"previous run {busy.run_id} still {busy.status}")


def retry_delay(job: Job, attempt: int) -> float:
    """Delay before attempt `attempt + 1`: retry_delay doubling per attempt, capped at 1 h."""
    return min(job.retry_delay * (2 ** max(0, attempt - 1)), MAX_RETRY_DELAY)


def should_retry(job: Job, run: Run) -> bool:
    return run.status in RETRYABLE and run.attempt <= job.retries


def can_start(job: Job | None, run: Run, running_jobs: Iterable[str], now: datetime) -> bool:
    if run.not_before and parse_iso(run.not_before) > now:
        return False
    if job is not None and job.overlap is not Overlap.ALLOW and run.trigger is not Trigger.MANUAL and job.id in running_jobs:
        return False
    return True


@dataclass(frozen=True)
class WaveDecision:
    action: str                 # "wait", "release", "block" or "skip"
    reason: str | None = None


def wave_decision(job: Job, members: set[str], wave_latest: dict[str, Run],
                  latest_final: Callable[[str], Run | None], active_jobs: set[str]) -> WaveDecision:
    """A run waiting for its upstreams: upstreams in the wave must have succeeded in it; an
    upstream outside the wave counts as satisfied when its latest run succeeded, and as
    pending while it is queued or runs."""
    for upstream in job.depends_on:
        if upstream in members:
            run = wave_latest.get(upstream)
            if run is None or not run.status.final:
                return WaveDecision("wait")
            if run.status is RunStatus.SKIPPED:  # its slot did not run here: neither did a failure
                return WaveDecision("skip", f"skipped: upstream {upstream} run {run.run_id} was skipped"
                                            + (f" ({run.reason})" if run.reason else ""))
            if run.status is not RunStatus.SUCCEEDED:
                return WaveDecision("block", _blame(upstream, run))
        else:
            if upstream in active_jobs:
                return WaveDecision("wait")
            run = latest_final(upstream)
            if run is None:
                return WaveDecision("block", f"blocked: upstream {upstream} has never succeeded")
            if run.status is not RunStatus.SUCCEEDED:
                return WaveDecision("block", _blame(upstream, run))
    return WaveDecision("release")


def _blame(upstream: str, run: Run) -> str:
    if run.status is RunStatus.BLOCKED and run.reason:
        return run.reason  # name the root cause, not the middle of the chain
    detail = f"exit {run.exit_code}" if run.exit_code is not None else (run.signal or run.reason or "")
    return f"blocked by {upstream} run {run.run_id} ({run.status}{', ' + detail if detail else ''})"


def dependents(jobs: dict[str, Job]) -> dict[str, list[str]]:
    """Job id -> the ids of the jobs that depend on it directly (every job has an entry; an
    upstream that is not among the jobs too, when some job names it)."""
    down: dict[str, list[str]] = {job_id: [] for job_id in jobs}
    for job in jobs.values():
        for dep in job.depends_on:
            down.setdefault(dep, []).append(job.id)
    return down


def wave_members(roots: Iterable[str], jobs: dict[str, Job],
                 down: dict[str, list[str]] | None = None) -> list[str]:
    """The roots and every job downstream of them, transitively. `down` is dependents(jobs),
    for callers that keep it between calls."""
    if down is None:
        down = dependents(jobs)
    seen: dict[str, None] = {}  # ordered set
    stack = list(roots)
    while stack:
        job_id = stack.pop()
        if job_id in seen or job_id not in jobs:
            continue
        seen[job_id] = None
        stack.extend(down.get(job_id, ()))
    return list(seen)
