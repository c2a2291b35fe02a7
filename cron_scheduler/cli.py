"""Command line: `create_cron` and the `cron-scheduler` group. Thin glue over the services.

Imports are lazy (only click at import time) so that `--help` and `list` start fast. Every
CronSchedulerError becomes one line on stderr and its exit code; click usage errors exit 2.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from cron_scheduler import __version__
from cron_scheduler.completion import job_ids as complete_jobs

HOME_HELP = "State directory (default: $CRON_SCHEDULER_HOME, else $XDG_STATE_HOME/cron-scheduler)."


def home_option(f):
    """`--home` on every subcommand; falls back to the group's --home."""
    return click.option("--home", "home", default=None, metavar="DIR", help=HOME_HELP, expose_value=True)(f)


def get_home(home: str | None):
    from cron_scheduler.home import Home
    ctx = click.get_current_context()
    root = ctx.find_root()
    return Home.at(home or (root.params.get("home") if root.params else None))


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


def no_headers_option(f):
    return click.option("--no-headers", is_flag=True, help="Print the table without its header line.")(f)


def text_style() -> dict[str, Any]:
    """How tables are printed to stdout: colour on a terminal only (never with NO_COLOR), fitted
    to its width."""
    from cron_scheduler import humanize
    out = sys.stdout
    return {"colour": humanize.use_colour(out), "width": humanize.width(out)}


