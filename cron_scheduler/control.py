"""CLI -> daemon requests (run now, stop, rerun) and the read side of run history.

A request is a row in state.db plus SIGUSR1 to the daemon; the daemon also polls for them
every second, so a lost signal only costs latency.
"""

from __future__ import annotations

import os
import signal
import time
from datetime import datetime
from typing import Any, BinaryIO

from cron_scheduler import safefs
from cron_scheduler.errors import InvalidOption, OperationalError, UnknownJob, UnknownRun
from cron_scheduler.history import History, Run
from cron_scheduler.home import Home
from cron_scheduler.instance import daemon_pid
from cron_scheduler.models import ACTIVE, RunStatus, parse_iso, to_iso, utcnow

FINAL = tuple(s.value for s in RunStatus if s.final)
RUN_ID_MAX = 2 ** 63 - 1  # SQLite's INTEGER: no run id can be larger


def require_known_job(home: Home, job_id: str) -> None:
    """UnknownJob unless the job is in jobs.json or has records in state.db (a removed job
    keeps its history, and its last run may still be stopped)."""
    from cron_scheduler.jobs import JobService
    if home.jobs.exists() and job_id in JobService(home).all():
        return
    if home.state_db.exists():
        with History.opened(home) as history:
            if history.runs(job_id, limit=1):
                return
    raise UnknownJob(job_id)


def require_run(home: Home, run_id: int) -> Run:
    """The run, or UnknownRun (also for ids no run can have, such as beyond SQLite's range)."""
    if not 1 <= run_id <= RUN_ID_MAX or not home.state_db.exists():
        raise UnknownRun(f"unknown run id: {run_id}")
    with History.opened(home) as history:
        return history.get_run(run_id)


START_HINT = "start one with `cron-scheduler daemon` (or `python -m cron_scheduler.scheduler`, or its systemd unit)"


def require_daemon(home: Home, consequence: str) -> None:
    """OperationalError (exit 1) unless a daemon serves this home."""
    if daemon_pid(home) is None:
        raise OperationalError(f"no daemon is running for {home.root}: {consequence}; {START_HINT}")


def upstream_closure(jobs: dict, job_ids: list[str]) -> list[str]:
    """The named jobs and all their upstreams, transitively, upstreams first."""
    order: dict[str, None] = {}

    def visit(job_id: str, path: tuple[str, ...]) -> None:
        if job_id in order or job_id in path or job_id not in jobs:
            return
        for dep in jobs[job_id].depends_on:
            visit(dep, path + (job_id,))
        order[job_id] = None

    for job_id in job_ids:
        visit(job_id, ())
    return list(order)


def send_request(home: Home, kind: str, args: dict[str, Any], timeout: float = 10.0) -> tuple[int, str | None]:
    """Queue a request; wait for the daemon's answer when a daemon runs. -> (id, result or None)."""
    with History.opened(home) as history:
        request_id = history.add_request(kind, args, to_iso(utcnow()))
        pid = daemon_pid(home)
        if pid is None or pid <= 0:
            return request_id, None
        try:
            os.kill(pid, signal.SIGUSR1)
        except ProcessLookupError:
            return request_id, None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = history.request_result(request_id)
            if result is not None:
                if result.startswith("error: "):
                    raise OperationalError(result[len("error: "):])
                return request_id, result
            time.sleep(0.05)
    raise OperationalError(f"the daemon (pid {pid}) did not answer request {request_id} within {timeout:g}s")


def run_ids(result: str | None) -> list[int]:
    if not result or not result.startswith("runs "):
        return []
    return [int(x) for x in result.split()[1:]]


def run_jobs(home: Home, ids: list[int]) -> dict[int, str]:
    """The job of each run id that exists (for showing names next to ids)."""
    if not ids or not home.state_db.exists():
        return {}
    found = {}
    with History.opened(home) as history:
        for run_id in ids:
            try:
                found[run_id] = history.get_run(run_id).job_id
            except UnknownRun:
                pass
    return found


def named_runs(ids: list[int], jobs: dict[int, str], order: list[str] | None = None) -> str:
    """`2 (long1), 3 (long2)`: each run id with its job; with `order`, runs of the jobs in that
    order (the order they were named in), others after."""
    rank = {job_id: i for i, job_id in enumerate(order or [])}
    ids = sorted(ids, key=lambda i: (rank.get(jobs.get(i, ""), len(rank)), i))
    return ", ".join(f"{i} ({jobs[i]})" if i in jobs else str(i) for i in ids)


