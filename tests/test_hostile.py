"""Hostile input: arbitrary text into the parsers and the CLI (hypothesis), shell
metacharacters in a job's arguments, a job forking hundreds of children, secrets in a job's
environment, and instants at the edge of what datetime can hold.

Every parser raises only its CronSchedulerError subclass; the CLI exits 0, 1 or 2 with a
one-line error, never a traceback; nothing hangs (each example runs under a time limit).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import textwrap
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cron_scheduler import schedule
from cron_scheduler.cli import main as cli_main
from cron_scheduler.errors import InvalidDuration, InvalidJobId, InvalidOption, InvalidSchedule
from cron_scheduler.home import Home
from cron_scheduler.models import Job, parse_duration, parse_size, to_iso, utcnow, validate_job_id
from cron_scheduler.runner import find_marked
from cron_scheduler.store import Store

from harness import Env, temp_env

UTC = timezone.utc
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
LIMIT = 5.0  # seconds any one example may take
HYPO = settings(max_examples=200, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


class Hang(Exception):
    pass


@contextlib.contextmanager
def time_limit(seconds: float = LIMIT):
    """Raise Hang if the block runs longer than `seconds` (SIGALRM); pytest-timeout's own alarm,
    if any, is put back afterwards."""
    def on_alarm(signum, frame):
        raise Hang(f"took more than {seconds:g}s")

    old_handler = signal.signal(signal.SIGALRM, on_alarm)
    old_remaining, _ = signal.getitimer(signal.ITIMER_REAL)
    start = time.monotonic()
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old_handler)
        if old_remaining:
            signal.setitimer(signal.ITIMER_REAL, max(0.01, old_remaining - (time.monotonic() - start)))


# --- strategies --------------------------------------------------------------------------

CRON_TOKENS = ["*", "?", "*/0", "*/1", "*/15", "0", "59", "60", "-1", "0-59", "5-5", "10-5", "1-31/2",
               "0-59/1000", "L", "5L", "LW", "15W", "1#5", "6#6", "H", "H/5", "H(0-5)", "H(5-0)/2",
               "JAN", "jan-dec", "MON-FRI", "SUN,SAT", "7", "8", "2099", "1970-2099", "99999999999999999999",
               "1,2,3,4,5,6,7,8,9,10,11,12,13,14,15", "*/*", ",", "-", "/", "L-3", "0x1f", "١", "½"]
cron_field = st.one_of(st.sampled_from(CRON_TOKENS),
                       st.from_regex(r"[0-9*,/\-LWH#?A-Za-z()]{1,10}", fullmatch=True))
cron_expr = st.lists(cron_field, min_size=1, max_size=8).map(" ".join)
SANE_DURATIONS = ["1s", "90s", "15m", "2h", "1h30m", "1d", "30", "0", "0s", "-5m", "1x", "", "5 m", "1.5s"]
keyword_expr = st.tuples(
    st.sampled_from(["@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly",
                     "@reboot", "@once", "@after", "@every", "@EVERY", "@", "@bogus"]),
    st.one_of(st.just(""), st.sampled_from(SANE_DURATIONS), st.text(max_size=10)),
).map(lambda kv: f"{kv[0]} {kv[1]}".strip())
any_schedule = st.one_of(st.text(max_size=300), cron_expr, keyword_expr)
any_id = st.one_of(st.text(max_size=80), st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", fullmatch=True),
                   st.sampled_from(["..", "a..b", "-x", ".hidden", "a/b", "../etc", "a" * 65, "x\n", "é"]))


# --- parsers -------------------------------------------------------------------------------

@HYPO
@given(expr=any_schedule)
def test_schedule_parse_raises_only_invalid_schedule_and_never_hangs(expr):
    for strict in (False, True):
        try:
            with time_limit():
                sched = schedule.parse(expr, "job-1", strict=strict)
        except InvalidSchedule as exc:
            assert str(exc) and "\n" not in str(exc)
            return
    # a schedule that parses yields fire times (or none), quickly, in order, in UTC
    with time_limit():
        fires = schedule.next_fires(sched, NOW, 5, schedule.get_zone("Europe/Berlin"), anchor=NOW)
    assert fires == sorted(set(fires)) and all(f > NOW and f.utcoffset() == timedelta(0) for f in fires)


@HYPO
@given(text=st.one_of(st.text(max_size=60), st.from_regex(r"\d{1,30}(\.\d{1,5})?[dhms]?", fullmatch=True),
                      st.from_regex(r"(\d{1,5}d)?(\d{1,5}h)?(\d{1,5}m)?(\d{1,5}(\.\d+)?s)?", fullmatch=True)))
def test_parse_duration_raises_only_invalid_duration(text):
    try:
        with time_limit():
            seconds = parse_duration(text)
    except InvalidDuration as exc:
        assert "\n" not in str(exc)
        return
    assert isinstance(seconds, float) and seconds > 0 and seconds != float("inf")


@pytest.mark.parametrize("text", ["9" * 400 + "d", "1" * 330 + "h", "9" * 5000 + "m"])
def test_parse_duration_huge_numbers(text):
    with pytest.raises(InvalidDuration):
        parse_duration(text)


@HYPO
@given(text=st.one_of(st.text(max_size=40), st.from_regex(r"\d{1,30}\s?(b|k|kb|kib|m|mb|mib|g|gb|gib|t)?",
                                                         fullmatch=True)))
def test_parse_size_raises_only_invalid_option(text):
    try:
        with time_limit():
            size = parse_size(text)
    except InvalidOption as exc:
        assert "\n" not in str(exc)
        return
    assert isinstance(size, int) and size > 0


def test_parse_size_more_than_4300_digits():
    with pytest.raises(InvalidOption):
        parse_size("9" * 5000)


@HYPO
@given(job_id=any_id)
def test_validate_job_id_raises_only_invalid_job_id_and_accepted_ids_stay_in_runs(job_id, tmp_path):
    try:
        validate_job_id(job_id)
    except InvalidJobId as exc:
        assert "\n" not in str(exc)
        return
    home = Home(tmp_path / "home")
    runs = home.runs.resolve()
    for run_id in (1, 2 ** 62):
        path = home.run_log(job_id, run_id).resolve()
        assert path.is_relative_to(runs) and path.parent != runs and path.parent.parent == runs, path


# --- the CLI, in-process -----------------------------------------------------------------

def _cli(args: list[str]) -> tuple[int, str, str]:
    """cron_scheduler.cli.main(args): (exit code, stdout, stderr). Any exception other than
    SystemExit is what a user would see as a traceback."""
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            with time_limit(10):
                cli_main(args)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return code, out.getvalue(), err.getvalue()


cli_schedule = st.one_of(cron_expr, keyword_expr, st.text(max_size=40),
                         st.sampled_from(["* * * * *", "@daily", "0 2 * * *", "H 3 * * *", "@every 90s"]))
cli_zone = st.one_of(st.none(), st.sampled_from(["UTC", "Europe/Berlin", "Mars/Olympus", "../../etc/passwd",
                                                 "/etc/localtime", "", "America/New_York\x00"]),
                     st.text(max_size=20))
cli_from = st.one_of(st.none(), st.sampled_from(["2026-03-08T01:59:59", "2026-13-01", "yesterday",
                                                 "2026-11-01T01:30:00-04:00", "2026-06-01"]),
                     st.text(max_size=20))


@st.composite
def cli_invocations(draw) -> list[str]:
    kind = draw(st.sampled_from(["add", "update", "validate", "next", "show", "remove", "pause",
                                 "history", "explain", "graph"]))
    job_id, expr = draw(any_id), draw(cli_schedule)
    if kind == "add":
        args = ["add", "--no-check", job_id, expr, "/bin/true"]
        if draw(st.booleans()):
            args[1:1] = ["--timeout", draw(st.sampled_from(SANE_DURATIONS + ["none", "x"]))]
        if draw(st.booleans()):
            args[1:1] = ["--depends-on", draw(any_id)]
        zone = draw(cli_zone)
        if zone is not None:
            args[1:1] = ["--tz", zone]
        return args
    if kind == "update":
        return ["update", job_id, "--schedule", expr]
    if kind == "validate":
        return ["validate", expr]
    if kind == "next":
        args = ["next", draw(st.one_of(st.just(expr), st.just(job_id))), "--count", "3"]
        zone, start = draw(cli_zone), draw(cli_from)
        if zone is not None:
            args += ["--tz", zone]
        if start is not None:
            args += ["--from", start]
        return args
    if kind == "explain":
        return ["explain", job_id, "--at", draw(cli_from) or "2026-06-01T00:00:00+00:00"]
    if kind == "graph":
        return ["graph", job_id]
    return [kind, job_id]


@pytest.fixture(scope="module")
def fuzz_home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("fuzz") / "home"
    code, out, err = _cli(["--home", str(home), "add", "--no-check", "base", "@daily", "/bin/true"])
    assert code == 0, err
    return home


@HYPO
@given(args=cli_invocations())
def test_cli_never_prints_a_traceback(args, fuzz_home):
    try:
        code, out, err = _cli(["--home", str(fuzz_home), *args])
    except Hang:
        pytest.fail(f"cron-scheduler {args!r} hung")
    except Exception as exc:  # noqa: BLE001 - exactly what the property forbids
        pytest.fail(f"cron-scheduler {args!r} raised {type(exc).__name__}: {exc} (a traceback)")
    assert code in (0, 1, 2), (args, code, err)
    assert "Traceback" not in out + err
    if code:
        assert err.count("\n") <= 1 or err.lstrip().startswith("Usage:"), (args, err)
    # the store stays loadable whatever was tried
    Store(Home(fuzz_home)).load().decode_all()


# --- instants and intervals at the edges of datetime -------------------------------------

def test_every_sub_microsecond_interval_does_not_hang():
    with time_limit(3):
        try:
            sched = schedule.parse("@every 0.0000001s")
        except InvalidSchedule:
            return
        schedule.next_fire(sched, NOW, UTC, anchor=NOW - timedelta(seconds=1))


def test_every_huge_interval_is_refused_or_has_no_next_fire():
    try:
        sched = schedule.parse("@every 99999999d")
    except InvalidSchedule:
        return
    assert schedule.next_fire(sched, NOW, UTC, anchor=NOW) is None


def _assert_clean(args: list[str], home: Path) -> None:
    try:
        code, out, err = _cli(["--home", str(home), *args])
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"{type(exc).__name__}: {exc} (a traceback)")
    assert code in (0, 1, 2) and "Traceback" not in err


@pytest.mark.parametrize("args", [
    ["next", "* * * * *", "--from", "9999-12-31T23:59:00+00:00"],
    ["next", "0 0 1 1 *", "--from", "9999-06-01"],
    ["next", "@every 1s", "--from", "9999-12-31T23:59:59+00:00"],
    ["add", "--no-check", "far", "--start-at", "9999-12-31T23:59:30+00:00", "* * * * *", "/bin/true"],
    ["add", "--no-check", "far", "--start-at", "9999-12-31T23:59:30-05:00", "* * * * *", "/bin/true"],
    ["next", "* * * * *", "--from", "0001-01-01T00:00:00+05:00"],
], ids=["next-from-9999", "next-yearly-9999", "next-every-9999", "add-start-at-9999",
        "add-start-at-past-9999-in-utc", "next-from-before-year-1-in-utc"])
def test_cli_instants_near_year_9999_are_clean_errors(args, tmp_path):
    _assert_clean(args, tmp_path / "home")


def test_cli_explain_at_an_instant_past_9999_in_utc_is_a_usage_error(tmp_path):
    home = tmp_path / "home"
    _assert_clean(["add", "--no-check", "far", "@daily", "/bin/true"], home)
    code, out, err = _cli(["--home", str(home), "explain", "far", "--at", "9999-12-31T23:59:59-05:00"])
    assert code == 2 and err.count("\n") == 1 and "invalid --at '9999-12-31T23:59:59-05:00'" in err, err


@pytest.mark.parametrize("args", [
    ["add", "--no-check", "--timeout", "9" * 400 + "d", "bigcap", "@daily", "/bin/true"],
    ["add", "--no-check", "--max-output", "9" * 5000, "bigout", "@daily", "/bin/true"],
], ids=["add-timeout-huge", "add-max-output-huge"])
def test_cli_huge_numbers_are_clean_errors(args, tmp_path):
    _assert_clean(args, tmp_path / "home")


# --- end to end: a real daemon with --once -------------------------------------------------

@pytest.fixture
def site(tmp_path: Path) -> Iterator[Env]:
    """harness.temp_env: a temp home, the CLI and the daemon as subprocesses (scripts in tmp)."""
    with temp_env(tmp_path) as env:
        yield env


METACHARS = ["; touch pwned1", "$(touch pwned2)", "`touch pwned3`", "&& touch pwned4", "| touch pwned5",
             "> pwned6", "'; touch pwned7; '", "\"$(touch pwned8)\"", "*", "~", "$HOME", "a\nb"]


def _pwned(site: Env) -> list[str]:
    found = [str(p) for p in site.tmp.rglob("pwned*")]  # the runs' cwd, the home, the runs' logs
    return found + [str(p) for p in Path.cwd().glob("pwned*")]


@pytest.mark.timeout(120)
def test_shell_metacharacters_are_literal_arguments(site):
    printer = site.tmp / "argv.py"
    printer.write_text("import json, sys\nprint(json.dumps(sys.argv[1:]))\n")
    evil = site.tmp / "evil$(touch pwned9);.sh"
    evil.write_text("#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done\n")
    evil.chmod(0o755)
    site.cli("add", "py-args", "--cwd", str(site.tmp), "@after", str(printer), *METACHARS)
    site.cli("add", "sh-args", "--cwd", str(site.tmp), "@after", str(evil), *METACHARS[:6])
    site.cli("add", "echo-args", "--cwd", str(site.tmp), "@after", "/bin/echo", "x")
    # update --command splits like a shell, but nothing runs through one
    site.cli("update", "echo-args", "--command", "/bin/echo '$(touch pwned10)' ; touch pwned11 `touch pwned12`")
    shown = json.loads(site.cli("show", "py-args", "--json").stdout)
    assert shown["command"] == [str(printer), *METACHARS]
    assert json.loads(site.cli("show", "sh-args", "--json").stdout)["command"] == [str(evil), *METACHARS[:6]]
    assert json.loads(site.cli("show", "echo-args", "--json").stdout)["command"] == [
        "/bin/echo", "$(touch pwned10)", ";", "touch", "pwned11", "`touch", "pwned12`"]
    site.cli("run", "py-args", "sh-args", "echo-args")
    site.run_once()
    for job_id in ("py-args", "sh-args", "echo-args"):
        runs = site.runs(job_id)
        assert [r["status"] for r in runs] == ["succeeded"], runs
    out = Path(site.runs("py-args")[0]["output_path"]).read_text()
    assert json.loads(out) == METACHARS
    assert Path(site.runs("sh-args")[0]["output_path"]).read_text().splitlines() == METACHARS[:6]
    assert Path(site.runs("echo-args")[0]["output_path"]).read_text() == \
        "$(touch pwned10) ; touch pwned11 `touch pwned12`\n"
    assert _pwned(site) == []


FORK_BOMB = textwrap.dedent("""
    import os, signal, sys, time
    for i in range(500):
        if os.fork() == 0:
            if i % 5 == 0:
                os.setsid()                    # leaves the run's process group
            if i % 7 == 0:
                signal.signal(signal.SIGTERM, signal.SIG_IGN)   # needs SIGKILL
            if i % 11 == 0 and os.fork() != 0:
                os._exit(0)                    # double fork: the grandchild is orphaned
            time.sleep(120)
            os._exit(0)
    print("forked 500", flush=True)
    time.sleep(120)
