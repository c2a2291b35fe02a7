"""The test harness shared by tests/e2e and tests/faults: a real daemon
(`python -m cron_scheduler.scheduler`) and the real CLI, each a subprocess of the interpreter
running pytest, against a temp home (mode 0700); direct read-only access to state.db; a /proc
scan for the processes of runs.

Nothing here asserts after a fixed sleep: helpers poll for a condition with a generous deadline.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

DEADLINE = 30.0          # default wait for a condition
POLL = 0.25              # between two polls (each poll is a CLI subprocess)
DB_POLL = 0.1            # between two direct reads of state.db
START_DEADLINE = 20.0    # for "daemon started" in scheduler.log
STOP_DEADLINE = 40.0     # for the daemon to exit after SIGTERM

# Short grace periods keep the suite fast (timeouts, stop, shutdown); see home.Config.
CONFIG = "kill_grace = 2.0\nshutdown_grace = 5.0\n"

CREATE_CRON = "from cron_scheduler.cli import create_cron_main; create_cron_main()"
MARKER_VAR = "CRON_SCHEDULER_RUN_MARKER"
ACTIVE = ("queued", "waiting", "running")


def ts(iso: str | None) -> float:
    """An ISO 8601 instant from history --json as a POSIX timestamp."""
    assert iso is not None
    return datetime.fromisoformat(iso).timestamp()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    for key in ("CRON_SCHEDULER_HOME", "XDG_STATE_HOME"):
        env.pop(key, None)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def wait_until(what: str, probe: Callable[[], Any], timeout: float = DEADLINE,
               interval: float = POLL, describe: Callable[[], str] | None = None) -> Any:
    """Call probe() until it returns something truthy; return that. Fail with `what` after timeout."""
    end = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > end:
            extra = f"\n{describe()}" if describe else ""
            pytest.fail(f"timed out after {timeout:g}s waiting for {what}{extra}")
        time.sleep(interval)


def pid_exists(pid: int) -> bool:
    """/proc/PID exists (a zombie counts: its parent has not reaped it yet)."""
    return Path(f"/proc/{pid}").exists()


def marked_processes() -> dict[str, set[int]]:
    """Every live (non-zombie) process carrying a run marker: marker -> pids. One /proc scan."""
    found: dict[str, set[int]] = {}
    prefix = f"{MARKER_VAR}=".encode()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as fh:
                environ = fh.read()
        except OSError:
            continue
        for entry in environ.split(b"\0"):
            if entry.startswith(prefix):
                found.setdefault(entry[len(prefix):].decode(errors="replace"), set()).add(int(name))
    return found


def pid_state(pid: int) -> str | None:
    """The state letter of /proc/PID/stat (R, S, Z, ...), or None when gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    return stat[stat.rfind(b")") + 2:][:1].decode()


def pid_alive(pid: int) -> bool:
    return pid_state(pid) not in (None, "Z", "X")