def wait_for_runs(home: Home, ids: list[int], timeout: float | None) -> list[Run]:
    """Poll until the runs and whatever they caused in their wave (retries, downstream) are final.
    A poll reads only (run id, wave) of the active runs: cheap while a big wave runs."""
    deadline = None if timeout is None else time.monotonic() + timeout
    wanted = set(ids)
    with History.opened(home) as history:
        waves = {r.wave for r in map(history.get_run, ids) if r.wave is not None}
        while any(run_id in wanted or wave in waves for run_id, wave in history.active_runs()):
            if deadline is not None and time.monotonic() > deadline:
                raise OperationalError(f"runs still active after {timeout:g}s")
            time.sleep(0.1)
        return _latest_per_job([history.get_run(i) for i in ids]
                               + [r for w in waves for r in history.wave_runs(w)])


def _latest_per_job(runs: list[Run]) -> list[Run]:
    latest: dict[str, Run] = {}
    for run in sorted(runs, key=lambda r: r.run_id):
        latest[run.job_id] = run
    return sorted(latest.values(), key=lambda r: r.run_id)


# --- history views -------------------------------------------------------------------------

def run_view(run: Run) -> dict[str, Any]:
    """The stable JSON shape of `history --json`."""
    started, finished = parse_iso(run.started_at), parse_iso(run.finished_at)
    duration = (finished - started).total_seconds() if started and finished else None
    return {"run_id": run.run_id, "job_id": run.job_id, "status": run.status, "trigger": run.trigger,
            "wave": run.wave, "attempt": run.attempt, "scheduled_for": run.scheduled_for,
            "queued_at": run.queued_at, "started_at": run.started_at, "finished_at": run.finished_at,
            "duration": duration, "exit_code": run.exit_code, "signal": run.signal, "reason": run.reason,
            "output_path": run.output_path, "output_bytes": run.output_bytes, "truncated": bool(run.truncated),
            "pid": run.pid, "cpu_user": run.cpu_user, "cpu_sys": run.cpu_sys, "max_rss_kb": run.max_rss_kb,
            "memory_peak_kb": run.memory_peak_kb,
            "missed_count": run.missed_count, "missed_until": run.missed_until}


def history_view(home: Home, job_id: str | None, limit: int, status: str | None) -> list[dict[str, Any]]:
    if status is not None and status not in {s.value for s in RunStatus}:
        raise InvalidOption(f"unknown status {status!r}: choose from {', '.join(s.value for s in RunStatus)}")
    if job_id is not None:
        require_known_job(home, job_id)
    if not home.state_db.exists():
        return []
    with History.opened(home) as history:
        rows = [run_view(r) for r in history.runs(job_id, status, limit)]
        usual = {j: usual_duration(history, j) for j in {r["job_id"] for r in rows}}
    for row in rows:  # the run's duration against the job's usual one (its last 20 successes)
        row["usual_p50"], row["usual_p95"] = usual[row["job_id"]] or (None, None)
    return rows


def usual_duration(history: History, job_id: str) -> tuple[float, float] | None:
    """(p50, p95) of the job's last 20 successful runs, once it has 5."""
    from cron_scheduler.notify import rules
    runs = history.runs(job_id, RunStatus.SUCCEEDED.value, rules.USUAL_RUNS)
    return rules.usual([d for d in map(rules.duration, runs) if d is not None])


def find_run(home: Home, job_id: str, which: str, follow: bool = False) -> Run:
    """The run `logs` prints. 'last': the newest run with output; with `follow`, the newest
    run still queued, waiting or running if there is one (the one a `run` just asked for)."""
    require_known_job(home, job_id)
    if which == "last":
        if not home.state_db.exists():
            raise OperationalError(f"job {job_id!r} has no run with output yet")
        with History.opened(home) as history:
            recent = history.runs(job_id, limit=50)
        active = [r for r in recent if r.status in ACTIVE]
        if follow and active:
            return active[0]
        runs = [r for r in recent if r.output_path]
        if not runs:
            raise OperationalError(f"job {job_id!r} has no run with output yet")
        return runs[0]
    try:
        run_id = int(which)
    except ValueError:
        raise InvalidOption(f"invalid --run {which!r}: use a run id or 'last'") from None
    run = require_run(home, run_id)
    if run.job_id != job_id:
        raise OperationalError(f"run {run.run_id} belongs to job {run.job_id!r}, not {job_id!r}")
    return run


def open_run_log(home: Home, run: Run) -> BinaryIO | None:
    """A run's log for reading, or None if it has none. Its place is derived from the home,
    runs/<job>/<run-id>.log, never taken from state.db, and no link on the way is followed."""
    try:
        return safefs.read_file(home.root, ("runs", run.job_id, home.run_log(run.job_id, run.run_id).name))
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise OperationalError(f"cannot read the log of run {run.run_id}: {exc.strerror or exc}") from None
