"""Which alerts happen: pure functions of run events, the job's definition, its recent runs and
`now` (no I/O; the sender gathers the inputs and records the decisions).

No floods: a failure streak alerts once (its first bad outcome the job asked for), the first
success after the job's own failure once (`recovered`; not after runs that were only blocked or
missed); a failed attempt that will be retried is not an outcome yet; the alerts of one wave
go to a channel as one digest; a channel sends at most `rate_limit` alerts an hour, then one
summary; an identical alert (same kind, job, channel) within the merge window is merged into
the earlier one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Callable, Iterable, Sequence

from cron_scheduler.models import ACTIVE, Job, RunStatus, Trigger, parse_iso

HOUR = 3600.0
USUAL_RUNS = 20      # successful runs the usual duration is learned from
LEARN_AFTER = 5      # successful runs needed before slow is judged without --expect
SLOW_FACTOR = 2.0    # without --expect: slow past 2x the learned p95


class Kind(StrEnum):
    FAILURE = "failure"
    TIMEOUT = "timeout"
    BLOCKED = "blocked"
    MISSED = "missed"
    SLOW = "slow"
    OUTPUT = "output"
    RECOVERED = "recovered"
    DAEMON = "daemon"
    SUMMARY = "summary"
    TEST = "test"


BAD = {RunStatus.FAILED: Kind.FAILURE, RunStatus.INTERRUPTED: Kind.FAILURE, RunStatus.TIMEOUT: Kind.TIMEOUT,
       RunStatus.BLOCKED: Kind.BLOCKED, RunStatus.MISSED: Kind.MISSED}
STREAK_KINDS = frozenset({Kind.FAILURE, Kind.TIMEOUT, Kind.BLOCKED, Kind.MISSED})
NEUTRAL = frozenset({RunStatus.SKIPPED, RunStatus.KILLED}) | ACTIVE  # neither end nor extend a streak
OWN_FAILURES = frozenset({RunStatus.FAILED, RunStatus.INTERRUPTED, RunStatus.TIMEOUT})  # what `recovered` ends


@dataclass(frozen=True)
class Streak:
    """What came before a run's outcome: the job itself failed since its last success (blocked
    or missed runs are not its failures), and the current streak already caused an alert."""
    failed: bool = False
    alerted: bool = False


def retried_ids(runs: Iterable) -> set[int]:
    """Runs followed by a retry attempt (their failure is not the job's outcome)."""
    runs = list(runs)
    retries = {(r.job_id, r.scheduled_for, r.attempt) for r in runs if r.trigger is Trigger.RETRY}
    return {r.run_id for r in runs if (r.job_id, r.scheduled_for, r.attempt + 1) in retries}


def settled(runs: Sequence, retried: set[int]) -> list:
    """The job's outcomes among `runs`, newest first: final, not neutral, not retried."""
    return [r for r in runs if r.status not in NEUTRAL and r.run_id not in retried]


def failed_since_success(runs_before: Sequence, retried: set[int]) -> bool:
    """Whether the job itself failed (failed, timed out, interrupted) after its last success,
    among its outcomes before a run (runs newest first): what a `recovered` alert is about. A
    job only blocked by a failed upstream, or missed while the daemon was down, did not fail."""
    for run in settled(runs_before, retried):
        if run.status is RunStatus.SUCCEEDED:
            return False
        if run.status in OWN_FAILURES:
            return True
    return False


def outcome_alerts(status: RunStatus, run, job: Job, streak: Streak, retried: bool) -> list[Kind]:
    """Alerts caused by a run reaching the final `status`."""
    kinds: list[Kind] = []
    asked = set(job.notify)
    bad = BAD.get(status)
    if bad is not None and not retried:
        if bad.value in asked and not streak.alerted:
            kinds.append(bad)
    elif status is RunStatus.SUCCEEDED and streak.failed and Kind.RECOVERED.value in asked:
        kinds.append(Kind.RECOVERED)
    if status.final and Kind.OUTPUT.value in asked and output_over(run, job):
        kinds.append(Kind.OUTPUT)
    return kinds


def output_over(run, job: Job) -> bool:
    """Over --alert-output, or truncated at --max-output."""
    if run.truncated:
        return True
    return job.alert_output is not None and (run.output_bytes or 0) > job.alert_output


# --- durations ---------------------------------------------------------------------------

def duration(run) -> float | None:
    started, finished = parse_iso(run.started_at), parse_iso(run.finished_at)
    return (finished - started).total_seconds() if started and finished else None


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


def usual(durations: Sequence[float]) -> tuple[float, float] | None:
    """(p50, p95) of the job's recent successful runs, once there are LEARN_AFTER of them."""
    if len(durations) < LEARN_AFTER:
        return None
    return percentile(durations, 50), percentile(durations, 95)


def slow_threshold(job: Job, durations: Sequence[float]) -> float | None:
    """Seconds after which a running run is slow: --expect, else 2x the learned p95."""
    if job.expected_duration is not None:
        return job.expected_duration
    learned = usual(durations)
    return None if learned is None else SLOW_FACTOR * learned[1]


def is_slow(run, threshold: float | None, now: datetime) -> bool:
    started = parse_iso(run.started_at)
    return (run.status is RunStatus.RUNNING and threshold is not None and started is not None
            and (now - started).total_seconds() > threshold)


# --- channels, rate limit, merging ---------------------------------------------------------

def channels_for(job: Job | None, names: Iterable[str]) -> list[str]:
    """The channels a job's alerts go to: --notify-to, else every channel (daemon alerts: all)."""
    names = list(names)
    if job is None or not job.notify_to:
        return names
    return [n for n in job.notify_to if n in names]


def rate_allows(sent: Sequence[datetime], limit: int, now: datetime) -> bool:
    """A channel may send when fewer than `limit` alerts went out in the last hour (0: no limit)."""
    if limit <= 0:
        return True
    since = now - timedelta(seconds=HOUR)
    return sum(1 for t in sent if since < t <= now) < limit


def summary_due(first_suppressed: datetime, last_summary: datetime | None, delay: float) -> datetime:
    """When the summary of suppressed alerts goes out: `delay` after the first one, and at most
    one summary per channel an hour."""
    due = first_suppressed + timedelta(seconds=delay)
    if last_summary is not None:
        due = max(due, last_summary + timedelta(seconds=HOUR))
    return due


def merged_into(earlier: Sequence[tuple[int, datetime]], now: datetime, window: float) -> int | None:
    """The id of an identical alert (same kind, job, channel) created within the window."""
    since = now - timedelta(seconds=window)
    for alert_id, created in earlier:
        if since < created <= now:
            return alert_id
    return None


def summary_text(counts: dict[tuple[str, str], int]) -> str:
    """"12 more alerts suppressed: backup failure x5, sync slow x7"."""
    total = sum(counts.values())
    parts = [f"{job or 'daemon'} {kind} x{n}" for (job, kind), n in sorted(counts.items())]
    return f"{total} more alert{'s' if total != 1 else ''} suppressed: {', '.join(parts)}"


# --- digests of a wave -----------------------------------------------------------------------

WAVE_KINDS = frozenset({Kind.FAILURE, Kind.TIMEOUT, Kind.BLOCKED, Kind.MISSED, Kind.OUTPUT, Kind.RECOVERED})


def deliveries(due: Sequence, settled: Callable[[int], bool], now: datetime, wave_wait: float) -> list[list]:
    """Due alerts (oldest first) cut into deliveries, one message each: the outcome alerts of a
    wave go to a channel together once the wave settled (no run of it still to end), or
    `wave_wait` seconds after the oldest of them; every other alert goes alone. A channel's
    deliveries keep the order of their oldest alert."""
    groups: dict[tuple, list] = {}
    for alert in due:
        wave = getattr(alert, "wave", None)
        key = ((alert.channel, wave) if wave is not None and alert.kind in WAVE_KINDS
               else (alert.channel, None, alert.alert_id))
        groups.setdefault(key, []).append(alert)
    ready = []
    for key, alerts in groups.items():
        if len(key) == 2:
            oldest = parse_iso(alerts[0].created_at)
            if not settled(key[1]) and now < oldest + timedelta(seconds=wave_wait):
                continue
        ready.append(alerts)
    return ready
