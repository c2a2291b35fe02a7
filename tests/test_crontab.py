"""import-crontab: every crontab construct, the system form, stable ids, unconvertible lines
reported by number (and nothing imported unless --skip-invalid), and imported jobs run as
cron would run them (stdin from '%', $SHELL) under the real daemon."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from cron_scheduler import crontab
from harness import child_env, temp_env

DEBIAN = """\
# /etc/crontab: system-wide crontab
# Unlike any other crontab you don't have to run the `crontab'
# command to install the new version when you edit this file
# and files in /etc/cron.d. These files also have username fields,
# that none of the other crontabs do.

SHELL=/bin/sh
# You can also override PATH, but by default, newer versions inherit it from the environment
#PATH=/usr/local/sbin:/usr/local/bin:/sbin:/bin:/usr/sbin:/usr/bin

# Example of job definition:
# .---------------- minute (0 - 59)
# |  .------------- hour (0 - 23)
# |  |  .---------- day of month (1 - 31)
# |  |  |  .------- month (1 - 12) OR jan,feb,mar,apr ...
# |  |  |  |  .---- day of week (0 - 6) (Sunday=0 or 7) OR sun,mon,tue,wed,thu,fri,sat
# |  |  |  |  |
# *  *  *  *  * user-name command to be executed
17 *\t* * *\troot    cd / && run-parts --report /etc/cron.hourly
25 6\t* * *\troot\ttest -x /usr/sbin/anacron || { cd / && run-parts --report /etc/cron.daily; }
47 6\t* * 7\troot\ttest -x /usr/sbin/anacron || { cd / && run-parts --report /etc/cron.weekly; }
52 6\t1 * *\troot\ttest -x /usr/sbin/anacron || { cd / && run-parts --report /etc/cron.monthly; }
#
"""

USER = """\
# Edit this file to introduce tasks to be run by cron.
# m h  dom mon dow   command
MAILTO=ops@example.com
PATH=/usr/local/bin:/usr/bin:/bin
HOME = "/srv/app"
CRON_TZ=Europe/Berlin

