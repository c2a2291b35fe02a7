"""The foreground daemon: `python -m cron_scheduler.scheduler` (also `cron-scheduler daemon`).

It sleeps until the earliest of: the next slot, the next retry, a run's output or end, a
signal (SIGUSR1 from the CLI, SIGCHLD, SIGTERM/SIGINT, SIGHUP) and the store poll (1 s,
one stat call). It never busy-polls.
"""

from __future__ import annotations

import argparse
import dataclasses
import fcntl
import logging
import logging.handlers
import os
import signal
import sys
from datetime import datetime

from cron_scheduler.errors import CronSchedulerError, InvalidOption, StateWriteError
from cron_scheduler.home import MAX_WORKERS, Config, Home, load_config
from cron_scheduler.models import utcnow

log = logging.getLogger("cron_scheduler")
STORE_POLL = 1.0
WRITE_RETRY = 1.0  # seconds between attempts while state.db refuses writes


class _RotatingLog(logging.handlers.RotatingFileHandler):
    """Rotates once the file has reached maxBytes: one tell() per record instead of the base
    class's extra format() and seek() (a busy daemon logs several lines per run)."""

    def shouldRollover(self, record) -> bool:
        if self.stream is None:
            self.stream = self._open()
        return 0 < self.maxBytes <= self.stream.tell()


class _Formatter(logging.Formatter):
    def formatTime(self, record, datefmt=None):  # ISO 8601 with offset
        return datetime.fromtimestamp(record.created).astimezone().isoformat(timespec="milliseconds")


def setup_logging(home: Home, config: Config, level: str) -> None:
    log.handlers.clear()
    log.setLevel(level.upper())
    log.propagate = False
    # scheduler.log on a full disk: drop its lines quietly (stderr still gets them) instead of
    # printing a traceback for each one
    logging.raiseExceptions = False
    fmt = _Formatter("%(asctime)s %(levelname)s %(message)s")
    handler = _RotatingLog(home.log, maxBytes=config.log_max_bytes, backupCount=config.log_backups)
    os.chmod(home.log, 0o600)
    stderr = logging.StreamHandler(sys.stderr)
    for h in (handler, stderr):
        h.setFormatter(fmt)
        log.addHandler(h)


