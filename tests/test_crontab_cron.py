"""import-crontab reads lines as cron does (crontab(5), Debian's cron): environment lines by
cron's rules and passed on, `%` and backslashes, lines cron accepts but never runs, readable ids
that two crontabs never share, and parsing in one pass however long a line is."""

from __future__ import annotations

import json
import time

import pytest

from cron_scheduler import crontab
from cron_scheduler.views import shown_command
from harness import temp_env


def convert(text: str, source: str | None = "/home/ops/tab", **kw):
    return crontab.convert(text, "tab", source, **kw)


def jobs(result) -> dict:
    return {job_id: entry.job for job_id, entry in result.pipeline.entries.items()}


# --- environment lines ----------------------------------------------------------------------

def test_cron_names_and_values_are_environment_lines_and_reach_the_job():
    result = convert('my-var=1\nA.B = 2\n"spaced name" = x\nQ=\'  kept  \'\nU=  trailing   \n'
                     "SHELL=/bin/bash\nMAILTO=ops\nCRON_TZ=Europe/Berlin\n@daily /bin/true\n")
    assert result.problems == []
    job = jobs(result)["true"]
    assert job.env == {"PATH": "/usr/bin:/bin", "SHELL": "/bin/bash", "my-var": "1", "A.B": "2",
                       "spaced name": "x", "Q": "  kept  ", "U": "trailing", "MAILTO": "ops",
                       "CRON_TZ": "Europe/Berlin"}
    assert job.command == ("/bin/bash", "-c", "/bin/true") and job.timezone == "Europe/Berlin"


def test_shell_defaults_to_bin_sh_in_the_environment_as_cron_sets_it():
    job = jobs(convert("@daily /bin/true\n"))["true"]
    assert job.env == {"PATH": "/usr/bin:/bin", "SHELL": "/bin/sh"} and job.shell is True


@pytest.mark.parametrize("line", ['X="a" b', "X='unclosed", "=x"])
def test_what_cron_does_not_read_as_an_environment_line_is_a_bad_job_line(line):
    result = convert(f"{line}\n@daily /bin/true\n")
    assert [p.split(": cannot convert: ")[0] for p in result.problems] == ["tab:1"]
    assert list(jobs(result)) == ["true"]


# --- '%' and backslashes ----------------------------------------------------------------------

@pytest.mark.parametrize("text, command, stdin", [
    ("cat%first%second", "cat", "first\nsecond\n"),      # cron ends stdin with a newline
    ("cat%first%second%", "cat", "first\nsecond\n"),     # ...not a second one
    ("cat%", "cat", ""),
    ("date +\\%Y%in", "date +%Y", "in\n"),
    ("echo a\\\\b", "echo a\\b", None),                  # \\ is \ in the command
    ("echo a\\\\%in", "echo a\\", "in\n"),               # and the % after it is not escaped
    ("echo \\x \\", "echo \\x \\", None),                # other backslashes stay
    ("cat%a\\%b%c\\d", "cat", "a%b\nc\\d\n"),            # in stdin only \% is an escape
])
def test_percent_and_backslashes_as_cron_reads_them(text, command, stdin):
    assert crontab._percent(text) == (command, stdin)


# --- lines cron accepts and never runs ---------------------------------------------------------

def test_lines_cron_never_runs_are_skipped_with_a_warning_and_the_others_imported():
    result = convert("0 19-7 * * 1-5 /bin/night\n0 0 31 2 * /bin/never\n0 8 * * FRI-MON /bin/weekend\n"
                     "0 19-23,0-7 * * 1-5 /bin/ok\n")
    assert result.problems == [] and list(jobs(result)) == ["ok"]
    assert result.skipped == [
        "tab:1: skipped, cron accepts it but never runs it: reversed range '19-7' in the hour field selects no value",
        "tab:2: skipped, cron accepts it but never runs it: invalid schedule '0 0 31 2 *': it never fires "
        "(impossible date, or its years are past)",
        "tab:3: skipped, cron accepts it but never runs it: reversed range 'FRI-MON' in the day-of-week field "
        "selects no value"]


def test_a_reversed_range_in_a_list_is_ignored_as_cron_ignores_it():
    result = convert("0 19-7,8 * * * /bin/eight\n")
    assert jobs(result)["eight"].schedule == "0 8 * * *"
    assert result.skipped == ["tab:1: ignored reversed range '19-7' in the hour field: cron selects nothing for it"]


def test_a_step_beyond_the_field_is_a_line_that_cannot_be_converted():
    result = convert("*/61 * * * * /bin/x\n")
    assert result.problems == ["tab:1: cannot convert: invalid schedule '*/61 * * * *': step 61 in the "
                               "minute field is larger than its 60 values"]


# --- ids --------------------------------------------------------------------------------------

def test_a_cron_d_file_names_its_jobs():
    text = "0 */12 * * * root test -x /usr/bin/certbot && certbot -q renew\n@reboot root certbot -q renew\n"
    result = crontab.convert(text, "certbot", "/etc/cron.d/certbot", system=True)
    assert list(jobs(result)) == ["certbot", "certbot-2"]


