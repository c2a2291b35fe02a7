"""Text output for people (golden): one time style in the viewer's zone with relative times,
names next to run ids, shell-quoted argv, human sizes and spans, aligned tables, --no-headers,
colour on a terminal only; JSON unchanged. Fixed clock (freezegun), fixed zone ($TZ)."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest
from click.testing import CliRunner
from freezegun import freeze_time

from cron_scheduler.cli import cli
from cron_scheduler.history import History
from cron_scheduler.home import Home
from cron_scheduler.models import Job, RunStatus
from cron_scheduler.store import Store

UTC = timezone.utc
NOW = datetime(2026, 1, 5, 12, 0, 0, tzinfo=UTC)          # 13:00 in Berlin (CET)
CREATED = "2026-01-01T08:30:00.123456+00:00"


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("TZ", "Europe/Berlin")
    monkeypatch.delenv("COLUMNS", raising=False)
    monkeypatch.delenv("NO_COLOR", raising=False)
    h = Home(tmp_path / "home")
    with Store(h).transaction() as jobs:
        jobs["backup"] = Job(id="backup", schedule="0 2 * * *", command=("/usr/bin/backup", "hello world"),
                             timezone="UTC", timeout=5400.0, max_output=10 * 1024 * 1024, created_at=CREATED)
        jobs["report"] = Job(id="report", schedule="@after", command=("/bin/echo", "done"),
                             depends_on=("backup",), created_at=CREATED)
        jobs["tick"] = Job(id="tick", schedule="@every 90s", command=("/bin/true",), timezone="UTC",
                           created_at=CREATED, enabled=False)
    with History.opened(h) as history:
        def finished(job_id, slot, status, took, **values):
            run_id = history.add_run(RunStatus.QUEUED, slot.isoformat(), job_id=job_id,
                                     scheduled_for=slot.isoformat(), trigger="schedule", priority=0)
            history.transition(run_id, RunStatus.RUNNING, slot.isoformat(), started_at=slot.isoformat(), pid=42)
            if status is not RunStatus.RUNNING:
                history.transition(run_id, status, (slot + took).isoformat(),
                                   finished_at=(slot + took).isoformat(), **values)
            return run_id
        finished("backup", NOW - timedelta(days=1, hours=10), RunStatus.SUCCEEDED, timedelta(seconds=0.42), exit_code=0)
        finished("report", NOW - timedelta(days=1, hours=10), RunStatus.FAILED, timedelta(minutes=1, seconds=5),
                 exit_code=3, reason="exit 3")
        finished("backup", NOW - timedelta(minutes=2), RunStatus.RUNNING, None)
    return h


def run_cli(home, *args):
    with freeze_time(NOW):
        result = CliRunner().invoke(cli, ["--home", str(home.root), *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_list_golden(home):
    assert run_cli(home, "list") == (
        "ID      SCHEDULE    NEXT RUN                          CAP    STATE    DEPENDS  COMMAND\n"
        "backup  0 2 * * *   2026-01-06 03:00:00 CET (in 14h)  1h30m  enabled  -        /usr/bin/backup 'hello world'\n"
        "report  @after      -                                 -      enabled  backup   /bin/echo done\n"
        "tick    @every 90s  -                                 -      paused   -        /bin/true\n")
    assert run_cli(home, "list", "--no-headers").splitlines()[0].startswith("backup  ")


def _crontab_job(home) -> None:
    """A job as import-crontab makes one of `cmd % stdin`: a command of several lines."""
    with Store(home).transaction() as jobs:
        jobs["etl"] = Job(id="etl", schedule="*/15 * * * *", timeout=600.0, created_at=CREATED,
                          command=("/bin/sh", "-c", "printf 'a\\nb\\n' | (\ncat\n)"))


def test_list_keeps_one_line_per_job_for_a_command_of_several_lines(home):
    _crontab_job(home)
    lines = run_cli(home, "list").splitlines()
    assert len(lines) == 5
    assert lines[2] == ("etl     */15 * * * *  2026-01-05 13:15:00 CET (in 15m)  10m    enabled  -        "
                        "/bin/sh -c 'printf '\"'\"'a\\nb\\n'\"'\"' | (\\ncat\\n)'")
    assert "command           /bin/sh -c 'printf" in run_cli(home, "show", "etl") and "\\ncat\\n" in run_cli(home, "show", "etl")


def test_list_fits_80_columns_with_short_times_and_the_programs_name(home, monkeypatch):
    """Too wide for the terminal: times drop the year, seconds and relative part, and a cut
    command keeps its program's name (not only its directory)."""
    _crontab_job(home)
    monkeypatch.setenv("COLUMNS", "80")
    assert run_cli(home, "list") == (
        "ID      SCHEDULE      NEXT RUN         CAP    STATE    DEPENDS  COMMAND\n"
        "backup  0 2 * * *     01-06 03:00 CET  1h30m  enabled  -        …/backup 'hello…\n"
        "etl     */15 * * * *  01-05 13:15 CET  10m    enabled  -        …/sh -c 'printf…\n"
        "report  @after        -                -      enabled  backup   /bin/echo done\n"
        "tick    @every 90s    -                -      paused   -        /bin/true\n")
    monkeypatch.setenv("COLUMNS", "200")  # room enough: the full form
    assert "2026-01-06 03:00:00 CET (in 14h)  1h30m" in run_cli(home, "list")


