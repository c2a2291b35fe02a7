"""The job CLI: create_cron and cron-scheduler, in process (CliRunner) and as installed scripts."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from cron_scheduler.cli import add_cmd, cli
from cron_scheduler.errors import InvalidSchedule, UnknownJob

BIN = Path(sys.executable).parent


def _script(name: str) -> str:
    path = BIN / name
    return str(path) if path.exists() else shutil.which(name) or name


CREATE_CRON = [_script("create_cron")]
CRON_SCHEDULER = [_script("cron-scheduler")]
PYTHON_M = [sys.executable, "-m", "cron_scheduler"]

# DESIGN.md section 9: the stable keys of show --json / list --json
STABLE_KEYS = {"id", "schedule", "command", "timeout", "depends_on", "retries", "retry_delay", "overlap",
               "catch_up", "priority", "timezone", "start_at", "end_at", "cwd", "env", "enabled", "notify",
               "description", "next_run"}


# --- helpers --------------------------------------------------------------------------------

@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def invoke(runner: CliRunner, args: list[str], command=cli):
    """In-process run that must succeed."""
    result = runner.invoke(command, args, catch_exceptions=False)
    assert result.exit_code == 0, (args, result.output, result.stderr)
    return result


def invoke_json(runner: CliRunner, args: list[str]):
    return json.loads(invoke(runner, args + ["--json"]).stdout)


def run(cmd: list[str], *args: str, home: Path | None = None, cwd: Path | None = None):
    env = dict(os.environ)
    if home is not None:
        env["CRON_SCHEDULER_HOME"] = str(home)
    return subprocess.run(cmd + list(args), capture_output=True, text=True, env=env, cwd=cwd, timeout=60)


def is_utc_iso(text: str) -> bool:
    return datetime.fromisoformat(text).utcoffset() == timedelta(0)


@pytest.fixture
def seeded(home, runner) -> Path:
    """A home with one job, 'seed', so jobs.json exists; returns the jobs.json path."""
    invoke(runner, ["seed", "0 2 * * *", "/bin/true"], add_cmd)
    return home / "jobs.json"


# --- happy paths, in process ------------------------------------------------------------------

def test_add_list_show_pause_resume_remove(runner, home):
    result = invoke(runner, ["backup", "--interval", "30", "0 2 * * *", "/bin/true"], add_cmd)
    assert "backup" in result.stdout and result.stderr.startswith("add: warning: backup: no daemon is running")
    invoke(runner, ["add", "report", "--depends-on", "backup", "@after", "/bin/true"])

    rows = invoke_json(runner, ["list"])
    assert [r["id"] for r in rows] == ["backup", "report"]
    assert all(STABLE_KEYS <= set(r) for r in rows)
    assert "backup" in invoke(runner, ["list"]).stdout

    shown = invoke_json(runner, ["show", "backup"])
    assert shown["timeout"] == 1800 and shown["command"] == ["/bin/true"] and shown["enabled"] is True
    assert is_utc_iso(shown["next_run"])
    assert invoke_json(runner, ["show", "report"])["next_run"] is None  # @after has no timer
    assert "backup" in invoke(runner, ["show", "backup"]).stdout

    assert "paused" in invoke(runner, ["pause", "backup"]).stdout
    paused = invoke_json(runner, ["show", "backup"])
    assert paused["enabled"] is False and paused["next_run"] is None
    assert "resumed" in invoke(runner, ["resume", "backup"]).stdout
    assert invoke_json(runner, ["show", "backup"])["enabled"] is True

    invoke(runner, ["remove", "report"])
    assert [r["id"] for r in invoke_json(runner, ["list"])] == ["backup"]


def test_update_changes_only_what_is_given(runner, home):
    invoke(runner, ["job", "--retries", "2", "--description", "keep me", "0 2 * * *", "/bin/true"], add_cmd)
    before = invoke_json(runner, ["show", "job"])
    invoke(runner, ["update", "job", "--priority", "9"])
    after = invoke_json(runner, ["show", "job"])
    assert after["priority"] == 9
    assert {k: v for k, v in after.items() if k != "priority"} == {k: v for k, v in before.items() if k != "priority"}


def test_add_json_prints_the_job(runner, home):
    data = json.loads(invoke(runner, ["j", "--json", "*/5 * * * *", "/bin/true"], add_cmd).stdout)
    assert STABLE_KEYS <= set(data) and data["id"] == "j"


def test_add_paused_shows_no_next_run(runner, home):
    data = json.loads(invoke(runner, ["j", "--paused", "--json", "*/5 * * * *", "/bin/true"], add_cmd).stdout)
    assert data["enabled"] is False and data["next_run"] is None


def test_next_for_an_expression_and_a_job(runner, home, monkeypatch):
    monkeypatch.setenv("TZ", "UTC")  # the viewer's zone: text shows the job's times in it
    times = invoke_json(runner, ["next", "30 2 * * *", "--tz", "America/New_York",
                                 "--from", "2026-03-07T12:00:00+00:00", "-n", "3"])
    assert times == ["2026-03-08T03:00:00-04:00", "2026-03-09T02:30:00-04:00", "2026-03-10T02:30:00-04:00"]
    invoke(runner, ["nightly", "--tz", "Europe/Berlin", "0 3 * * *", "/bin/true"], add_cmd)
    times = invoke_json(runner, ["next", "nightly", "--count", "2", "--from", "2026-07-01T00:00:00+00:00"])
    assert times == ["2026-07-01T03:00:00+02:00", "2026-07-02T03:00:00+02:00"]
    text = invoke(runner, ["next", "nightly", "-n", "1", "--from", "2026-07-01T00:00:00+00:00"]).stdout
    assert text.strip() == "2026-07-01 01:00:00 UTC (2026-07-01 03:00:00 CEST in the schedule's zone)"


def test_next_reads_a_from_without_offset_in_the_schedule_zone(runner, home):
    # 03:30 in New York is after that day's 03:00 slot (03:30 UTC would be the evening before)
    times = invoke_json(runner, ["next", "0 3 * * *", "--tz", "America/New_York",
                                 "--from", "2026-06-01T03:30", "-n", "1"])
    assert times == ["2026-06-02T03:00:00-04:00"]
    invoke(runner, ["tokyo", "--tz", "Asia/Tokyo", "0 9 * * *", "/bin/true"], add_cmd)
    assert invoke_json(runner, ["next", "tokyo", "--from", "2026-06-01T08:30", "-n", "1"]) == [
        "2026-06-01T09:00:00+09:00"]


def test_validate(runner, home):
    assert "valid" in invoke(runner, ["validate", "*/5 * * * *"]).stdout
    result = runner.invoke(cli, ["validate", "0 0 31 2 *"])
    assert isinstance(result.exception, InvalidSchedule) and result.exception.exit_code == 2


def test_status_json_without_daemon_or_home(runner, home):
    data = invoke_json(runner, ["status"])
    assert data["home"] == str(home) and data["daemon_running"] is False
    assert data["jobs"] == 0 and data["running"] == [] and data["next_due"] is None
    assert "home" in invoke(runner, ["status"]).stdout


def test_status_counts_jobs_and_next_due(runner, home):
    invoke(runner, ["a", "*/5 * * * *", "/bin/true"], add_cmd)
    invoke(runner, ["b", "@after", "/bin/true"], add_cmd)
    data = invoke_json(runner, ["status"])
    assert data["jobs"] == 2 and data["daemon_running"] is False and is_utc_iso(data["next_due"])


def test_unknown_id_in_process_raises_unknown_job(runner, home):
    result = runner.invoke(cli, ["show", "ghost"])
    assert isinstance(result.exception, UnknownJob) and "ghost" in str(result.exception)


# --- every field round-trips: add -> show --json -> update -> show --json ------------------------

def test_every_field_round_trips(runner, home, tmp_path):
    (tmp_path / "wd1").mkdir()
    (tmp_path / "wd2").mkdir()
    invoke(runner, ["up1", "@daily", "/bin/true"], add_cmd)
    invoke(runner, ["up2", "@daily", "/bin/true"], add_cmd)
    fields = [
        # key, add options, shown after add, update options, shown after update
        ("timeout", ["--interval", "30"], 1800, ["--timeout", "1h30m"], 5400),
        ("depends_on", ["--depends-on", "up1"], ["up1"], ["--depends-on", "up1,up2"], ["up1", "up2"]),
        ("retries", ["--retries", "3"], 3, ["--retries", "0"], 0),
        ("retry_delay", ["--retry-delay", "45s"], 45, ["--retry-delay", "2m"], 120),
        ("overlap", ["--overlap", "queue"], "queue", ["--overlap", "replace"], "replace"),
        ("catch_up", ["--catch-up", "all"], "all", ["--catch-up", "none"], "none"),
        ("priority", ["--priority", "5"], 5, ["--priority", "-3"], -3),
        ("timezone", ["--tz", "Europe/Berlin"], "Europe/Berlin", ["--tz", "America/New_York"], "America/New_York"),
        # a time without offset is read in the job's zone (Berlin, +01:00 in January)
        ("start_at", ["--start-at", "2026-01-01T00:00"], "2025-12-31T23:00:00+00:00",
         ["--start-at", "2026-02-01T10:00:00+01:00"], "2026-02-01T09:00:00+00:00"),
        ("end_at", ["--end-at", "2099-01-01T00:00:00+00:00"], "2099-01-01T00:00:00+00:00", ["--end-at", "none"], None),
        ("cwd", ["--cwd", str(tmp_path / "wd1")], str(tmp_path / "wd1"), ["--cwd", str(tmp_path / "wd2")],
         str(tmp_path / "wd2")),
        ("env", ["--env", "A=1", "--env", "B=x=y"], {"A": "1", "B": "x=y"}, ["--env", "C=3", "--unset-env", "A"],
         {"B": "x=y", "C": "3"}),
        ("notify", ["--notify", "failure,slow"], ["failure", "slow"], ["--notify", "timeout"], ["timeout"]),
        ("description", ["--description", "first"], "first", ["--description", "second one"], "second one"),
        ("expected_duration", ["--expect", "5m"], 300, ["--expect", "none"], None),
        ("max_output", ["--max-output", "1MB"], 1024 * 1024, ["--max-output", "512K"], 512 * 1024),
    ]
    add_args = [a for f in fields for a in f[1]]
    invoke(runner, ["full", *add_args, "--paused", "0 3 * * *", "/bin/echo", "--", "-n", "hi"], add_cmd)
    shown = invoke_json(runner, ["show", "full"])
    assert STABLE_KEYS <= set(shown)
    assert {f[0]: shown[f[0]] for f in fields} == {f[0]: f[2] for f in fields}
    assert shown["schedule"] == "0 3 * * *" and shown["command"] == ["/bin/echo", "-n", "hi"]
    assert shown["enabled"] is False and shown["next_run"] is None

    update_args = [a for f in fields for a in f[3]]
    invoke(runner, ["update", "full", *update_args, "--schedule", "@every 90s", "--command", "/bin/echo 'bye now'"])
    invoke(runner, ["resume", "full"])
    shown = invoke_json(runner, ["show", "full"])
    assert {f[0]: shown[f[0]] for f in fields} == {f[0]: f[4] for f in fields}
    assert shown["schedule"] == "@every 90s" and shown["command"] == ["/bin/echo", "bye now"]
    assert shown["enabled"] is True and is_utc_iso(shown["next_run"])
    listed = next(r for r in invoke_json(runner, ["list"]) if r["id"] == "full")
    assert {k: v for k, v in listed.items() if k != "next_run"} == {k: v for k, v in shown.items() if k != "next_run"}


def test_json_types(runner, home):
    invoke(runner, ["j", "0 2 * * *", "/bin/true"], add_cmd)
    data = invoke_json(runner, ["show", "j"])
    assert isinstance(data["command"], list) and isinstance(data["depends_on"], list)
    assert isinstance(data["notify"], list) and isinstance(data["env"], dict)
    assert data["timeout"] is None and isinstance(data["retry_delay"], (int, float))
    assert isinstance(data["enabled"], bool) and isinstance(data["priority"], int)


# --- scripts ----------------------------------------------------------------------------------

def test_relative_script_path_is_stored_absolute(runner, home, tmp_path, monkeypatch):
    (tmp_path / "task.py").write_text("print('hi')\n")
    (tmp_path / "bin").mkdir()
    tool = tmp_path / "bin" / "tool.sh"
    tool.write_text("#!/bin/sh\necho hi\n")
    tool.chmod(0o755)
    monkeypatch.chdir(tmp_path)
    invoke(runner, ["py", "@daily", "task.py", "--", "--flag"], add_cmd)
    invoke(runner, ["sh", "@daily", "./bin/tool.sh"], add_cmd)
    assert invoke_json(runner, ["show", "py"])["command"] == [str(tmp_path / "task.py"), "--flag"]
    command = invoke_json(runner, ["show", "sh"])["command"]
    assert Path(command[0]).is_absolute() and Path(command[0]).resolve() == tool


def test_missing_script_is_exit_1_unless_no_check(home, tmp_path):
    result = run(CREATE_CRON, "job", "@daily", "missing.py", home=home, cwd=tmp_path)
    assert result.returncode == 1 and "missing.py" in result.stderr and "Traceback" not in result.stderr
    assert not (home / "jobs.json").exists()
    result = run(CREATE_CRON, "job", "--no-check", "@daily", "missing.py", home=home, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    shown = json.loads(run(CRON_SCHEDULER, "show", "job", "--json", home=home).stdout)
    assert shown["command"] == [str(tmp_path / "missing.py")]


def test_non_executable_script_is_exit_1(home, tmp_path):
    (tmp_path / "plain.sh").write_text("echo hi\n")
    result = run(CREATE_CRON, "job", "@daily", "./plain.sh", home=home, cwd=tmp_path)
    assert result.returncode == 1 and "executable" in result.stderr


# --- installed console scripts ------------------------------------------------------------------

@pytest.mark.parametrize("group", [CRON_SCHEDULER, PYTHON_M], ids=["cron-scheduler", "python-m"])
def test_console_scripts_happy_path(home, group):
    assert run(CREATE_CRON, "backup", "--interval", "30", "0 2 * * *", "/bin/true", home=home).returncode == 0
    result = run(group, "add", "sync", "--retries", "3", "*/5 * * * *", "/bin/echo", "--", "--verbose", home=home)
    assert result.returncode == 0, result.stderr
    rows = json.loads(run(group, "list", "--json", home=home).stdout)
    assert [r["id"] for r in rows] == ["backup", "sync"] and all(STABLE_KEYS <= set(r) for r in rows)
    shown = json.loads(run(group, "show", "sync", "--json", home=home).stdout)
    assert shown["command"] == ["/bin/echo", "--verbose"] and shown["retries"] == 3
    for args in (["update", "backup", "--interval", "45", "--schedule", "30 2 * * *"], ["pause", "backup"],
                 ["resume", "backup"], ["next", "backup", "-n", "2"], ["validate", "@hourly"], ["status"],
                 ["remove", "sync"]):
        result = run(group, *args, home=home)
        assert result.returncode == 0 and result.stderr == "", (args, result.stderr)
    shown = json.loads(run(group, "show", "backup", "--json", home=home).stdout)
    assert shown["timeout"] == 45 * 60 and shown["schedule"] == "30 2 * * *" and shown["enabled"] is True
    assert [r["id"] for r in json.loads(run(group, "list", "--json", home=home).stdout)] == ["backup"]
    status = json.loads(run(group, "status", "--json", home=home).stdout)
    assert status["home"] == str(home) and status["daemon_running"] is False and status["jobs"] == 1


def test_validate_exit_codes(home):
    assert run(CRON_SCHEDULER, "validate", "0 0 29 2 *").returncode == 0
    result = run(CRON_SCHEDULER, "validate", "0 0 31 2 *")
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1 and "never fires" in result.stderr


def test_status_json_with_no_daemon_in_a_fresh_home(tmp_path):
    fresh = tmp_path / "fresh"
    result = run(CRON_SCHEDULER, "status", "--json", "--home", str(fresh))
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["home"] == str(fresh) and data["daemon_running"] is False and data["pid"] is None


# --- bad input: exit 2, one line, no traceback, store untouched --------------------------------

LONG = "0," * 123 + "000" + " * * * *"  # 257 characters

BAD_ADD = {
    "garbage": ["new", "garbage", "/bin/true"],
    "garbage-5-fields": ["new", "a b c d e", "/bin/true"],
    "minute-61": ["new", "61 * * * *", "/bin/true"],
    "hour-24": ["new", "0 24 * * *", "/bin/true"],
    "dow-8": ["new", "0 0 * * 8", "/bin/true"],
    "step-61": ["new", "*/61 * * * *", "/bin/true"],
    "range-reversed": ["new", "10-5 * * * *", "/bin/true"],
    "feb-31": ["new", "0 0 31 2 *", "/bin/true"],
    "feb-30": ["new", "0 0 30 2 *", "/bin/true"],
    "8-fields": ["new", "1 2 3 4 5 6 7 8", "/bin/true"],
    "257-chars": ["new", LONG, "/bin/true"],
    "unknown-keyword": ["new", "@fortnightly", "/bin/true"],
    "every-10x": ["new", "@every 10x", "/bin/true"],
    "empty-schedule": ["new", "", "/bin/true"],
    "once-without-start": ["new", "@once", "/bin/true"],
    "once-in-the-past": ["new", "--start-at", "2020-01-01T00:00", "@once", "/bin/true"],
    "unknown-zone": ["new", "--tz", "Mars/Olympus_Mons", "@daily", "/bin/true"],
    "zone-with-space": ["new", "--tz", "America/New York", "@daily", "/bin/true"],
    "interval-negative": ["new", "--interval", "-5", "@daily", "/bin/true"],
    "interval-10x": ["new", "--interval", "10x", "@daily", "/bin/true"],
    "interval-zero": ["new", "--interval", "0", "@daily", "/bin/true"],
    "retry-delay-10x": ["new", "--retry-delay", "10x", "@daily", "/bin/true"],
    "expect-negative": ["new", "--expect", "-5", "@daily", "/bin/true"],
    "retries-negative": ["new", "--retries", "-1", "@daily", "/bin/true"],
    "retries-not-int": ["new", "--retries", "many", "@daily", "/bin/true"],
    "overlap-unknown": ["new", "--overlap", "sometimes", "@daily", "/bin/true"],
    "env-no-equals": ["new", "--env", "NOVALUE", "@daily", "/bin/true"],
    "max-output-zero": ["new", "--max-output", "0", "@daily", "/bin/true"],
    "notify-unknown": ["new", "--notify", "always", "@daily", "/bin/true"],
    "start-at-garbage": ["new", "--start-at", "soon", "@daily", "/bin/true"],
    "end-before-start": ["new", "--start-at", "2026-02-01T00:00Z", "--end-at", "2026-01-01T00:00Z", "@daily",
                         "/bin/true"],
    "unknown-option": ["new", "--frobnicate", "@daily", "/bin/true"],
    "missing-script-arg": ["new", "@daily"],
    "id-empty": ["", "@daily", "/bin/true"],
    "id-65-chars": ["x" * 65, "@daily", "/bin/true"],
    "id-leading-dash": ["--", "-job", "@daily", "/bin/true"],
    "id-leading-dash-as-option": ["-job", "@daily", "/bin/true"],
    "id-leading-dot": [".job", "@daily", "/bin/true"],
    "id-slash": ["a/b", "@daily", "/bin/true"],
    "id-dotdot": ["a..b", "@daily", "/bin/true"],
    "id-space": ["a b", "@daily", "/bin/true"],
    "id-control": ["a\x01b", "@daily", "/bin/true"],
    "id-newline": ["a\nb", "@daily", "/bin/true"],
    "id-tab": ["a\tb", "@daily", "/bin/true"],
    "id-unicode": ["caf\u00e9", "@daily", "/bin/true"],
    "depends-on-bad-id": ["new", "--depends-on", "../etc", "@daily", "/bin/true"],
}

BAD_OTHER = {
    "update-garbage-schedule": ["update", "seed", "--schedule", "garbage"],
    "update-feb-31": ["update", "seed", "--schedule", "0 0 31 2 *"],
    "update-bad-zone": ["update", "seed", "--tz", "Nowhere/Land"],
    "update-bad-interval": ["update", "seed", "--interval", "10x"],
    "update-bad-command": ["update", "seed", "--command", "'unterminated"],
    "next-garbage": ["next", "not-a-job-nor-expr"],
    "next-bad-count": ["next", "@daily", "--count", "0"],
    "next-bad-zone": ["next", "@daily", "--tz", "Mars/Base"],
    "next-bad-from": ["next", "@daily", "--from", "yesterday"],
    "validate-garbage": ["validate", "garbage"],
    "unknown-command": ["frobnicate"],
}


def assert_one_line_error(result, code: int) -> str:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].strip(), result.stderr
    return lines[0]


@pytest.mark.parametrize("args", BAD_ADD.values(), ids=BAD_ADD.keys())
def test_bad_add_input_is_exit_2_with_one_line_and_no_write(seeded, home, args):
    before = seeded.read_bytes()
    assert_one_line_error(run(CREATE_CRON, *args, home=home), 2)
    assert seeded.read_bytes() == before
    # the same through the group's add
    assert_one_line_error(run(CRON_SCHEDULER, "add", *args, home=home), 2)
    assert seeded.read_bytes() == before


@pytest.mark.parametrize("args", BAD_OTHER.values(), ids=BAD_OTHER.keys())
def test_bad_input_to_other_commands_is_exit_2(seeded, home, args):
    before = seeded.read_bytes()
    assert_one_line_error(run(CRON_SCHEDULER, *args, home=home), 2)
    assert seeded.read_bytes() == before


def test_step_beyond_the_field_error_names_the_field(home):
    line = assert_one_line_error(run(CREATE_CRON, "new", "0 */100000000000000000000 * * *", "/bin/true",
                                     home=home), 2)
    assert "hour field" in line and "larger than its 24 values" in line
    assert not (home / "jobs.json").exists()


def test_error_lines_start_with_the_program_name(home):
    assert run(CREATE_CRON, "new", "garbage", "/bin/true", home=home).stderr.startswith("create_cron: ")
    assert run(CRON_SCHEDULER, "show", "ghost", home=home).stderr.startswith("cron-scheduler: ")


# --- operational errors: exit 1, store unchanged -------------------------------------------------

@pytest.mark.parametrize("args, fragment", [
    (["add", "new", "--depends-on", "ghost", "@after", "/bin/true"], "ghost"),
    (["add", "new", "--depends-on", "seed,ghost", "@after", "/bin/true"], "ghost"),
    (["add", "seed", "@daily", "/bin/true"], "seed"),
    (["show", "ghost"], "ghost"),
    (["update", "ghost", "--retries", "1"], "ghost"),
    (["remove", "ghost"], "ghost"),
    (["remove", "seed", "ghost"], "ghost"),
    (["pause", "ghost"], "ghost"),
    (["resume", "ghost"], "ghost"),
    (["update", "seed", "--depends-on", "ghost"], "ghost"),
    (["update", "seed", "--depends-on", "seed"], "seed"),
    (["run", "seed", "ghost"], "ghost"),
])
def test_operational_errors_are_exit_1_and_write_nothing(seeded, home, args, fragment):
    before = seeded.read_bytes()
    line = assert_one_line_error(run(CRON_SCHEDULER, *args, home=home), 1)
    assert fragment in line
    assert seeded.read_bytes() == before


def test_dependency_cycle_via_update_is_refused(seeded, home):
    assert run(CREATE_CRON, "b", "--depends-on", "seed", "@after", "/bin/true", home=home).returncode == 0
    assert run(CREATE_CRON, "c", "--depends-on", "b", "@after", "/bin/true", home=home).returncode == 0
    before = seeded.read_bytes()
    line = assert_one_line_error(run(CRON_SCHEDULER, "update", "seed", "--depends-on", "c", home=home), 1)
    assert "cycle" in line
    assert seeded.read_bytes() == before


def test_duplicate_id_needs_replace(seeded, home):
    before = seeded.read_bytes()
    line = assert_one_line_error(run(CREATE_CRON, "seed", "@hourly", "/bin/echo", home=home), 1)
    assert "seed" in line and "--replace" in line
    assert seeded.read_bytes() == before
    result = run(CREATE_CRON, "seed", "--replace", "@hourly", "/bin/echo", home=home)
    assert result.returncode == 0, result.stderr
    shown = json.loads(run(CRON_SCHEDULER, "show", "seed", "--json", home=home).stdout)
    assert shown["schedule"] == "@hourly" and shown["command"] == ["/bin/echo"]


def test_remove_with_a_repeated_id_removes_it_once(seeded, home):
    result = run(CRON_SCHEDULER, "remove", "seed", "seed", home=home)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["seed: removed"]
    assert json.loads(run(CRON_SCHEDULER, "list", "--json", home=home).stdout) == []


def test_removing_an_upstream_needs_force(seeded, home):
    assert run(CREATE_CRON, "down", "--depends-on", "seed", "@after", "/bin/true", home=home).returncode == 0
    before = seeded.read_bytes()
    assert_one_line_error(run(CRON_SCHEDULER, "remove", "seed", home=home), 1)
    assert seeded.read_bytes() == before
    assert run(CRON_SCHEDULER, "remove", "seed", "--force", home=home).returncode == 0
    shown = json.loads(run(CRON_SCHEDULER, "show", "down", "--json", home=home).stdout)
    assert shown["depends_on"] == []


@pytest.mark.parametrize("content", [b"garbage", b'{"version": 99, "jobs": {}}'],
                         ids=["garbage", "wrong-version"])  # one bad record: test_validate.py
@pytest.mark.parametrize("cmd", [
    CREATE_CRON + ["new", "@daily", "/bin/true"],
    CRON_SCHEDULER + ["list"],
    CRON_SCHEDULER + ["list", "--json"],
    CRON_SCHEDULER + ["show", "x"],
    CRON_SCHEDULER + ["update", "x", "--retries", "1"],
    CRON_SCHEDULER + ["remove", "x"],
    CRON_SCHEDULER + ["pause", "x"],
], ids=["create_cron", "list", "list-json", "show", "update", "remove", "pause"])
def test_corrupt_store_is_exit_1_naming_the_file_and_left_alone(home, content, cmd):
    home.mkdir(mode=0o700)
    path = home / "jobs.json"
    path.write_bytes(content)
    line = assert_one_line_error(run(cmd, home=home), 1)
    assert str(path) in line
    assert path.read_bytes() == content


# --- --home everywhere ---------------------------------------------------------------------------

def test_every_subcommand_accepts_home():
    missing = [name for name, command in sorted(cli.commands.items())
               if not any("--home" in p.opts for p in command.params)]
    assert missing == []
    assert any("--home" in p.opts for p in add_cmd.params) and any("--home" in p.opts for p in cli.params)


@pytest.mark.parametrize("where", ["create_cron", "group", "subcommand"])
def test_home_option_beats_the_environment(tmp_path, where):
    decoy, real = tmp_path / "decoy", tmp_path / "real"
    args = {"create_cron": CREATE_CRON + ["--home", str(real), "j", "@daily", "/bin/true"],
            "group": CRON_SCHEDULER + ["--home", str(real), "add", "j", "@daily", "/bin/true"],
            "subcommand": CRON_SCHEDULER + ["add", "j", "--home", str(real), "@daily", "/bin/true"]}[where]
    result = run(args, home=decoy)
    assert result.returncode == 0, result.stderr
    assert (real / "jobs.json").exists() and not decoy.exists()


@pytest.mark.parametrize("args", [
    ["list", "--json"], ["show", "j", "--json"], ["next", "j", "-n", "1"], ["validate", "@daily"],
    ["status", "--json"], ["update", "j", "--retries", "2"], ["pause", "j"], ["resume", "j"], ["remove", "j"],
], ids=lambda a: a[0])
@pytest.mark.parametrize("position", ["group", "subcommand"])
def test_home_reaches_each_job_subcommand(tmp_path, args, position):
    real = tmp_path / "real"
    assert run(CREATE_CRON, "--home", str(real), "j", "@daily", "/bin/true").returncode == 0
    before = (real / "jobs.json").read_bytes()
    home_args = ["--home", str(real)]
    argv = home_args + args if position == "group" else args[:1] + home_args + args[1:]
    result = run(CRON_SCHEDULER, *argv, home=tmp_path / "decoy")
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "decoy").exists()
    if args[0] == "status":
        assert json.loads(result.stdout)["home"] == str(real) and json.loads(result.stdout)["jobs"] == 1
    if args[0] in ("update", "pause", "remove"):
        assert (real / "jobs.json").read_bytes() != before


# --- one zone per job, whatever the reading process's TZ (DESIGN.md sections 3 and 4) ---------

READER_ZONES = [None, "Asia/Tokyo", "America/New_York", "Pacific/Chatham"]  # None: TZ unset


def run_in_tz(tz: str | None, cmd: list[str], *args: str, home: Path):
    """A CLI process whose TZ environment is `tz` (unset when None)."""
    env = dict(os.environ, CRON_SCHEDULER_HOME=str(home))
    env.pop("TZ", None)
    if tz is not None:
        env["TZ"] = tz
    result = subprocess.run(cmd + list(args), capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, (tz, args, result.stderr)
    return result


def _instants(texts) -> set[datetime]:
    return {datetime.fromisoformat(t) for t in texts}


def test_a_job_without_tz_has_the_same_instants_in_every_command_whatever_tz(home):
    """create_cron, list, show and next agree on a job's fire times, and so do processes with
    different TZ environments: without --tz a job is read in the machine's zone (/etc/localtime),
    never in the TZ of whichever process computes it."""
    from cron_scheduler import schedule
    from cron_scheduler.models import utcnow
    created = json.loads(run_in_tz("Asia/Tokyo", CREATE_CRON, "daily9", "--json", "0 9 * * *", "/bin/true",
                                   home=home).stdout)["next_run"]
    seen = {("create_cron", "Asia/Tokyo"): created}
    for tz in READER_ZONES:
        seen[("list", tz)] = json.loads(run_in_tz(tz, CRON_SCHEDULER, "list", "--json", home=home).stdout)[0]["next_run"]
        seen[("show", tz)] = json.loads(run_in_tz(tz, CRON_SCHEDULER, "show", "daily9", "--json",
                                                  home=home).stdout)["next_run"]
        seen[("next", tz)] = json.loads(run_in_tz(tz, CRON_SCHEDULER, "next", "daily9", "-n", "1", "--json",
                                                  home=home).stdout)[0]
    assert len(_instants(seen.values())) == 1, seen
    expected = schedule.next_fire(schedule.parse("0 9 * * *"), utcnow(), schedule.local_zone())
    assert datetime.fromisoformat(created) == expected


def test_start_at_without_offset_is_read_in_the_same_zone_whatever_tz(home):
    stored = set()
    for i, tz in enumerate(READER_ZONES):
        out = run_in_tz(tz, CREATE_CRON, f"j{i}", "--json", "--start-at", "2031-01-01T12:00", "--end-at",
                        "2031-06-01T12:00", "0 9 * * *", "/bin/true", home=home).stdout
        stored.add((json.loads(out)["start_at"], json.loads(out)["end_at"]))
    assert len(stored) == 1, stored


def test_start_at_without_offset_is_read_in_the_config_timezone(home):
    """config.toml `timezone` is the zone of jobs without --tz: their --start-at/--end-at too,
    for create_cron and update alike; a job's own --tz still wins."""
    home.mkdir(mode=0o700)
    (home / "config.toml").write_text('timezone = "Asia/Kolkata"\n')
    plain = json.loads(run_in_tz("America/New_York", CREATE_CRON, "plain", "--json", "--start-at",
                                 "2031-01-01T12:00", "0 9 * * *", "/bin/true", home=home).stdout)
    assert datetime.fromisoformat(plain["start_at"]) == datetime.fromisoformat("2031-01-01T06:30:00+00:00")
    own = json.loads(run_in_tz(None, CREATE_CRON, "own", "--json", "--tz", "Europe/Berlin", "--start-at",
                               "2031-01-01T12:00", "0 9 * * *", "/bin/true", home=home).stdout)
    assert datetime.fromisoformat(own["start_at"]) == datetime.fromisoformat("2031-01-01T11:00:00+00:00")
    updated = json.loads(run_in_tz("Asia/Tokyo", CRON_SCHEDULER, "update", "plain", "--json", "--end-at",
                                   "2031-02-01T00:00", home=home).stdout)
    assert datetime.fromisoformat(updated["end_at"]) == datetime.fromisoformat("2031-01-31T18:30:00+00:00")
    # and the schedule itself: 09:00 in Kolkata is 03:30 UTC
    times = json.loads(run_in_tz("Asia/Tokyo", CRON_SCHEDULER, "next", "plain", "-n", "1", "--json",
                                 home=home).stdout)
    assert datetime.fromisoformat(times[0]) == datetime.fromisoformat("2031-01-02T03:30:00+00:00")