@pytest.mark.parametrize("command, base", [
    ("test -x /usr/sbin/anacron || ( cd / && run-parts --report /etc/cron.daily )", "run-parts"),
    ("[ -x /usr/bin/certbot ] && /usr/bin/certbot -q renew", "certbot"),
    ("if [ -f /srv/flag ]; then /srv/bin/deploy.sh; fi", "deploy"),
    ("LANG=C nice_wrapper=1 /opt/tools/report.py --all > /dev/null 2>&1", "report"),
    ("> /tmp/log /usr/bin/backup", "backup"),
    ("while read l; do echo \"got $l\"; done > f", "echo"),
    ("! /bin/false", "false"),
    ("echo 'unclosed", "echo"),
])
def test_a_user_crontab_line_is_named_after_the_program_it_runs(command, base):
    assert list(jobs(convert(f"@daily {command}\n"))) == [base]


def stored(result) -> dict:
    return {job_id: json.loads(json.dumps(job.to_record())) for job_id, job in jobs(result).items()}


def test_two_crontabs_with_the_same_command_never_share_a_job():
    a = convert("@daily /bin/backup\n", "/home/a/tab")
    b = convert("@hourly /bin/backup\n", "/home/b/tab", stored=stored(a))
    assert list(jobs(b)) == ["backup-2"]
    both = {**stored(a), **stored(b)}
    # re-importing either finds its own job again
    assert list(jobs(convert("@weekly /bin/backup\n", "/home/a/tab", stored=both))) == ["backup"]
    assert list(jobs(convert("@weekly /bin/backup\n", "/home/b/tab", stored=both))) == ["backup-2"]


def test_a_generated_id_passes_over_a_job_not_imported():
    added = {"backup": {"id": "backup", "schedule": "@daily", "command": ["/usr/bin/backup", "--mine"]}}
    assert list(jobs(convert("@daily /bin/backup\n", stored=added))) == ["backup-2"]
    # from stdin (no file), the job of the same command is this crontab's: re-import updates it
    first = convert("@daily /bin/backup\n", None, stored=added)
    assert list(jobs(first)) == ["backup-2"]
    assert list(jobs(convert("@hourly /bin/backup\n", None, stored={**added, **stored(first)}))) == ["backup-2"]


def test_an_id_comment_may_not_take_another_files_job():
    a = convert("# id: nightly\n@daily /bin/a\n", "/home/a/tab")
    b = convert("# id: nightly\n@daily /bin/b\n", "/home/b/tab", stored=stored(a))
    assert b.problems == ["tab:2: cannot convert: job id 'nightly' (from the '# id:' comment on line 1) "
                          "is a job of /home/a/tab"]


def test_shell_commands_are_shown_as_written():
    job = jobs(convert("@daily echo 'it''s' \"$HOME\" | tr a-z A-Z\n"))["echo"]
    assert shown_command(job.to_dict()) == "echo 'it''s' \"$HOME\" | tr a-z A-Z"
    assert shown_command({"command": ["/bin/echo", "a b"], "shell": False}) == "/bin/echo 'a b'"


def test_list_and_show_show_an_imported_shell_command_as_written(tmp_path):
    with temp_env(tmp_path) as env:
        (env.tmp / "tab").write_text("@daily echo 'it''s' done\n")
        env.cli("import-crontab", "tab")
        assert "echo 'it''s' done" in env.cli("list", "--no-headers").stdout
        assert "command           echo 'it''s' done" in env.cli("show", "echo").stdout.splitlines()


# --- one pass over a line -----------------------------------------------------------------------

def best_time(text: str) -> float:
    times = []
    for _ in range(5):
        start = time.perf_counter()
        crontab.convert(text, "tab", None)
        times.append(time.perf_counter() - start)
    return min(times)


def test_a_line_four_times_longer_takes_about_four_times_longer():
    """Linear in the line's length (a quadratic pass took 12.6 s for 1 MB): 4x the text must
    take well under the 16x a quadratic pass would (a generous bound for a busy machine)."""
    def line(size: int) -> str:  # one long word, then many short ones, escapes and stdin
        chunk = "echo 'a b' \\\\ \\% \"q\" && x=1; "
        return f"* * * * * /bin/{'a' * (size // 2)} {chunk * (size // 2 // len(chunk))}%in%put\n"

    small, large = best_time(line(256 * 1024)), best_time(line(1024 * 1024))
    assert large < 9 * small, (small, large)


def test_cli_imports_around_a_line_cron_never_runs_and_warns_about_it(tmp_path):
    with temp_env(tmp_path) as env:
        (env.tmp / "tab").write_text("0 19-7 * * 1-5 /bin/night\n@daily /bin/true\n")
        proc = env.cli("import-crontab", "tab")
        assert proc.stdout.splitlines()[-1] == "applied: 1 added"
        assert proc.stderr == ("cron-scheduler: warning: tab:1: skipped, cron accepts it but never runs it: "
                               "reversed range '19-7' in the hour field selects no value\n")
