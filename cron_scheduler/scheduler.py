"""The foreground daemon: `python -m cron_scheduler.scheduler` (also `cron-scheduler daemon`).

It owns the event loop (loop.py) that the pool registers its fds and timers with, and sleeps
in it until the earliest of: the next slot, the next retry, a run's end, a signal (SIGUSR1
from the CLI, SIGCHLD, SIGTERM/SIGINT, SIGHUP) and the store poll (1 s, one stat call). It
never busy-polls: work that is due but cannot start (no free worker, its job still running)
waits for a run to end, never for a zero timeout.
"""

from __future__ import annotations

import argparse
import dataclasses
import fcntl
import logging
import logging.handlers
import os
import signal
import sqlite3
import sys
import time
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from cron_scheduler import safefs
from cron_scheduler.errors import CronSchedulerError, InvalidOption, OperationalError, StateWriteError
from cron_scheduler.home import MAX_WORKERS, Config, Home, check_executor, load_config
from cron_scheduler.models import utcnow

log = logging.getLogger("cron_scheduler")
STORE_POLL = 1.0
SWEEP_AFTER = 2.0  # seconds after the start: what crashed runs left under runs/ is removed
WRITE_RETRY = 1.0  # seconds between attempts while state.db refuses writes
# How long a write waits for another process's lock on state.db: waiting blocks the loop (no
# output drained, no cap enforced), so a longer lock is a StateWriteError and a retry.
BUSY_TIMEOUT = 0.2


class _Held:
    """A handler whose lines are written together at the end of the daemon's pass
    (`held_lines`), one write for the pass instead of one per line (a busy daemon logs
    several lines per run). Outside a pass, each line is written at once."""

    held = False

    def flush(self) -> None:
        if not _Held.held:
            super().flush()


@contextmanager
def held_lines():
    _Held.held = True
    try:
        yield
    finally:
        _Held.held = False
        for handler in log.handlers:
            try:
                handler.flush()
            except (OSError, ValueError):  # a full disk: the lines are dropped, as in emit()
                pass


class _Stderr(_Held, logging.StreamHandler):
    pass