def test_next_job_with_tz_shows_its_real_fire_times_in_that_zone(home):
    """`next JOB --tz Z` displays the job's own fire times in Z; it does not re-read the
    schedule in Z. `next EXPR --tz Z` reads the expression in Z."""
    run_in_tz(None, CREATE_CRON, "berlin", "--tz", "Europe/Berlin", "0 9 * * *", "/bin/true", home=home)
    shown = json.loads(run_in_tz("Asia/Tokyo", CRON_SCHEDULER, "next", "berlin", "--tz", "America/New_York",
                                 "--from", "2026-06-01T00:00:00+00:00", "-n", "2", "--json", home=home).stdout)
    assert shown == ["2026-06-01T03:00:00-04:00", "2026-06-02T03:00:00-04:00"]  # 09:00 in Berlin
    plain = json.loads(run_in_tz(None, CRON_SCHEDULER, "next", "berlin", "--from", "2026-06-01T00:00:00+00:00",
                                 "-n", "1", "--json", home=home).stdout)
    assert plain == ["2026-06-01T09:00:00+02:00"]
    expr = json.loads(run_in_tz(None, CRON_SCHEDULER, "next", "0 9 * * *", "--tz", "America/New_York",
                                "--from", "2026-06-01T00:00:00+00:00", "-n", "1", "--json", home=home).stdout)
    assert expr == ["2026-06-01T09:00:00-04:00"]


