"""The daemon's side of alerts: start the sender process (only when config.toml defines
channels), pass it daemon events, copy its log lines into scheduler.log, stop it cleanly.

Nothing here waits on the sender while the daemon runs: writes to its pipe are non-blocking
(dropped if the pipe is full), and its log lines are read by a thread of their own.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading

from cron_scheduler.errors import StateWriteError
from cron_scheduler.home import Config, Home
from cron_scheduler.models import to_iso, utcnow

log = logging.getLogger("cron_scheduler")
STOP_WAIT = 15.0  # seconds the daemon's stop waits for the sender's last deliveries (its DRAIN + start)


class SenderLink:
    def __init__(self, proc: subprocess.Popen):
        self.proc = proc
        self.fd = proc.stdin.fileno()
        os.set_blocking(self.fd, False)
        self.reader = threading.Thread(target=self._copy_log, name="alerts-log", daemon=True)
        self.reader.start()
        self.handler = _DaemonEvents(self)
        log.addHandler(self.handler)

    @classmethod
    def start(cls, home: Home, config: Config) -> "SenderLink | None":
        from cron_scheduler.notify.config import parse_notify
        channels = parse_notify(config.notify, str(home.config_file)).channels
        if not channels:
            return None
        argv = [sys.executable, "-m", "cron_scheduler.notify.sender", "--home", str(home.root),
                "--daemon-pid", str(os.getpid()), "--since", to_iso(utcnow())]
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                    close_fds=True)
        except OSError as exc:
            log.error("alerts disabled: cannot start the sender: %s", exc)
            return None
        log.info("alerts: sender pid %d, %d channel(s): %s", proc.pid, len(channels), ", ".join(sorted(channels)))
        return cls(proc)

    def tell(self, line: str) -> None:
        """One line to the sender; never blocks (a full pipe drops it)."""
        try:
            os.write(self.fd, line.replace("\n", " ").encode() + b"\n")
        except (BlockingIOError, BrokenPipeError, OSError):
            pass

    def stop(self, timeout: float = STOP_WAIT) -> None:
        """Ask for a clean stop (the sender delivers what is due, up to its DRAIN) and wait."""
        log.removeHandler(self.handler)
        self.tell("quit")
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("alerts: the sender did not stop within %gs; killed (pending alerts go out at the next start)",
                        timeout)
            self.proc.kill()
            self.proc.wait(5)
        self.reader.join(2)

    def _copy_log(self) -> None:
        """The sender's stderr lines ("LEVEL text") into scheduler.log."""
        for raw in self.proc.stderr:
            text = raw.decode(errors="replace").rstrip("\n")
            level, _, rest = text.partition(" ")
            number = logging.getLevelName(level)
            if isinstance(number, int) and rest:
                log.log(number, "alerts: %s", rest)
            elif text:
                log.error("alerts: %s", text)


class _DaemonEvents(logging.Handler):
    """Turns the daemon's own error lines about state.db writes into `daemon` alerts (the loop
    logs each distinct write error once)."""

    def __init__(self, link: SenderLink):
        super().__init__(logging.ERROR)
        self.link = link

    def emit(self, record: logging.LogRecord) -> None:
        args = record.args if isinstance(record.args, tuple) else ()
        if any(isinstance(a, StateWriteError) for a in args):
            self.link.tell("daemon state.db write failure: " + record.getMessage())
