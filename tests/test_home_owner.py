"""A home belongs to one user: root starting a daemon on, or writing into, a service user's home
is refused before any file is made (a root-owned scheduler.log, jobs.json or state.db is one
that user's daemon cannot open), and a file of the home the daemon cannot open is one line.

Real processes as real users: the tests run as root and chown a home to `nobody`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from harness import CREATE_CRON, child_env

needs_root = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                                reason="needs root (to chown a home to nobody) and setpriv")
NOBODY = 65534
REFUSED = "owned by uid 65534 (nobody), not by this user (uid 0, root); run as its owner, e.g. sudo -u nobody"


@pytest.fixture
def home():
    """An empty home owned by nobody, in a directory nobody can reach (pytest's tmp is 0700)."""
    top = Path(tempfile.mkdtemp(prefix="owner-", dir="/tmp"))
    top.chmod(0o755)
    path = top / "home"
    path.mkdir(mode=0o700)
    os.chown(path, NOBODY, NOBODY)
    yield path
    shutil.rmtree(top)


def run(*argv: str, as_nobody: bool = False) -> subprocess.CompletedProcess:
    prefix = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"] if as_nobody else []
    return subprocess.run([*prefix, sys.executable, *argv], capture_output=True, text=True, timeout=60,
                          env=child_env(), stdin=subprocess.DEVNULL, cwd="/")


def listing(home: Path) -> dict[str, tuple[int, bytes | None]]:
    """Each file of the home: its owner and bytes."""
    return {p.name: (p.lstat().st_uid, p.read_bytes() if p.is_file() else None) for p in home.iterdir()}


@needs_root
def test_root_starting_a_daemon_on_a_service_users_home_is_refused_before_creating_anything(home):
    proc = run("-m", "cron_scheduler.scheduler", "--home", str(home), "--once")
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr == f"cron-scheduler daemon: error: refusing home {home}: {REFUSED} cron-scheduler ...\n"
    assert listing(home) == {}  # no scheduler.log, state.db, daemon.pid of root's


def test_a_daemon_refusing_an_insecure_home_creates_nothing_in_it(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    home.chmod(0o770)  # the group may write it
    proc = run("-m", "cron_scheduler.scheduler", "--home", str(home), "--once")
    assert proc.returncode == 1 and "refusing insecure" in proc.stderr, proc.stderr
    assert len(proc.stderr.splitlines()) == 1 and listing(home) == {}


@needs_root
@pytest.mark.parametrize("name, error", [
    ("scheduler.log", "cannot open {path}: Permission denied"),
    ("state.db", "cannot use {path}: unable to open database file"),
    ("daemon.pid", None),  # replaced (written beside it, renamed over it): no harm done
])
def test_a_daemon_meeting_a_root_owned_file_of_its_home_says_so_in_one_line(home, name, error):
    path = home / name  # what a start as root left behind before it was refused up front
    path.touch(mode=0o600)
    proc = run("-m", "cron_scheduler.scheduler", "--home", str(home), "--once", as_nobody=True)
    if error is None:
        assert proc.returncode == 0, proc.stderr
    else:
        assert proc.returncode == 1, proc.stderr
        assert proc.stderr.splitlines()[-1] == "cron-scheduler daemon: error: " + error.format(path=path)
        assert "Traceback" not in proc.stderr


@needs_root
def test_the_service_users_daemon_runs_on_its_own_home(home):
    proc = run("-m", "cron_scheduler.scheduler", "--home", str(home), "--once", as_nobody=True)
    assert proc.returncode == 0, proc.stderr
    assert {uid for uid, _ in listing(home).values()} == {NOBODY}


@needs_root
@pytest.mark.parametrize("argv", [
    ("-m", "cron_scheduler", "add", "b", "@daily", "/bin/true"),
    ("-c", CREATE_CRON, "b", "@daily", "/bin/true"),
    ("-m", "cron_scheduler", "remove", "a"),
    ("-m", "cron_scheduler", "pause", "a"),
    ("-m", "cron_scheduler", "run", "a"),  # a request in state.db
], ids=["add", "create_cron", "remove", "pause", "run"])
def test_root_writing_a_service_users_home_is_refused_naming_the_user_to_run_as(home, argv):
    made = run("-m", "cron_scheduler", "--home", str(home), "add", "a", "@daily", "/bin/true", as_nobody=True)
    assert made.returncode == 0, made.stderr
    before = listing(home)
    proc = run(*argv[:2], "--home", str(home), *argv[2:])
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.endswith(f": error: refusing home {home}: {REFUSED} cron-scheduler ...\n")
    assert len(proc.stderr.splitlines()) == 1, proc.stderr
    assert listing(home) == before