def test_the_daemon_and_the_cli_agree_on_a_job_without_tz(tmp_path):
    """The daemon started with one TZ stores the same next slot as `next` run with another."""
    from harness import temp_env
    with temp_env(tmp_path) as env:
        env.create_cron("daily9", "0 9 * * *", "/bin/true")
        daemon_env = dict(os.environ, TZ="Asia/Tokyo")
        for key in ("CRON_SCHEDULER_HOME", "XDG_STATE_HOME"):
            daemon_env.pop(key, None)
        proc = subprocess.run([sys.executable, "-m", "cron_scheduler.scheduler", "--home", str(env.home), "--once"],
                              capture_output=True, text=True, env=daemon_env, timeout=90, stdin=subprocess.DEVNULL)
        assert proc.returncode == 0, proc.stderr
        [state] = env.query("SELECT next_slot FROM job_state WHERE job_id = 'daily9'")
        cli_next = json.loads(run_in_tz("America/New_York", CRON_SCHEDULER, "next", "daily9", "-n", "1", "--json",
                                        home=env.home).stdout)[0]
        assert datetime.fromisoformat(state["next_slot"]) == datetime.fromisoformat(cli_next)


def test_validate_and_next_apply_the_or_rule_to_nth_weekday(runner, home):
    """`0 0 15 * 1#1` is the 15th OR the first Monday, not "it never fires"."""
    result = runner.invoke(cli, ["validate", "0 0 15 * 1#1"])
    assert result.exit_code == 0, result.output
    times = invoke_json(runner, ["next", "0 0 15 * 1#1", "--tz", "UTC", "--from", "2026-01-01T00:00:00+00:00",
                                 "-n", "3"])
    assert times == ["2026-01-05T00:00:00+00:00", "2026-01-15T00:00:00+00:00", "2026-02-02T00:00:00+00:00"]
