"""The daemon's --web: the dashboard as a child process of the daemon (one unit to install),
started after the daemon is up and stopped when it stops. It imports no web framework: the
child does (python -m cron_scheduler.web)."""

from __future__ import annotations

import logging
import subprocess
import sys

log = logging.getLogger("cron_scheduler")
STOP_WAIT = 10.0


class WebChild:
    def __init__(self, proc: subprocess.Popen):
        self.proc = proc

    @classmethod
    def start(cls, home, bind: str) -> "WebChild | None":
        argv = [sys.executable, "-m", "cron_scheduler.web", "--home", str(home.root), "--bind", bind]
        try:  # its stderr is the daemon's (its start line and errors land in the same place)
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, close_fds=True)
        except OSError as exc:
            log.error("web: cannot start the dashboard: %s", exc)
            return None
        log.info("web: dashboard pid %d on %s", proc.pid, bind)
        return cls(proc)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.wait(STOP_WAIT)
        except subprocess.TimeoutExpired:
            log.warning("web: the dashboard did not stop within %gs; killed", STOP_WAIT)
            self.proc.kill()
            self.proc.wait(5)