def test_show_golden(home):
    out = run_cli(home, "show", "backup")
    assert "command           /usr/bin/backup 'hello world'\n" in out
    assert "timeout           1h30m\n" in out
    assert "max_output        10 MiB\n" in out
    assert "created_at        2026-01-01 09:30:00 CET\n" in out
    assert "next_run          2026-01-06 03:00:00 CET (in 14h)\n" in out
    # words, not Python values (True, {}, [])
    assert "enabled           yes\n" in out and "shell             no\n" in out and "resources         -\n" in out
    values = [line[18:] for line in out.splitlines()]
    assert not {"True", "False", "None", "{}", "[]"} & set(values), out


def test_status_golden_names_running_runs(home):
    assert run_cli(home, "status") == (
        f"home      {home.root}\n"
        f"log       {home.root}/scheduler.log\n"
        "daemon    not running\n"
        "jobs      3\n"
        "running   3 (backup)\n"
        "next due  2026-01-06 03:00:00 CET (in 14h)\n")


def test_history_golden(home):
    assert run_cli(home, "history") == (
        "RUN  JOB     STATUS     TRIGGER   SCHEDULED                            TOOK   RESULT  REASON\n"
        "3    backup  running    schedule  2026-01-05 12:58:00 CET (2m ago)     -      -\n"
        "2    report  failed     schedule  2026-01-04 03:00:00 CET (1d10h ago)  1m05s  exit 3  exit 3\n"
        "1    backup  succeeded  schedule  2026-01-04 03:00:00 CET (1d10h ago)  0.42s  exit 0\n")
    assert run_cli(home, "history", "--no-headers").splitlines()[0].startswith("3  backup  running")


def test_next_golden_in_the_viewers_zone_as_list_with_the_jobs_zone_and_with_tz(home):
    """`next JOB` shows the instants `list` shows, in the same (viewer's) zone; the job's own
    zone's wall time follows where it differs; --tz shows them in the zone it names."""
    listed = run_cli(home, "list").splitlines()[1]
    assert "2026-01-06 03:00:00 CET (in 14h)" in listed
    assert run_cli(home, "next", "backup", "-n", "2") == (
        "2026-01-06 03:00:00 CET (2026-01-06 02:00:00 UTC in the schedule's zone)  in 14h\n"
        "2026-01-07 03:00:00 CET (2026-01-07 02:00:00 UTC in the schedule's zone)  in 1d14h\n")
    assert run_cli(home, "next", "backup", "-n", "1", "--tz", "Asia/Tokyo") == "2026-01-06 11:00:00 JST  in 14h\n"
    assert run_cli(home, "next", "0 9 * * *", "--tz", "Asia/Kolkata", "-n", "1") == "2026-01-06 09:00:00 IST  in 15h30m\n"


def test_json_keeps_iso_utc(home):
    rows = json.loads(run_cli(home, "list", "--json"))
    assert rows[0]["next_run"] == "2026-01-06T02:00:00+00:00" and rows[0]["command"] == ["/usr/bin/backup", "hello world"]
    assert rows[0]["max_output"] == 10 * 1024 * 1024
    assert json.loads(run_cli(home, "status", "--json"))["running"] == [3]
    assert json.loads(run_cli(home, "next", "backup", "-n", "1", "--json")) == ["2026-01-06T02:00:00+00:00"]
    assert json.loads(run_cli(home, "history", "--json"))[0]["scheduled_for"] == "2026-01-05T11:58:00+00:00"


def on_a_terminal(home, *args, env=None):
    """Run the real CLI with stdout on a pseudo-terminal; what it printed."""
    master, slave = pty.openpty()
    full_env = dict(os.environ, TZ="Europe/Berlin", COLUMNS="200", **(env or {}))
    full_env.pop("NO_COLOR", None) if "NO_COLOR" not in (env or {}) else None
    proc = subprocess.Popen([sys.executable, "-m", "cron_scheduler", "--home", str(home.root), *args],
                            stdout=slave, stderr=subprocess.PIPE, env=full_env)
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    assert proc.wait(timeout=60) == 0, proc.stderr.read()
    return b"".join(chunks).decode()


def test_statuses_are_coloured_on_a_terminal_only_and_not_with_no_color(home):
    shown = on_a_terminal(home, "history")
    assert "\x1b[32msucceeded\x1b[0m" in shown and "\x1b[31mfailed\x1b[0m" in shown
    assert "\x1b[36mrunning\x1b[0m" in shown
    assert "\x1b[33mpaused\x1b[0m" in on_a_terminal(home, "list")
    # the colour codes do not shift the columns: each TRIGGER cell starts at the same place
    rows = [line for line in shown.replace("\x1b[32m", "").replace("\x1b[31m", "").replace("\x1b[36m", "")
            .replace("\x1b[0m", "").splitlines() if line.strip()]
    assert len({line.index("schedule") for line in rows[1:]}) == 1
    assert "\x1b[" not in on_a_terminal(home, "history", env={"NO_COLOR": "1"})
    assert "\x1b[" not in run_cli(home, "history")  # not a terminal


def test_times_for_people_show_fractions_to_the_millisecond_only_when_there_are_some():
    from datetime import datetime, timezone
    from cron_scheduler.humanize import stamp
    at = datetime(2026, 3, 1, 12, 0, 5, tzinfo=timezone.utc)
    assert stamp(at, timezone.utc) == "2026-03-01 12:00:05 UTC"
    assert stamp(at.replace(microsecond=573913), timezone.utc) == "2026-03-01 12:00:05.573 UTC"  # a manual run
    assert stamp(at.replace(microsecond=500000), timezone.utc) == "2026-03-01 12:00:05.5 UTC"   # @every 1.5s
    assert stamp(at.replace(microsecond=999), timezone.utc) == "2026-03-01 12:00:05 UTC"
