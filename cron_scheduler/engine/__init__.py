"""The daemon's engine: applies the planner's decisions to state.db and the pool.

One part per responsibility, each readable in one sitting:

- `catalogue`: the jobs of jobs.json and each job's schedule cursor;
- `firing`: timer slots that have come (on time, caught up or missed);
- `waves`: opening waves, and releasing, blocking or skipping runs waiting for upstreams;
- `launch`: giving free workers to queued runs (write-ahead), and stopping runs;
- `results`: closing finished runs, then retries, released downstream jobs, retention;
- `requests`: CLI requests (run, stop, rerun), each effect committed with its completion;
- `recovery`: what a crashed daemon left running, and the files of its ended runs.

`Engine` wires them together; each pass of the daemon's loop calls `reload`, `fire_due`,
`advance_waves` and `start_queued`, and `record_all` with the runs that finished.
"""

from __future__ import annotations

from datetime import datetime, tzinfo

from cron_scheduler.engine.catalogue import Catalogue
from cron_scheduler.engine.firing import Firing
from cron_scheduler.engine.launch import Launcher
from cron_scheduler.engine.recovery import recover, sweep
from cron_scheduler.engine.requests import Requests
from cron_scheduler.engine.results import Recorder
from cron_scheduler.engine.waves import Waves
from cron_scheduler.executors.base import Pool, RunResult
from cron_scheduler.history import History, Run
from cron_scheduler.home import Config, Home
from cron_scheduler.models import Job, RunStatus, Trigger, parse_iso, to_iso

__all__ = ["Engine", "Requests", "recover", "sweep"]


class Engine:
    def __init__(self, home: Home, config: Config, pool: Pool, history: History,
                 started: datetime | None = None, prepare_ahead: bool = True):
        """`prepare_ahead`: fire slots up to firing.LOOKAHEAD early and prepare their runs (a
        daemon that runs on); --once takes only what is due at its start."""
        self.home, self.pool, self.history = home, pool, history
        self.catalogue = Catalogue(home, config, history)
        self.launcher = Launcher(self.catalogue, history, pool)
        self.waves = Waves(self.catalogue, history, self.launcher.stop)
        self.firing = Firing(self.catalogue, history, self.waves, started)
        self.firing.launcher = self.launcher if prepare_ahead else None
        self.recorder = Recorder(self.catalogue, history, self.waves)

    # what the daemon's loop, requests, recovery and tests use

    config = property(lambda self: self.catalogue.config)
    jobs = property(lambda self: self.catalogue.jobs)
    cursors = property(lambda self: self.catalogue.cursors)

    def configure(self, config: Config) -> None:
        self.catalogue.configure(config)

    def zone_of(self, job: Job) -> tzinfo:
        return self.catalogue.zone_of(job)

    def reload(self, now: datetime, force: bool = False) -> bool:
        return self.catalogue.reload(now, force)

    def forget(self) -> None:
        self.catalogue.forget()
        self.launcher.forget()

    def next_slot(self) -> datetime | None:
        return self.catalogue.next_slot()

    def next_wake(self) -> datetime | None:
        """When fire_due has work next (a slot, or shortly before it to prepare its runs)."""
        return self.firing.next_wake()

    def has_prepared_due(self, now: datetime) -> bool:
        return self.launcher.has_due(now)

    def fire_due(self, now: datetime) -> None:
        self.firing.fire_due(now)

    def open_wave(self, roots: list[str], trigger: Trigger, scheduled: datetime, now: datetime,
                  **options) -> list[int]:
        return self.waves.open(roots, trigger, scheduled, now, **options)

    def advance_waves(self, now: datetime) -> None:
        self.waves.advance(now)

    def start_queued(self, now: datetime) -> None:
        self.launcher.start_queued(now)

    def kill(self, run_id: int, reason: str, now: datetime) -> None:
        self.launcher.stop(run_id, reason, now)

    def record_all(self, results: list[RunResult], now: datetime) -> None:
        """First of each pass: the runs spawned last pass but not recorded `running` (a refused
        write), then the results."""
        self.launcher.flush()
        self.recorder.record_all(results, now)

    def record(self, result: RunResult, now: datetime, status: RunStatus | None = None) -> Run:
        return self.recorder.record(result, now, status)

    def retry_due(self, after: datetime | None = None) -> datetime | None:
        """The earliest not-before time of a queued retry (later than `after`)."""
        return parse_iso(self.history.earliest_retry(to_iso(after) if after else ""))