# id: backup
30 2 * * * /usr/local/bin/backup --full > /var/log/backup.log 2>&1
*/15 9-17 * * mon-fri /usr/bin/php /srv/app/artisan queue:work --stop-when-empty
0 0 1 jan,jul * /usr/local/bin/rotate-archives
@reboot /usr/local/bin/start-agent
@hourly /usr/bin/curl -fsS https://example.com/ping > /dev/null
@midnight find /tmp -type f -mtime +7 -delete
0 6 * * * mail -s "daily report" ops@example.com%Hello,%the report is attached.%
5 4 * * sun date +\\%Y-\\%m-\\%d >> /srv/app/dates.log
MAILTO=""
SHELL=/bin/bash
0 */2 * * * [[ -f /srv/app/flag ]] && echo flag
CRON_TZ=
0-30/10 3 1-7 * 1 echo first monday-ish
# lines cron-scheduler cannot convert:
61 * * * * echo bad minute
@fortnightly echo too rare
1 2 3 4
0 12 L * * echo quartz last day
0 0 ? * MON echo quartz no-specific
"""


def line_of(text: str, needle: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), 1) if needle in line)


def convert(text: str, **kw):
    return crontab.convert(text, "crontab", "/etc/crontab", **kw)


def by_command(result, needle: str):
    return next(e.job for e in result.pipeline.entries.values() if needle in e.job.command[-1])


def test_debian_system_crontab_converts_every_line_through_sh():
    result = convert(DEBIAN, system=True)
    assert result.problems == []
    jobs = [e.job for e in result.pipeline.entries.values()]
    assert [j.schedule for j in jobs] == ["17 * * * *", "25 6 * * *", "47 6 * * 7", "52 6 1 * *"]
    assert all(j.shell and j.env == {"PATH": "/usr/bin:/bin", "SHELL": "/bin/sh"} and j.source == "/etc/crontab"
               for j in jobs)
    assert jobs[1].command == ("test -x /usr/sbin/anacron || { cd / && run-parts --report /etc/cron.daily; }",)
    assert [j.id for j in jobs] == ["run-parts", "run-parts-2", "run-parts-3", "run-parts-4"]
    lines = [e.line for e in result.pipeline.entries.values()]
    assert lines == [line_of(DEBIAN, "cron.hourly"), line_of(DEBIAN, "cron.daily"),
                     line_of(DEBIAN, "cron.weekly"), line_of(DEBIAN, "cron.monthly")]


def test_system_form_keeps_each_lines_user():
    result = convert("MAILTO=root\n0 3 * * * www-data /usr/bin/php /var/www/cron.php\n"
                     "5 3 * * * root /usr/sbin/logrotate /etc/logrotate.conf\n", system=True)
    php, rotate = (entry.job for entry in result.pipeline.entries.values())
    assert php.command == ("/usr/bin/php /var/www/cron.php",)
    assert php.user == "www-data" and "MAILTO=root" in php.description
    assert rotate.user == (None if os.geteuid() == 0 else "root")  # the daemon's own: nothing to switch
    assert result.notes == [] and result.problems == []
    # without --system the user field is part of the command, as crontab -e would read it
    result = convert("0 3 * * * www-data /usr/bin/php\n")
    assert next(iter(result.pipeline.entries.values())).job.command == ("www-data /usr/bin/php",)


def test_system_line_of_an_account_this_host_lacks_is_a_problem_not_a_root_job():
    result = convert("0 3 * * * no-such-user-xyz /usr/bin/true\n", system=True)
    assert result.pipeline.entries == {}
    assert result.problems == ["crontab:1: cannot convert: user 'no-such-user-xyz' does not exist on this host "
                               "(--user/--group)"]


def test_user_crontab_every_construct():
    result = convert(USER)
    jobs = result.pipeline.entries
    backup = jobs["backup"].job  # '# id: backup' above the line names it
    assert backup.schedule == "30 2 * * *" and backup.shell is True
    assert backup.command == ("/usr/local/bin/backup --full > /var/log/backup.log 2>&1",)
    assert backup.env == {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/srv/app",  # quotes removed
                          "SHELL": "/bin/sh", "MAILTO": "ops@example.com", "CRON_TZ": "Europe/Berlin"}
    assert backup.timezone == "Europe/Berlin"
    assert backup.description == "crontab: MAILTO=ops@example.com (cron mailed its output there)"
    assert backup.notify_to == ()  # no channel of that name: a note only
    assert by_command(result, "artisan").schedule == "*/15 9-17 * * mon-fri"
    assert by_command(result, "rotate-archives").schedule == "0 0 1 jan,jul *"
    assert by_command(result, "start-agent").schedule == "@reboot"
    assert by_command(result, "example.com/ping").schedule == "@hourly"
    assert by_command(result, "find /tmp").schedule == "@midnight"
    mail = by_command(result, "daily report")
    assert mail.command == ("printf '%s' 'Hello,\nthe report is attached.\n' | (\n"
                            "mail -s \"daily report\" ops@example.com\n)",)
    assert by_command(result, "date +").command == ("date +%Y-%m-%d >> /srv/app/dates.log",)
    flag = by_command(result, "flag")  # SHELL=/bin/bash: run by bash, not /bin/sh
    assert flag.command == ("/bin/bash", "-c", "[[ -f /srv/app/flag ]] && echo flag") and flag.shell is False
    assert flag.description == "" and flag.timezone == "Europe/Berlin"  # MAILTO="" sends nothing
    monday = by_command(result, "monday-ish")
    assert monday.schedule == "0-30/10 3 1-7 * 1" and monday.timezone is None  # CRON_TZ= clears it
    assert len(jobs) == 10
    n = lambda needle: line_of(USER, needle)
    assert [p.split(": cannot convert: ")[0] for p in result.problems] == [
        f"crontab:{n('bad minute')}", f"crontab:{n('too rare')}", f"crontab:{n('1 2 3 4')}",
        f"crontab:{n('last day')}", f"crontab:{n('no-specific')}"]
    assert "unknown schedule '@fortnightly'" in result.problems[1]
    assert "expected 5 time fields and a command" in result.problems[2]
    assert "time field 'L' is not cron syntax" in result.problems[3]
    assert "time field '?' is not cron syntax" in result.problems[4]


def test_generated_ids_are_readable_stable_and_follow_the_command_not_the_schedule():
    first = convert(USER)
    assert list(first.pipeline.entries) == ["backup", "php", "rotate-archives", "start-agent", "curl", "find",
                                            "mail", "date", "echo", "echo-2"]
    assert list(convert(USER).pipeline.entries) == list(first.pipeline.entries)
    moved = convert(USER.replace("@midnight find", "15 1 * * * find"))
    assert moved.pipeline.entries["find"].job.schedule == "15 1 * * *"
    # cron runs every line, the same command twice included: one job each
    twice = convert("@daily /bin/run\n@hourly /bin/run\n@hourly /bin/run\n")
    assert list(twice.pipeline.entries) == ["run", "run-2", "run-3"] and twice.problems == []
    assert list(convert("@daily /bin/run\n", prefix="old-").pipeline.entries) == ["old-run"]


def test_mailto_uses_an_alert_channel_of_that_name():
    result = convert("MAILTO=ops@example.com\n@daily /bin/true\n", channels=("ops",))
    job = next(iter(result.pipeline.entries.values())).job
    assert job.notify_to == ("ops",) and job.notify == ("failure",)


@pytest.fixture
def env(tmp_path):
    with temp_env(tmp_path) as e:
        yield e


def test_cli_reports_bad_lines_and_imports_nothing_unless_skip_invalid(env):
    (env.tmp / "user.crontab").write_text(USER)
    proc = env.cli("import-crontab", "user.crontab", check=False)
    assert proc.returncode == 2
    err = proc.stderr.splitlines()
    assert f"cron-scheduler: user.crontab:{line_of(USER, 'bad minute')}: cannot convert: " in err[0]
    assert err[-1] == ("cron-scheduler: error: user.crontab: 5 line(s) cannot be converted; nothing imported "
                       "(fix them, or use --skip-invalid to import the others)")
    assert not (env.home / "jobs.json").exists()
    proc = env.cli("import-crontab", "user.crontab", "--skip-invalid", check=False)
    assert proc.returncode == 1 and proc.stdout.splitlines()[-1] == "applied: 10 added"
    stored = json.loads((env.home / "jobs.json").read_text())["jobs"]
    assert len(stored) == 10 and stored["backup"]["source"] == str(env.tmp / "user.crontab")
    again = env.cli("import-crontab", "user.crontab", "--skip-invalid", "--dry-run", check=False)
    assert again.stdout.splitlines()[-1] == "no change (10 jobs unchanged)"  # ids stable


def test_imported_jobs_run_as_cron_runs_them(env):
    out = env.tmp / "out"
    out.mkdir()
    (env.tmp / "tab").write_text(
        f"# id: stdin\n* * * * * cat > {out}/stdin.txt%line one%line two\n"
        f"# id: percent\n* * * * * date +\\%Y > {out}/year.txt\n"
        f"SHELL=/bin/bash\n# id: bash\n* * * * * echo $BASH_VERSION > {out}/bash.txt\n")
    proc = subprocess.run([sys.executable, "-m", "cron_scheduler", "--home", str(env.home),
                           "import-crontab", "-"], input=(env.tmp / "tab").read_text(),
                          capture_output=True, text=True, env=child_env(), timeout=60)
    assert proc.returncode == 0, proc.stderr
    env.start_daemon()
    env.cli("run", "stdin", "percent", "bash", "--wait", "--timeout", "60")
    assert (out / "stdin.txt").read_text() == "line one\nline two\n"  # cron ends stdin with a newline
    assert (out / "year.txt").read_text().strip().isdigit()
    assert (out / "bash.txt").read_text().strip() != ""