def job_options(f):
    """The job-definition options shared by add/create_cron and update."""
    options = [
        click.option("--interval", "--timeout", "timeout", metavar="DURATION",
                     help="Per-run cap: a bare number is minutes (30); or 90s, 15m, 2h, 1h30m; 'none' = no cap."),
        click.option("--depends-on", metavar="IDS", help="Comma-separated upstream job ids."),
        click.option("--retries", type=int, help="Attempts after a failure or timeout (0-100)."),
        click.option("--retry-delay", metavar="DURATION", help="Delay before the first retry; doubles, capped at 1h."),
        click.option("--overlap", type=click.Choice(["skip", "queue", "allow", "replace"]),
                     help="When a slot comes while the previous run still runs (default skip)."),
        click.option("--catch-up", type=click.Choice(["latest", "all", "none"]),
                     help="Slots missed while the daemon was down (default latest)."),
        click.option("--priority", type=int, help="Higher starts first when runs are queued."),
        click.option("--start-at", metavar="ISO-TIME", help="Do not fire before this (required by @once)."),
        click.option("--end-at", metavar="ISO-TIME", help="Do not fire after this."),
        click.option("--tz", "timezone", metavar="ZONE", help="IANA zone the schedule is read in."),
        click.option("--cwd", metavar="DIR", help="Working directory of the run."),
        click.option("--env", multiple=True, metavar="K=V", help="Extra environment (repeatable)."),
        click.option("--notify", metavar="EVENTS", help="failure,timeout,blocked,missed,slow,output,recovered"),
        click.option("--notify-to", metavar="CHANNELS", help="Alert channels of config.toml (default: all)."),
        click.option("--alert-output", metavar="SIZE", help="An `output` alert when a run writes more."),
        click.option("--expect", "expected_duration", metavar="DURATION", help="Alert when a run is slower."),
        click.option("--max-output", metavar="SIZE", help="Output kept per run (default 10MB)."),
        click.option("--resources", metavar="NAME=AMOUNT,...", help="Dask worker resources a run needs (cpu=2,mem=4GB)."),
        click.option("--worker", metavar="ADDRESS", help="The Dask worker runs execute on; 'none' = any."),
        click.option("--user", metavar="NAME", help="Run as this account (the daemon must be root); 'none' = the daemon's."),
        click.option("--group", metavar="NAME", help="Primary group of the run instead of the user's own."),
        click.option("--memory-max", metavar="SIZE", help="Memory cap per run, e.g. 512M (cgroup v2); over it the kernel kills it."),
        click.option("--cpu-max", metavar="SHARE", help="CPU cap per run as a share of one core: 0.5, 2, 50% (cgroup v2)."),
        click.option("--pids-max", metavar="N", help="Processes and threads per run at once (cgroup v2)."),
        click.option("--nice", metavar="N", help="Scheduling priority of the run, -20 (first) to 19 (last)."),
        click.option("--description", metavar="TEXT", help="Free text."),
        click.option("--no-check", is_flag=True, help="Do not check that the script exists."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


# --- the group ---------------------------------------------------------------------------

@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--home", default=None, metavar="DIR", help=HOME_HELP)
@click.version_option(__version__, prog_name="cron-scheduler")
def cli(home: str | None) -> None:
    """cron-scheduler: manage jobs and inspect what the daemon ran."""


ADD_EPILOG = """\b
Examples:
  create_cron backup --interval 30 "0 2 * * *" backup.py
  create_cron report --depends-on backup @after report.py
  create_cron sync --retries 3 "*/5 * * * *" /usr/local/bin/sync -- --verbose
Put `--` before script arguments that start with '-'."""


@click.command("add", short_help="Add a job with a schedule and a command.", epilog=ADD_EPILOG)
@click.argument("job_id", metavar="ID")
@job_options
@click.option("--shell", is_flag=True, default=None, help="Run SCRIPT as one string through /bin/sh -c.")
@click.option("--paused", is_flag=True, help="Create the job paused.")
@click.option("--replace", is_flag=True, help="Overwrite an existing job with this id.")
@click.option("--json", "as_json", is_flag=True, help="Print the job as JSON.")
@home_option
@click.argument("schedule_expr", metavar="SCHEDULE")
@click.argument("command", metavar="SCRIPT [ARGS]...", nargs=-1, required=True)
def add_cmd(job_id, schedule_expr, command, shell, paused, replace, no_check, as_json, home, **opts):
    """Add a job: ID SCHEDULE SCRIPT [ARGS]...

    SCHEDULE is 5 cron fields (min hour dom mon dow), 6 with leading seconds, or
    @hourly @daily @weekly @monthly @yearly @reboot @once @after, '@every 90s'.
    A .py SCRIPT runs with the daemon's Python; anything else is exec'd directly."""
    from cron_scheduler.jobs import JobService, job_from_options
    opts.update(schedule=schedule_expr, command=command, shell=shell, enabled=False if paused else None)
    service = JobService(get_home(home))
    job = job_from_options(job_id, opts, check_script=not no_check, default_zone=service.default_zone())
    job = service.add(job, replace=replace)
    _print_job_added(service, job, as_json, opts, added=True)


def _print_job_added(service, job, as_json: bool, opts: dict | None = None, added: bool = False) -> None:
    """The saved job and its next run; warnings on stderr, for odd input and, when `added`,
    for a job whose `next run` no daemon will make (nothing serves the home)."""
    from cron_scheduler.control import START_HINT
    from cron_scheduler.home import load_config
    from cron_scheduler.instance import daemon_pid
    from cron_scheduler.jobs import job_view, next_runs
    from cron_scheduler.lint import job_warnings
    from cron_scheduler.models import utcnow
    nxt = next_runs(job, utcnow(), 1, service.default_zone()) if job.enabled else []
    prog = click.get_current_context().find_root().info_name or "cron-scheduler"
    config = load_config(service.home)
    for warning in job_warnings(job, opts or {}, nxt[0] if nxt else None, utcnow(), config.channels):
        click.echo(f"{prog}: warning: {job.id}: {warning}", err=True)
    if added and nxt and daemon_pid(service.home) is None:
        click.echo(f"{prog}: warning: {job.id}: no daemon is running for {service.home.root}, so nothing "
                   f"will run it until one starts; {START_HINT}", err=True)
    if as_json:
        emit_json(job_view(job, nxt[0] if nxt else None))
    else:
        from cron_scheduler.humanize import viewer_zone, when  # as views.text_zone, without its imports
        shown = when(nxt[0], viewer_zone(config.timezone), utcnow()) if nxt else "-"
        click.echo(f"{job.id}: saved ({job.schedule}); next run {shown}")


@cli.command("update")
@click.argument("job_id", metavar="ID", shell_complete=complete_jobs)
@job_options
@click.option("--schedule", "schedule_expr", metavar="SCHEDULE", help="New schedule.")
@click.option("--command", "command_line", metavar="COMMAND", help="New command line (split like a shell).")
@click.option("--shell/--no-shell", default=None, help="Run the command through /bin/sh -c, or not.")
@click.option("--unset-env", multiple=True, metavar="K", help="Remove an environment variable.")
@click.option("--json", "as_json", is_flag=True)
@home_option
def update_cmd(job_id, schedule_expr, command_line, shell, no_check, as_json, home, **opts):
    """Change some fields of a job; others keep their values. 'none' clears an optional value."""
    from cron_scheduler.jobs import JobService, parse_command_string
    opts.update(schedule=schedule_expr, shell=shell)
    if command_line is not None:
        opts["command"] = [command_line] if shell else parse_command_string(command_line)
    service = JobService(get_home(home))
    job = service.update(job_id, opts, check_script=not no_check)
    _print_job_added(service, job, as_json, opts)


@cli.command("remove")
@click.argument("job_ids", metavar="ID...", nargs=-1, required=True, shell_complete=complete_jobs)
@click.option("--force", is_flag=True, help="Also drop the dependency from jobs that depend on it.")
@home_option
def remove_cmd(job_ids, force, home):
    """Remove jobs (their history stays)."""
    from cron_scheduler.jobs import JobService
    for job_id in JobService(get_home(home)).remove(list(job_ids), force=force):
        click.echo(f"{job_id}: removed")


def _set_enabled(job_ids, home, enabled: bool) -> None:
    from cron_scheduler.jobs import JobService
    for job in JobService(get_home(home)).set_enabled(list(job_ids), enabled):
        click.echo(f"{job.id}: {'resumed' if enabled else 'paused'}")


@cli.command("pause", short_help="Pause jobs: no new slots until they are resumed.")
@click.argument("job_ids", metavar="ID...", nargs=-1, required=True, shell_complete=complete_jobs)
@home_option
def pause_cmd(job_ids, home):
    """Pause jobs: they keep their definition and history but get no new slots."""
    _set_enabled(job_ids, home, False)


@cli.command("resume")
@click.argument("job_ids", metavar="ID...", nargs=-1, required=True, shell_complete=complete_jobs)
@home_option
def resume_cmd(job_ids, home):
    """Resume paused jobs."""
    _set_enabled(job_ids, home, True)


@cli.command("list")
@click.option("--json", "as_json", is_flag=True)
@no_headers_option
@home_option
def list_cmd(as_json, no_headers, home):
    """List jobs with their next run."""
    from cron_scheduler.views import list_view
    h = get_home(home)
    rows = list_view(h)
    if as_json:
        emit_json(rows)
        return
    from cron_scheduler.views import format_table, text_zone
    click.echo(format_table(rows, text_zone(h), headers=not no_headers, **text_style()))


@cli.command("show")
@click.argument("job_id", metavar="ID", shell_complete=complete_jobs)
@click.option("--json", "as_json", is_flag=True)
@home_option
def show_cmd(job_id, as_json, home):
    """Show one job's definition and next run."""
    from cron_scheduler.views import format_job, show_view, text_zone
    h = get_home(home)
    data = show_view(h, job_id, usual=not as_json)
    if as_json:
        emit_json(data)
    else:
        click.echo(format_job(data, text_zone(h)))


@cli.command("next", short_help="Show the coming fire times of a job or a schedule.")
@click.argument("target", metavar="ID|EXPR", shell_complete=complete_jobs)
@click.option("--count", "-n", type=click.IntRange(1, 1000), default=5, show_default=True)
@click.option("--tz", "timezone", metavar="ZONE", help="Zone an expression is read in, or a job's times are shown in.")
@click.option("--from", "start", metavar="ISO-TIME", help="Start from this instant instead of now.")
@click.option("--json", "as_json", is_flag=True)
@home_option
def next_cmd(target, count, timezone, start, as_json, home):
    """The coming fire times of a job or of a schedule expression."""
    from cron_scheduler.views import format_next, next_times, text_zone
    h = get_home(home)
    times = next_times(h, target, count, timezone, start)
    if as_json:
        emit_json([t.isoformat() for t in times])
    else:  # in the zone `list` shows the same instants in, unless --tz asks for another
        for line in format_next(times, show_relative=not start, zone=None if timezone else text_zone(h)):
            click.echo(line)


@cli.command("graph", short_help="Show the dependency graph of the jobs.")
@click.argument("job_id", metavar="[ID]", required=False, shell_complete=complete_jobs)
@click.option("--json", "as_json", is_flag=True)
@home_option
def graph_cmd(job_id, as_json, home):
    """The dependency graph: each job and, indented, the jobs that run after it. With ID: what
    runs before the job (its upstream chain) and after it (its downstream tree)."""
    from cron_scheduler.views import graph_lines, graph_view
    if as_json:
        emit_json(graph_view(get_home(home), job_id))
        return
    for line in graph_lines(get_home(home), job_id):
        click.echo(line)


@cli.command("validate", short_help="Check a schedule expression (exit 0 if valid, 2 if not).")
@click.argument("expr", metavar="EXPR")
@home_option
def validate_cmd(expr, home):
    """Check a schedule expression: exit 0 if valid, 2 if not."""
    from cron_scheduler import schedule
    sched = schedule.parse(expr, strict=True)
    click.echo(f"valid: {schedule.describe(sched)}")


@cli.command("status", short_help="Show whether the daemon runs and what is due next.")
@click.option("--json", "as_json", is_flag=True)
@home_option
def status_cmd(as_json, home):
    """Daemon up?, home, job count, running runs, next due."""
    from cron_scheduler.control import run_jobs
    from cron_scheduler.views import format_status, status_view, text_zone
    h = get_home(home)
    data = status_view(h)
    if as_json:
        emit_json(data)
    else:
        click.echo(format_status(data, run_jobs(h, data["running"]), text_zone(h),
                                 colour=text_style()["colour"]))


cli.add_command(add_cmd)
import cron_scheduler.cli_runs  # noqa: E402,F401  (registers the run commands on `cli`)
import cron_scheduler.cli_notify  # noqa: E402,F401  (registers alerts and notify-test)
import cron_scheduler.cli_web  # noqa: E402,F401  (registers web)
import cron_scheduler.cli_files  # noqa: E402,F401  (registers apply, export, import-crontab)


# --- entry points ------------------------------------------------------------------------

def _run(command: click.Command, args: list[str] | None = None, prog_name: str | None = None) -> None:
    from cron_scheduler.errors import CronSchedulerError
    name = prog_name or command.name
    try:
        command.main(args=args, prog_name=name, standalone_mode=False)
    except CronSchedulerError as exc:
        click.echo(f"{name}: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.NoArgsIsHelpError as exc:  # bare group: help, exit 2 as click does
        click.echo(exc.ctx.get_help(), err=True)
        sys.exit(2)
    except click.UsageError as exc:
        click.echo(f"{name}: error: {exc.format_message()}", err=True)
        sys.exit(2)
    except click.Abort:
        click.echo(f"{name}: aborted", err=True)
        sys.exit(1)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except BrokenPipeError:
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)


def main(args: list[str] | None = None) -> None:
    _run(cli, args, "cron-scheduler")


def create_cron_command() -> click.Command:
    """`create_cron`: the `add` command with -h and --version of its own (as a group
    subcommand, `add` gets -h from the group and has no --version)."""
    import copy
    command = copy.copy(add_cmd)
    command.params = list(add_cmd.params)
    command.context_settings = dict(add_cmd.context_settings, help_option_names=["-h", "--help"])
    return click.version_option(__version__, prog_name="create_cron")(command)


def create_cron_main(args: list[str] | None = None) -> None:
    _run(create_cron_command(), args, "create_cron")