@dataclass
class Daemon:
    proc: subprocess.Popen
    stderr_path: Path
    args: list[str]

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def terminate(self, timeout: float = STOP_DEADLINE) -> int:
        """SIGTERM and wait; kill -9 as a last resort (then fail: the daemon did not stop)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                pytest.fail(f"daemon pid {self.pid} ignored SIGTERM for {timeout:g}s; killed -9")
        return self.proc.returncode

    def kill9(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)

    def wait(self, timeout: float = STOP_DEADLINE) -> int:
        return self.proc.wait(timeout)


@dataclass
class Env:
    """One temp home plus helpers to drive the CLI and the daemon on it."""

    home: Path
    tmp: Path
    daemons: list[Daemon] = field(default_factory=list)

    # --- the CLI -----------------------------------------------------------------------------

    def cli(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        """`cron-scheduler --home H ARGS...` with the interpreter running the tests."""
        cmd = [sys.executable, "-m", "cron_scheduler", "--home", str(self.home), *map(str, args)]
        return self._run(cmd, check, timeout)

    def create_cron(self, job_id: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """`create_cron --home H ID [OPTIONS] SCHEDULE SCRIPT [ARGS]...`."""
        cmd = [sys.executable, "-c", CREATE_CRON, "--home", str(self.home), job_id, *map(str, args)]
        return self._run(cmd, check, 60)

    def _run(self, cmd: list[str], check: bool, timeout: float) -> subprocess.CompletedProcess:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=child_env(),
                              stdin=subprocess.DEVNULL, cwd=self.tmp)
        if check and proc.returncode != 0:
            pytest.fail(f"{' '.join(cmd[3:] if cmd[1] == '-c' else cmd[2:])} exited {proc.returncode}\n"
                        f"stdout: {proc.stdout}\nstderr: {proc.stderr}")
        return proc

    def json(self, *args: str) -> Any:
        return json.loads(self.cli(*args, "--json").stdout)

    def history(self, job_id: str | None = None, limit: int = 1000, status: str | None = None) -> list[dict]:
        """history --json, oldest first (the CLI prints newest first)."""
        args = ["history"] + ([job_id] if job_id else []) + ["--limit", str(limit)]
        if status:
            args += ["--status", status]
        return list(reversed(self.json(*args)))

    def wait_history(self, what: str, predicate: Callable[[list[dict]], Any], job_id: str | None = None,
                     timeout: float = DEADLINE) -> Any:
        """Poll `history --json` until predicate(runs, oldest first) is truthy; return its value."""
        last: list[list[dict]] = [[]]

        def probe():
            last[0] = self.history(job_id)
            return predicate(last[0])

        def describe():
            rows = [{k: r[k] for k in ("run_id", "job_id", "status", "trigger", "attempt", "reason")}
                    for r in last[0][-30:]]
            return "history:\n" + "\n".join(map(str, rows)) + "\nscheduler.log tail:\n" + self.log_tail()

        return wait_until(what, probe, timeout, describe=describe)

    def wait_status(self, job_id: str, status: str, count: int = 1, timeout: float = DEADLINE) -> list[dict]:
        """Until the job has at least `count` runs with `status`; returns those runs."""
        return self.wait_history(
            f"{count} {status} run(s) of {job_id}",
            lambda runs: (lambda hits: hits if len(hits) >= count else None)(
                [r for r in runs if r["status"] == status]),
            job_id, timeout)

    def run_ids(self, result: subprocess.CompletedProcess) -> list[int]:
        """Run ids from the output of `run`/`rerun` ("run A B: runs 4 (A), 5 (B)")."""
        line = result.stdout.strip().splitlines()[0]
        assert ": runs " in line, result.stdout
        return [int(x) for x in re.sub(r"\([^)]*\)|,", " ", line.split(": runs ", 1)[1]).split()]

    # --- state.db, read directly ---------------------------------------------------------------

    def query(self, sql: str, args: tuple = ()) -> list[dict[str, Any]]:
        db = self.home / "state.db"
        if not db.exists():
            return []
        conn = sqlite3.connect(db, timeout=30)
        try:
            conn.row_factory = sqlite3.Row
            return [dict(r) for r in conn.execute(sql, args)]
        finally:
            conn.close()

    def runs(self, job_id: str | None = None) -> list[dict[str, Any]]:
        """All run rows, oldest first."""
        if job_id is None:
            return self.query("SELECT * FROM runs ORDER BY run_id")
        return self.query("SELECT * FROM runs WHERE job_id = ? ORDER BY run_id", (job_id,))

    def active(self) -> list[dict[str, Any]]:
        return self.query("SELECT * FROM runs WHERE status IN ('queued', 'waiting', 'running') ORDER BY run_id")

    def describe_runs(self, rows: int = 30) -> str:
        keep = ("run_id", "job_id", "status", "trigger", "attempt", "slot", "pid", "reason")
        lines = [str({k: r[k] for k in keep}) for r in self.runs()[-rows:]]
        return "runs:\n" + "\n".join(lines) + "\nscheduler.log tail:\n" + self.log_tail()

    def wait_runs(self, what: str, predicate: Callable[[list[dict]], Any], job_id: str | None = None,
                  timeout: float = DEADLINE) -> Any:
        """Poll state.db until predicate(runs, oldest first) is truthy; return its value."""
        return wait_until(what, lambda: predicate(self.runs(job_id)), timeout, DB_POLL,
                          describe=self.describe_runs)

    # --- files -------------------------------------------------------------------------------

    def script(self, name: str, code: str) -> Path:
        """A small Python job script in the temp dir."""
        path = self.tmp / name
        path.write_text(textwrap.dedent(code).lstrip())
        path.chmod(0o755)
        return path

    def log_text(self) -> str:
        path = self.home / "scheduler.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    # --- the daemon --------------------------------------------------------------------------

    def start_daemon(self, *args: str, wait_started: bool = True) -> Daemon:
        """Start `python -m cron_scheduler.scheduler --home H ARGS...`; wait for its start line."""
        n = len(self.daemons)
        stderr_path = self.tmp / f"daemon{n}.stderr"
        cmd = [sys.executable, "-m", "cron_scheduler.scheduler", "--home", str(self.home), *args]
        with open(stderr_path, "wb") as err:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=err, stderr=err, env=child_env(),
                                    cwd=self.tmp)
        daemon = Daemon(proc, stderr_path, cmd)
        self.daemons.append(daemon)
        if wait_started:
            line = f"daemon started: pid {proc.pid},"

            def started():
                if line in self.log_text():
                    return True
                if proc.poll() is not None:
                    pytest.fail(f"daemon exited {proc.returncode} before starting:\n{daemon.stderr()}")
                return False

            wait_until("daemon started", started, START_DEADLINE, interval=0.05,
                       describe=daemon.stderr)
        return daemon

    def run_once(self, *args: str, timeout: float = 90) -> Daemon:
        """`scheduler --once`: handle what is due and pending, wait for the runs, exit 0."""
        daemon = self.start_daemon("--once", *args, wait_started=False)
        try:
            code = daemon.wait(timeout)
        except subprocess.TimeoutExpired:
            daemon.kill9()
            pytest.fail(f"daemon --once did not exit within {timeout:g}s\n{self.describe_runs()}")
        assert code == 0, f"daemon --once exited {code}:\n{daemon.stderr()}"
        return daemon

    def kill_leftovers(self) -> None:
        """SIGKILL processes of this home's runs still alive (by pid, found by their marker)."""
        markers = {r["marker"] for r in self.query("SELECT DISTINCT marker FROM runs WHERE marker IS NOT NULL")}
        for marker, pids in marked_processes().items():
            if marker in markers:
                for pid in pids:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass

    def cleanup(self) -> None:
        problems = []
        for daemon in self.daemons:
            if daemon.proc.poll() is None:
                daemon.proc.send_signal(signal.SIGTERM)
                try:
                    daemon.proc.wait(STOP_DEADLINE)
                except subprocess.TimeoutExpired:
                    daemon.proc.kill()
                    daemon.proc.wait(10)
                    problems.append(f"daemon pid {daemon.pid} ignored SIGTERM; killed -9")
        try:
            self.kill_leftovers()
        except sqlite3.Error:
            pass
        self.remove_cgroups()
        if problems:
            pytest.fail("; ".join(problems))

    def remove_cgroups(self) -> None:
        """Remove the run cgroups of this home that outlived its daemons (a run still live at a
        kill -9, a helper left behind on purpose): the next daemon of the home would prune them,
        and none comes. What still lives in them is killed first (cgroup.kill)."""
        from cron_scheduler.cgroup import PREFIX, detect
        from cron_scheduler.home import Home
        cgroups, _ = detect(Home.at(self.home).root)
        if cgroups is None:
            return
        for name in os.listdir(cgroups.base):
            if name.startswith(PREFIX):
                cgroups.kill(name[len(PREFIX):])
        deadline = time.monotonic() + 10
        cgroups.close()
        while cgroups.base.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
            cgroups.close()


@contextmanager
def temp_env(tmp_path: Path) -> Iterator[Env]:
    """A temp home (0700, short kill/shutdown grace in config.toml) and its helpers.

    Every daemon started through it is stopped at the end (SIGTERM, wait; kill -9 last), and
    processes of its runs that are still alive are killed."""
    env = Env(home=make_home(tmp_path), tmp=tmp_path)
    try:
        yield env
    finally:
        env.cleanup()


def make_home(tmp_path: Path) -> Path:
    """A temp home (0700) with short kill/shutdown grace periods in config.toml."""
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    home.chmod(0o700)
    (home / "config.toml").write_text(CONFIG)
    (home / "config.toml").chmod(0o600)
    return home