class _RotatingLog(_Held, logging.handlers.RotatingFileHandler):
    """Rotates once the file has reached maxBytes: one tell() per record instead of the base
    class's extra format() and seek() (a busy daemon logs several lines per run).

    The file is opened (and re-opened after rotation or SIGHUP) relative to the home's directory
    fd with O_NOFOLLOW, mode 0600 by fchmod: a link planted at scheduler.log is refused, never
    appended to. Rotation renames links themselves, never their targets."""

    _refused: str | None = None

    def _open(self):
        path = Path(self.baseFilename)
        fd = safefs.open_file(path.parent, path.name, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.fchmod(fd, 0o600)
        except OSError:
            os.close(fd)
            raise
        self._refused = None
        return open(fd, "a", encoding=self.encoding, errors=self.errors)

    def handleError(self, record) -> None:
        """A refused reopen is said once on stderr (the stderr handler keeps every line)."""
        exc = sys.exc_info()[1]
        if not isinstance(exc, CronSchedulerError):
            return super().handleError(record)
        if str(exc) != self._refused:
            self._refused = str(exc)
            sys.stderr.write(f"cron-scheduler daemon: error: {exc}; log lines go to stderr only\n")
            sys.stderr.flush()

    def shouldRollover(self, record) -> bool:
        if self.stream is None:
            self.stream = self._open()
        # the bytes past the text layer (tell() on it would flush held lines): up to one
        # buffer's worth of held lines late within a pass, exact between passes
        return 0 < self.maxBytes <= getattr(self.stream, "buffer", self.stream).tell()


class _Formatter(logging.Formatter):
    """Formats each record once for both handlers."""

    _last: tuple[logging.LogRecord, str] | None = None

    def format(self, record) -> str:
        if self._last is None or self._last[0] is not record:
            self._last = (record, super().format(record))
        return self._last[1]

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
    try:
        handler = _RotatingLog(home.log, maxBytes=config.log_max_bytes, backupCount=config.log_backups)
    except OSError as exc:  # e.g. a scheduler.log another user (root) created
        raise OperationalError(f"cannot open {home.log}: {exc.strerror or exc}") from None
    stderr = _Stderr(_stderr_stream())
    for h in (handler, stderr):
        h.setFormatter(fmt)
        log.addHandler(h)


def _stderr_stream():
    """A block-buffered stream on fd 2 (sys.stderr writes each line at once); sys.stderr
    itself where it has no fd of its own (a test's capture)."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        return sys.stderr
    return open(fd, "w", encoding="utf-8", errors="backslashreplace", closefd=False)


class Daemon:
    def __init__(self, home: Home, config: Config, once: bool = False, web: str | None = None):
        self.home, self.config, self.once, self.web = home, config, once, web
        self.stopping = False
        self.reload_requested = False
        self.fired = False  # --once: the due timer slots were taken
        self.retry_at = None  # the earliest queued retry still to come, as of the last full pass

    def _on_signal(self, signum, frame) -> None:
        if signum in (signal.SIGTERM, signal.SIGINT):
            self.stopping = True
        elif signum == signal.SIGHUP:
            self.reload_requested = True

    def _install_signals(self, loop) -> None:
        read_fd, write_fd = os.pipe()
        for fd in (read_fd, write_fd):
            os.set_blocking(fd, False)
            fcntl.fcntl(fd, fcntl.F_SETFD, fcntl.FD_CLOEXEC)
        signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
        loop.add_wake_fd(read_fd)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGCHLD):
            signal.signal(sig, self._on_signal)

    def run(self) -> int:
        from cron_scheduler.engine import Engine, Requests, recover
        from cron_scheduler.history import History
        from cron_scheduler.instance import InstanceLock
        from cron_scheduler.loop import Loop
        from cron_scheduler.pool import LocalPool
        from cron_scheduler.runner import set_child_subreaper, start_keeper, use_cgroups

        self.home.check_secure()
        lock = InstanceLock(self.home)
        lock.acquire()
        cgroups = sender = web = None
        try:
            loop = Loop()
            self._install_signals(loop)
            subreaper = set_child_subreaper()
            start_keeper()  # holds the runs' output pipes across a daemon crash (keeper.py)
            history = History.open(self.home, check=True)
            history.repairs = True
            cgroups = self._kill_method()
            if self.config.executor == "dask":  # imports distributed only then
                from cron_scheduler.executors.dask import DaskPool
                pool = DaskPool(self.config.dask_scheduler, max_workers=self.config.max_workers,
                                kill_grace=self.config.kill_grace, loop=loop)
            else:
                pool = LocalPool(max_workers=self.config.max_workers, kill_grace=self.config.kill_grace,
                                 loop=loop, reap_orphans=subreaper)
            now = utcnow()
            engine = Engine(self.home, self.config, pool, history, started=now, prepare_ahead=not self.once)
            requests = Requests(engine)
            engine.reload(now)
            log.info("daemon started: pid %d, home %s, log %s, %d jobs, max_workers %d%s", os.getpid(),
                     self.home.root, self.home.log, len(engine.jobs), self.config.max_workers,
                     "" if subreaper else " (no child subreaper)")
            recover(engine, now)
            # what crashed runs left under runs/: swept once the daemon is up (listing every job's
            # directory costs ~25 ms per 1,000 jobs, not worth delaying the first slot for)
            loop.call_at(time.monotonic() + SWEEP_AFTER, lambda: self._sweep(engine))
            self._reboot_jobs(engine, now)
            history.set_busy_timeout(BUSY_TIMEOUT)
            history.sync_on_claims()
            from cron_scheduler.notify.link import SenderLink
            sender = SenderLink.start(self.home, self.config)  # alerts: a process of its own (notify/)
            if self.web:  # the dashboard: a process of its own too (web/)
                from cron_scheduler.web.child import WebChild
                web = WebChild.start(self.home, self.web)
            return self._loop(engine, requests, pool)
        finally:
            if web is not None:
                web.stop()
            if sender is not None:
                sender.stop()
            if cgroups is not None:
                use_cgroups(None)
                cgroups.close()
            lock.release()

    def _kill_method(self):
        """Runs in their own cgroups where cgroup v2 allows it, else the marker sweep; said in
        scheduler.log and daemon.info (for `status`). The run cgroups, or None."""
        from cron_scheduler.cgroup import OPTION, detect
        from cron_scheduler.instance import write_daemon_info
        from cron_scheduler.runner import kill_method, use_cgroups
        cgroups, where = detect(self.home.root)
        use_cgroups(cgroups, where)
        method = kill_method()
        log.info("kill method: %s (%s)", method, where)
        for controller, why in (cgroups.unavailable.items() if cgroups else ()):
            log.info("runs with %s are refused: %s", OPTION[controller], why)
        try:
            write_daemon_info(self.home, {"pid": os.getpid(), "kill_method": method, "kill_detail": where})
        except OSError as exc:
            log.warning("cannot write daemon.info: %s", exc)
        return cgroups

    def _sweep(self, engine) -> None:
        from cron_scheduler.engine import sweep
        try:
            sweep(engine)
        except (OSError, sqlite3.Error) as exc:  # the next start tries again
            log.warning("cannot sweep the files of ended runs: %s", exc)

    def _reboot_jobs(self, engine, now) -> None:
        from cron_scheduler.models import Trigger
        reboot = [j.id for j in engine.jobs.values() if j.enabled and j.schedule.strip().lower() == "@reboot"]
        if reboot:
            with engine.history.transaction():
                for job_id in reboot:
                    engine.open_wave([job_id], Trigger.REBOOT, now, now)

    def _loop(self, engine, requests, pool) -> int:
        finished: list = []  # results of ended runs not recorded yet (state.db refused a write)
        write_error = None  # the write error logged last: logged once, not at every retry
        while True:
            now = utcnow()
            if self.stopping:
                return self._shutdown(engine, pool, finished)
            with held_lines():
                finished += pool.results()
                try:
                    engine.record_all(finished, now)
                    finished = []
                    if not self._step(engine, requests, now):
                        return 0
                    timeout = self._timeout(engine, now, utcnow())
                    if write_error:
                        log.info("state.db accepts writes again")
                        write_error = None
                except StateWriteError as exc:  # disk full, locked: keep supervising, retry
                    if str(exc) != write_error:
                        log.error("%s; runs in progress stay supervised, retrying every %gs", exc, WRITE_RETRY)
                    write_error = str(exc)
                    engine.forget()
                    timeout = WRITE_RETRY
            pool.loop.run(timeout)

    def _step(self, engine, requests, now) -> bool:
        """One pass: store, requests, due slots, waves, starts. False once --once is done.
        A pass in which nothing changed (store, state.db by anyone) and nothing fell due only
        looks: an idle daemon does one stat and one PRAGMA a second."""
        if engine.has_prepared_due(now):  # the instant of prepared runs: spawn first
            engine.start_queued(now)
        reloaded = self._reload(engine, now)
        changed = engine.history.changed()
        if reloaded or changed or self._due(engine, now):
            requests.handle(now)
            if not (self.once and self.fired):  # with --once, timer slots are taken once, at start
                engine.fire_due(now)
                self.fired = True
            engine.advance_waves(now)
            engine.start_queued(now)
            # retries due by now were offered a worker; those still queued wait for one to free
            # up (a run ending wakes the loop and changes state.db), not for a timeout
            self.retry_at = engine.retry_due(after=now)
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
            engine.pool.kill_grace = self.config.kill_grace  # for stops and caps from now on
        except CronSchedulerError as exc:
            log.error("config not reloaded, keeping the last good one: %s", exc)
        engine.reload(now, force=True)
        for handler in log.handlers:
            if isinstance(handler, logging.handlers.RotatingFileHandler):
                handler.maxBytes, handler.backupCount = self.config.log_max_bytes, self.config.log_backups
                handler.close()  # reopened on the next record (log rotation by others)
        log.info("reloaded store and config (SIGHUP)")
        return True

    def _wake_times(self, engine) -> list:
        """The next slot (with --once, only until the due slots were taken) and next retry."""
        times = [self.retry_at] if self.once and self.fired else [engine.next_wake(), self.retry_at]
        return [when for when in times if when is not None]

    def _due(self, engine, now) -> bool:
        return any(when <= now for when in self._wake_times(engine))

    def _timeout(self, engine, now, current) -> float:
        """Until the next wake time after `now` (the pass's start), counted from `current` (its
        end: a long pass, e.g. preparing a hundred runs, must not delay the next slot by its own
        length). What was due by `now` was handled by the pass, and waits for an event if it
        could not start: only a time that came during the pass gives a zero timeout, once."""
        timeout = STORE_POLL
        for when in self._wake_times(engine):
            if when > now:
                timeout = min(timeout, max(0.0, (when - current).total_seconds()))
        return timeout

    def _shutdown(self, engine, pool, finished: list) -> int:
        log.info("stopping: SIGTERM to %d running run(s), grace %gs", len(pool.running()),
                 self.config.shutdown_grace)
        finished = finished + pool.shutdown(self.config.shutdown_grace)
        try:
            engine.launcher.unprepare()
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
    parser.add_argument("--executor", choices=["local", "dask"], help="where runs execute (default: config, else local)")
    parser.add_argument("--dask-scheduler", metavar="ADDRESS", help="Dask scheduler for --executor dask, e.g. tcp://HOST:8786")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        type=str.upper)
    parser.add_argument("--web", nargs="?", const="127.0.0.1:8765", metavar="HOST:PORT",
                        help="also serve the web dashboard (a child process; needs the web extra)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        home = Home.at(args.home).ensure()
        home.check_secure()  # who may run a daemon on this home: asked before any file is made
        config = load_config(home)
        if args.max_workers is not None:
            if not 1 <= args.max_workers <= MAX_WORKERS:
                raise InvalidOption(f"--max-workers must be from 1 to {MAX_WORKERS}, not {args.max_workers}")
            config = dataclasses.replace(config, max_workers=args.max_workers)
        if args.executor or args.dask_scheduler:
            config = dataclasses.replace(config, executor=args.executor or config.executor,
                                         dask_scheduler=args.dask_scheduler or config.dask_scheduler)
            check_executor(config, "--executor")
        setup_logging(home, config, args.log_level)
        return Daemon(home, config, once=args.once, web=args.web).run()
    except CronSchedulerError as exc:
        print(f"cron-scheduler daemon: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except sqlite3.DatabaseError as exc:  # damage met after the start check: one line, no traceback
        from cron_scheduler.history import state_error
        print(f"cron-scheduler daemon: error: {state_error(Home.at(args.home).state_db, exc)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