""")


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_job_forking_500_children_is_fully_killed_on_timeout(site):
    script = site.tmp / "bomb.py"
    script.write_text(FORK_BOMB)
    site.cli("add", "bomb", "--timeout", "2s", "@after", str(script))
    site.cli("run", "bomb")
    site.run_once()
    runs = site.runs("bomb")
    assert len(runs) == 1, runs
    run = runs[0]
    assert run["status"] == "timeout", run
    assert "forked 500" in Path(run["output_path"]).read_text()
    assert run["marker"]
    survivors = find_marked(run["marker"])
    if survivors:  # do not leave them behind, whatever the verdict
        for pid in survivors:
            os.kill(pid, signal.SIGKILL)
    assert survivors == set(), f"{len(survivors)} processes of the run survived its timeout"
    assert "giving up" not in site.log_text()


@pytest.mark.timeout(120)
def test_env_secret_never_reaches_the_scheduler_log(site):
    script = site.tmp / "uses_secret.py"
    script.write_text("import os\nassert os.environ['SECRET'] == 'hunter2'\nprint('len', len(os.environ['SECRET']))\n")
    site.cli("add", "secretive", "--env", "SECRET=hunter2", "--env", "TOKEN=sw0rdfish", "@after", str(script))
    # a run that cannot start (its command is missing) is logged with its error: no env either
    site.cli("add", "broken", "--no-check", "--env", "SECRET=hunter2", "@after", "/nonexistent/cmd")
    site.cli("run", "secretive", "broken")
    daemon = site.run_once("--log-level", "DEBUG")
    assert site.runs("secretive")[0]["status"] == "succeeded", site.runs("secretive")
    assert site.runs("broken")[0]["status"] == "failed"
    log = site.log_text()
    assert "secretive" in log and "broken" in log
    for secret in ("hunter2", "sw0rdfish"):
        assert secret not in log, "a job's environment leaked into scheduler.log"
        assert secret not in daemon.stderr()
        history = site.cli("history", "--json", "--limit", "100").stdout
        assert secret not in history


@pytest.mark.timeout(60)
def test_daemon_survives_a_job_whose_next_fire_overflows(site):
    site.cli("add", "good", "@after", "/bin/true")
    with Store(Home(site.home)).transaction() as jobs:
        jobs["far"] = Job(id="far", schedule="* * * * *", command=("/bin/true",),
                          start_at="9999-12-31T23:59:30+00:00", created_at=to_iso(utcnow()))
    site.cli("run", "good")
    site.run_once(timeout=30)
    assert [r["status"] for r in site.runs("good")] == ["succeeded"]


@pytest.mark.timeout(60)
def test_symlink_planted_in_runs_cannot_redirect_output_outside_the_home(site):
    """runs/<job> replaced by a link to a directory outside the home: the run fails with a
    clear reason and nothing is written through the link."""
    outside = site.tmp / "outside"
    outside.mkdir()
    site.cli("add", "victim", "--shell", "@after", "echo leaked")
    (site.home / "runs").mkdir(mode=0o700, exist_ok=True)
    (site.home / "runs" / "victim").symlink_to(outside, target_is_directory=True)
    site.cli("run", "victim")
    site.run_once(timeout=30)
    [run] = site.runs("victim")
    # O_NOFOLLOW on the job's directory: ENOTDIR ("Not a directory: '.../runs/victim'")
    assert run["status"] == "failed" and str(site.home / "runs" / "victim") in run["reason"], run
    assert list(outside.iterdir()) == []