class Daemon:
    def __init__(self, home: Home, config: Config, once: bool = False):
        self.home, self.config, self.once = home, config, once
        self.stopping = False
        self.reload_requested = False
        self.fired = False  # --once: the due timer slots were taken
        self.retry_at = None  # the earliest queued retry, as of the last full pass

    def _on_signal(self, signum, frame) -> None:
        if signum in (signal.SIGTERM, signal.SIGINT):
            self.stopping = True
        elif signum == signal.SIGHUP:
            self.reload_requested = True

    def _install_signals(self) -> int:
        read_fd, write_fd = os.pipe()
        for fd in (read_fd, write_fd):
            os.set_blocking(fd, False)
            fcntl.fcntl(fd, fcntl.F_SETFD, fcntl.FD_CLOEXEC)
        signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGCHLD):
            signal.signal(sig, self._on_signal)
        return read_fd

    def run(self) -> int:
        from cron_scheduler.engine import Engine, Requests, recover
        from cron_scheduler.history import History
        from cron_scheduler.instance import InstanceLock
        from cron_scheduler.pool import LocalPool
        from cron_scheduler.runner import set_child_subreaper

        self.home.check_secure()
        lock = InstanceLock(self.home)
        lock.acquire()
        try:
            wake_fd = self._install_signals()
            subreaper = set_child_subreaper()
            history = History.open(self.home)
            pool = LocalPool(max_workers=self.config.max_workers, kill_grace=self.config.kill_grace,
                             wake_fd=wake_fd)
            engine = Engine(self.home, self.config, pool, history)
            requests = Requests(engine)
            now = utcnow()
            engine.reload(now)
            log.info("daemon started: pid %d, home %s, %d jobs, max_workers %d%s", os.getpid(), self.home.root,
                     len(engine.jobs), self.config.max_workers, "" if subreaper else " (no child subreaper)")
            recover(engine, now)
            self._reboot_jobs(engine, now)
            return self._loop(engine, requests, pool)
        finally:
            lock.release()

    def _reboot_jobs(self, engine, now) -> None:
        from cron_scheduler.models import Trigger
        reboot = [j.id for j in engine.jobs.values() if j.enabled and j.schedule.strip().lower() == "@reboot"]
        if reboot:
            with engine.history.transaction():
                for job_id in reboot:
                    engine.open_wave([job_id], Trigger.REBOOT, now, now)

    def _loop(self, engine, requests, pool) -> int:
        finished: list = []  # results of ended runs not recorded yet (state.db refused a write)
        while True:
            now = utcnow()
            if self.stopping:
                return self._shutdown(engine, pool, finished)
            try:
                engine.record_all(finished, now)
                finished = []
                if not self._step(engine, requests, now):
                    return 0
                timeout = self._timeout(engine, now)
            except StateWriteError as exc:  # e.g. disk full: keep supervising, retry
                log.error("%s; runs in progress stay supervised, retrying in %gs", exc, WRITE_RETRY)
                engine.forget()
                timeout = WRITE_RETRY
            finished += pool.wait(timeout)

    def _step(self, engine, requests, now) -> bool:
        """One pass: store, requests, due slots, waves, starts. False once --once is done.
        A pass in which nothing changed (store, state.db by anyone) and nothing fell due only
        looks: an idle daemon does one stat and one PRAGMA a second."""
        reloaded = self._reload(engine, now)
        changed = engine.history.changed()
        if reloaded or changed or self._due(engine, now):
            requests.handle(now)
            if not (self.once and self.fired):  # with --once, timer slots are taken once, at start
                engine.fire_due(now)
                self.fired = True
            engine.advance_waves(now)
            engine.start_queued(now)
            self.retry_at = engine.retry_due()
        if self.once and not engine.history.has_active():
            log.info("--once: nothing left to run; exiting")
            return False
        return True

    def _reload(self, engine, now) -> bool:
        """The store when it changed, and config.toml too after SIGHUP; True if reloaded."""
        if not self.reload_requested:
            return engine.reload(now)
        self.reload_requested = False
        try:  # a broken config.toml is reported; the daemon keeps its last good config
            config = load_config(self.home)
            # the pool is sized once: keep the max_workers in force (--max-workers)
            self.config = dataclasses.replace(config, max_workers=self.config.max_workers)
            engine.configure(self.config)
        except CronSchedulerError as exc:
            log.error("config not reloaded, keeping the last good one: %s", exc)
        engine.reload(now, force=True)
        for handler in log.handlers:
            if isinstance(handler, logging.FileHandler):
                handler.close()  # reopened on the next record (log rotation by others)
        log.info("reloaded store and config (SIGHUP)")
        return True

    def _due(self, engine, now) -> bool:
        return any(when is not None and when <= now for when in (engine.next_slot(), self.retry_at))

    def _timeout(self, engine, now) -> float:
        timeout = STORE_POLL
        for when in (engine.next_slot(), self.retry_at):
            if when is not None:
                timeout = min(timeout, max(0.0, (when - now).total_seconds()))
        return timeout

    def _shutdown(self, engine, pool, finished: list) -> int:
        log.info("stopping: SIGTERM to %d running run(s), grace %gs", len(pool.running()),
                 self.config.shutdown_grace)
        finished = finished + pool.shutdown(self.config.shutdown_grace)
        try:
            engine.record_all(finished, utcnow())
        except StateWriteError as exc:  # the next start records them interrupted
            log.error("daemon stopped without recording %d run(s): %s", len(finished), exc)
            return 1
        log.info("daemon stopped")
        return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m cron_scheduler.scheduler",
                                     description="Run the cron-scheduler daemon in the foreground.")
    parser.add_argument("--home", help="state directory")
    parser.add_argument("--max-workers", type=int, help="runs at once (default: config, else 10)")
    parser.add_argument("--once", action="store_true", help="process what is due now, wait for it, exit")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        type=str.upper)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        home = Home.at(args.home).ensure()
        config = load_config(home)
        if args.max_workers is not None:
            if not 1 <= args.max_workers <= MAX_WORKERS:
                raise InvalidOption(f"--max-workers must be from 1 to {MAX_WORKERS}")
            config = dataclasses.replace(config, max_workers=args.max_workers)
        setup_logging(home, config, args.log_level)
        return Daemon(home, config, once=args.once).run()
    except CronSchedulerError as exc:
        print(f"cron-scheduler daemon: error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
