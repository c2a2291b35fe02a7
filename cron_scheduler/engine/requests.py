"""CLI requests (run now, stop, rerun), taken from state.db. Each request's effect and its
completion commit in one transaction: a crash in between leaves neither, and the next daemon
handles the request once. Handlers return typed answers; their text is the request's result
the CLI reads (`runs 4 5`, `stopping 4`, `error: ...`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from cron_scheduler.errors import CronSchedulerError
from cron_scheduler.history import Request
from cron_scheduler.models import ACTIVE, RunStatus, Trigger, to_iso

if TYPE_CHECKING:
    from cron_scheduler.engine import Engine

log = logging.getLogger("cron_scheduler")


@dataclass(frozen=True)
class Started:
    runs: tuple[int, ...]

    def __str__(self) -> str:
        return "runs " + " ".join(map(str, self.runs))


@dataclass(frozen=True)
class Stopping:
    runs: tuple[int, ...]

    def __str__(self) -> str:
        return "stopping " + (" ".join(map(str, self.runs)) or "nothing")


@dataclass(frozen=True)
class Refused:
    why: str

    def __str__(self) -> str:
        return f"error: {self.why}"


Answer = Started | Stopping | Refused


class Requests:
    def __init__(self, engine: "Engine"):
        self.engine = engine

    def handle(self, now: datetime) -> None:
        history = self.engine.history
        if not history.others_wrote():
            return
        for request in history.pending_requests():
            with history.transaction():
                answer = self.answer(request, now)
                history.finish_request(request.id, to_iso(now), str(answer))
            log.info("request %d %s %s: %s", request.id, request.kind, request.args, answer)

    def answer(self, request: Request, now: datetime) -> Answer:
        handler = getattr(self, f"do_{request.kind}", None)
        if handler is None:
            return Refused(f"unknown request {request.kind!r}")
        try:
            return handler(request.args, now)
        except CronSchedulerError as exc:
            return Refused(str(exc))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:  # a malformed request row
            return Refused(f"malformed request: {type(exc).__name__}: {exc}")

    def do_run(self, args: dict, now: datetime) -> Answer:
        engine = self.engine
        unknown = [j for j in args["jobs"] if j not in engine.jobs]
        if unknown:
            return Refused(f"unknown job id: {unknown[0]!r}")
        with engine.history.transaction():  # the wave whole, or nothing
            return Started(tuple(engine.open_wave(args["jobs"], Trigger.MANUAL, now, now,
                                                  ignore_deps=args.get("no_deps", False))))

    def do_stop(self, args: dict, now: datetime) -> Answer:
        engine = self.engine
        targets = [r for r in engine.history.with_status(*ACTIVE)
                   if args.get("all") or r.job_id in args.get("jobs", ()) or r.run_id in args.get("runs", ())]
        for run in targets:
            engine.kill(run.run_id, "stopped by user", now)
        return Stopping(tuple(r.run_id for r in targets))

    def do_rerun(self, args: dict, now: datetime) -> Answer:
        engine = self.engine
        run = engine.history.get_run(args["run_id"])
        job = engine.jobs.get(run.job_id)
        if job is None:
            return Refused(f"job {run.job_id!r} no longer exists")
        if not run.status.final:
            return Refused(f"run {run.run_id} is still {run.status}")
        attempts = [r.attempt for r in engine.history.wave_runs(run.wave)] if run.wave else [run.attempt]
        new_id = engine.history.add_run(
            RunStatus.QUEUED, to_iso(now), job_id=job.id, scheduled_for=run.scheduled_for,
            trigger=Trigger.RERUN.value, wave=run.wave, attempt=max(attempts) + 1, priority=job.priority,
            queued_at=to_iso(now), reason=f"rerun of run {run.run_id}")
        return Started((new_id,))
