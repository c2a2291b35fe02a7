"""No symbolic link inside the home is ever followed (the home itself may be reached through one).

Each test plants a link at one file of a temp home, pointing at a victim file OUTSIDE the home,
drives the real CLI or the real daemon, and checks the victim byte for byte and mode for mode
afterwards, plus the one clear error (or log) line: a link is refused, or replaced by a fresh
file, never followed.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import stat
from pathlib import Path
from typing import Iterator

import pytest

from cron_scheduler.errors import InsecureHome
from cron_scheduler.home import Home

from harness import Env, temp_env, wait_until

SECRET = b"outside secret: never print me, never touch me\n"
VICTIM_MODE = 0o644


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Env]:
    with temp_env(tmp_path) as env:
        yield env


class Victim:
    """A file outside the home, with its bytes and mode remembered."""

    def __init__(self, path: Path, content: bytes = SECRET):
        self.path = path
        path.write_bytes(content)
        path.chmod(VICTIM_MODE)
        self.content = content

    def assert_untouched(self) -> None:
        assert self.path.exists() and not self.path.is_symlink(), f"{self.path} was removed"
        assert self.path.read_bytes() == self.content, f"{self.path} was modified"
        assert stat.S_IMODE(os.stat(self.path).st_mode) == VICTIM_MODE, f"{self.path} was chmod-ed"


def plant(site: Env, name: str, target: Path) -> Path:
    link = site.home / name
    if link.exists() or link.is_symlink():
        link.unlink()
    link.symlink_to(target)
    return link


def assert_one_clear_line(text: str, *needles: str) -> None:
    assert "Traceback" not in text, text
    hits = [line for line in text.splitlines() if all(n in line for n in needles)]
    assert hits, f"no line naming {needles} in:\n{text}"


def daemon_refuses(site: Env, name: str) -> None:
    """The daemon will not start while <home>/<name> is a link: exit 1, one line naming it."""
    daemon = site.start_daemon("--once", wait_started=False)
    code = daemon.wait(60)
    assert code == 1, daemon.stderr()
    assert_one_clear_line(daemon.stderr(), str(site.home / name), "symbolic link")


# --- the daemon's own files ------------------------------------------------------------------

@pytest.mark.timeout(90)
def test_link_at_daemon_pid_tmp_is_replaced_never_written_through(site):
    victim = Victim(site.tmp / "victim")
    link = plant(site, "daemon.pid.tmp", victim.path)
    daemon = site.start_daemon()
    assert not link.is_symlink()
    pid_file = site.home / "daemon.pid"
    assert not pid_file.is_symlink() and pid_file.read_text() == f"{daemon.pid}\n"
    assert stat.S_IMODE(pid_file.stat().st_mode) == 0o600
    assert site.json("status")["pid"] == daemon.pid
    assert daemon.terminate() == 0
    victim.assert_untouched()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", ["daemon.lock", "daemon.pid", "scheduler.log", "config.toml", "runs",
                                  "jobs.json", "jobs.json.lock"])
def test_daemon_refuses_to_start_on_a_link_in_the_home(site, name):
    victim = Victim(site.tmp / "victim", b'{"version": 1, "jobs": {}}\n' if name == "jobs.json" else SECRET)
    if name == "runs":
        outside = site.tmp / "outside"
        outside.mkdir()
        plant(site, name, outside)
    else:
        plant(site, name, victim.path)
    daemon_refuses(site, name)
    victim.assert_untouched()
    if name == "runs":
        assert list(outside.iterdir()) == []


@pytest.mark.timeout(90)
def test_link_at_scheduler_log_planted_while_running_is_refused_at_reopen(site):
    victim = Victim(site.tmp / "victim")
    daemon = site.start_daemon()
    (site.home / "scheduler.log").unlink()
    plant(site, "scheduler.log", victim.path)
    daemon.proc.send_signal(signal.SIGHUP)  # reopen the log
    wait_until("the reload reported on stderr", lambda: "reloaded store and config" in daemon.stderr())
    assert_one_clear_line(daemon.stderr(), str(site.home / "scheduler.log"), "symbolic link")
    assert daemon.alive()
    assert daemon.terminate() == 0
    victim.assert_untouched()


@pytest.mark.timeout(90)
def test_link_at_daemon_pid_while_running_is_refused_by_the_cli(site):
    """A pid read through a link would be signalled by `run`: refused instead."""
    site.cli("add", "job", "@after", "/bin/true")
    victim = Victim(site.tmp / "victim", b"1\n")
    site.start_daemon()
    plant(site, "daemon.pid", victim.path)
    for args in (["status"], ["run", "job"]):
        result = site.cli(*args, check=False)
        assert result.returncode == 1, result
        assert_one_clear_line(result.stderr, str(site.home / "daemon.pid"), "symbolic link")
    victim.assert_untouched()


# --- runs/ -----------------------------------------------------------------------------------

@pytest.mark.timeout(90)
def test_runs_replaced_by_a_link_while_running_writes_nothing_outside(site):
    outside = site.tmp / "outside"
    outside.mkdir()
    site.cli("add", "victim", "--shell", "@after", "echo leaked")
    site.start_daemon()
    if (site.home / "runs").exists():
        (site.home / "runs").rmdir()
    (site.home / "runs").symlink_to(outside, target_is_directory=True)
    site.cli("run", "victim")
    [run] = site.wait_status("victim", "failed")
    assert str(site.home / "runs") in run["reason"] and "symbolic link" in run["reason"], run
    assert list(outside.iterdir()) == []


# --- the job store ---------------------------------------------------------------------------

@pytest.mark.timeout(60)
def test_link_at_the_store_lock_is_one_clear_error_and_the_victim_untouched(site):
    victim = Victim(site.tmp / "victim")
    plant(site, "jobs.json.lock", victim.path)
    result = site.cli("add", "job", "@after", "/bin/true", check=False)
    assert result.returncode == 1, result
    assert_one_clear_line(result.stderr, str(site.home / "jobs.json.lock"), "symbolic link")
    assert not (site.home / "jobs.json").exists()
    victim.assert_untouched()


@pytest.mark.timeout(60)
def test_link_at_the_store_is_never_read_nor_written_through(site):
    planted = {"version": 1, "jobs": {"planted": {
        "id": "planted", "schedule": "@daily", "command": ["/bin/true"]}}}
    victim = Victim(site.tmp / "victim", json.dumps(planted).encode())
    plant(site, "jobs.json", victim.path)
    for args in (["list"], ["add", "job", "@after", "/bin/true"]):
        result = site.cli(*args, check=False)
        assert result.returncode == 1, result
        assert "planted" not in result.stdout
        assert_one_clear_line(result.stderr, str(site.home / "jobs.json"), "symbolic link")
    victim.assert_untouched()


@pytest.mark.timeout(60)
def test_a_link_left_at_a_store_temp_path_is_removed_not_followed(site):
    victim = Victim(site.tmp / "victim")
    link = plant(site, ".jobs.leftover.tmp", victim.path)
    site.cli("add", "job", "@after", "/bin/true")
    assert not link.is_symlink() and not link.exists()
    assert list(json.loads((site.home / "jobs.json").read_text())["jobs"]) == ["job"]
    victim.assert_untouched()


# --- config.toml -----------------------------------------------------------------------------

@pytest.mark.timeout(90)
def test_link_at_config_planted_while_running_is_refused_at_reload(site):
    victim = Victim(site.tmp / "victim", b"max_workers = 3\n")
    daemon = site.start_daemon()
    plant(site, "config.toml", victim.path)
    daemon.proc.send_signal(signal.SIGHUP)
    wait_until("the refused config reported", lambda: "config not reloaded" in site.log_text())
    assert_one_clear_line(site.log_text(), "config not reloaded", str(site.home / "config.toml"), "symbolic link")
    assert daemon.alive()
    victim.assert_untouched()


# --- reading and pruning run logs ------------------------------------------------------------

def _one_run(site: Env, job_id: str = "talker") -> dict:
    site.cli("add", job_id, "--shell", "@after", "echo own output")
    site.cli("run", job_id)
    site.run_once()
    [run] = site.runs(job_id)
    assert run["status"] == "succeeded", run
    return run


@pytest.mark.timeout(90)
def test_logs_refuses_a_run_log_replaced_by_a_link(site):
    run = _one_run(site)
    victim = Victim(site.tmp / "victim")
    log = site.home / "runs" / "talker" / f"{run['run_id']}.log"
    log.unlink()
    log.symlink_to(victim.path)
    result = site.cli("logs", "talker", check=False)
    assert result.returncode == 1, result
    assert "outside secret" not in result.stdout
    assert_one_clear_line(result.stderr, str(log), "symbolic link")
    victim.assert_untouched()


def _set_output_path(site: Env, run_id: int, path: Path) -> None:
    conn = sqlite3.connect(site.home / "state.db", timeout=30)
    try:
        with conn:
            conn.execute("UPDATE runs SET output_path = ? WHERE run_id = ?", (str(path), run_id))
    finally:
        conn.close()


@pytest.mark.timeout(90)
def test_logs_reads_the_run_log_of_the_home_not_a_path_from_state_db(site):
    run = _one_run(site)
    victim = Victim(site.tmp / "victim")
    _set_output_path(site, run["run_id"], victim.path)
    result = site.cli("logs", "talker")
    assert result.stdout == "own output\n"
    victim.assert_untouched()


@pytest.mark.timeout(120)
def test_retention_never_deletes_outside_runs(site):
    (site.home / "config.toml").write_text((site.home / "config.toml").read_text() + "retention_runs = 1\n")
    run = _one_run(site)
    (site.tmp / "outside").mkdir()
    victim = Victim(site.tmp / "outside" / f"{run['run_id']}.log")  # a run log's name, outside the home
    _set_output_path(site, run["run_id"], victim.path)
    own_log = site.home / "runs" / "talker" / f"{run['run_id']}.log"
    site.cli("run", "talker")
    site.run_once()
    assert [r["run_id"] for r in site.runs("talker")] != [run["run_id"]]
    assert len(site.runs("talker")) == 1  # the first run was pruned ...
    assert not own_log.exists()  # ... with its log, found under runs/ by its ids
    victim.assert_untouched()


# --- the home itself -------------------------------------------------------------------------

@pytest.mark.timeout(90)
def test_a_home_reached_through_a_link_is_fine(site):
    alias = site.tmp / "alias"
    alias.symlink_to(site.home, target_is_directory=True)
    aliased = Env(home=alias, tmp=site.tmp)
    run = _one_run(aliased)
    assert aliased.cli("logs", "talker").stdout == "own output\n"
    assert run["status"] == "succeeded"


def test_a_home_owned_by_another_user_is_refused(tmp_path, monkeypatch):
    home = Home(tmp_path / "home").ensure()
    home.check_secure()
    monkeypatch.setattr(os, "geteuid", lambda: os.stat(home.root).st_uid + 1)
    with pytest.raises(InsecureHome, match="owned by uid"):
        home.check_secure()


# --- units: log rotation, odd files, odd names -------------------------------------------------

def test_log_rotation_and_reopen_never_write_through_links(tmp_path, capsys):
    from cron_scheduler.home import Config
    from cron_scheduler.scheduler import log, setup_logging
    home = Home(tmp_path / "home").ensure()
    victims = [Victim(tmp_path / f"victim{i}") for i in range(3)]
    setup_logging(home, Config(log_max_bytes=500, log_backups=2), "INFO")
    (home.root / "scheduler.log.1").symlink_to(victims[0].path)
    (home.root / "scheduler.log.2").symlink_to(victims[1].path)
    try:
        for i in range(40):  # several rotations over the links at the backup names
            log.info("event %03d %s", i, "x" * 40)
        assert "event 039" in home.log.read_text()
        for handler in log.handlers:
            handler.close()  # as after SIGHUP: reopened at the next record
        home.log.unlink()
        home.log.symlink_to(victims[2].path)
        log.info("after the link was planted")
        log.info("and once more")
    finally:
        for handler in log.handlers:
            handler.close()
        log.handlers.clear()
    for victim in victims:
        victim.assert_untouched()
    err = capsys.readouterr().err
    assert "after the link was planted" in err and "and once more" in err  # stderr keeps every line
    refusals = [line for line in err.splitlines() if "symbolic link" in line]
    assert len(refusals) == 1 and str(home.log) in refusals[0], err  # said once, not per record


@pytest.mark.timeout(60)
def test_a_fifo_planted_at_the_store_is_an_error_not_a_hang(site):
    os.mkfifo(site.home / "jobs.json", 0o600)
    result = site.cli("list", check=False, timeout=20)
    assert result.returncode == 1, result
    assert_one_clear_line(result.stderr, str(site.home / "jobs.json"), "not a regular file")


@pytest.mark.parametrize("name", ["..", ".", "a/b", ""])
def test_safefs_refuses_names_that_leave_their_directory(tmp_path, name):
    from cron_scheduler import safefs
    from cron_scheduler.errors import UnsafePath
    (tmp_path / "runs").mkdir()
    with pytest.raises(UnsafePath, match="not a plain name"):
        safefs.open_file(tmp_path, ("runs", name, "1.log"), os.O_WRONLY | os.O_CREAT, create_dirs=True)
