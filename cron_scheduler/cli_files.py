"""CLI commands about jobs as files: apply, export, import-crontab."""

from __future__ import annotations

import sys

import click

from cron_scheduler.cli import cli, get_home, home_option
from cron_scheduler.completion import job_ids as complete_jobs

APPLY_EPILOG = """\b
Examples:
  cron-scheduler apply pipelines/etl.yaml --dry-run
  cron-scheduler apply pipelines/etl.yaml --prune
  cron-scheduler export | cron-scheduler apply --dry-run -"""


@cli.command("apply", short_help="Create or update the jobs of a YAML pipeline file.", epilog=APPLY_EPILOG)
@click.argument("path", metavar="FILE.yaml|-")
@click.option("--dry-run", is_flag=True, help="Print what would change (added, changed field by field, removed); write nothing.")
@click.option("--prune", is_flag=True, help="Also remove jobs this file applied before and no longer lists.")
@click.option("--no-check", is_flag=True, help="Do not check that scripts and working directories exist.")
@home_option
def apply_cmd(path, dry_run, prune, no_check, home):
    """Create or update the jobs of a pipeline file (`jobs:` id -> job, optional `defaults:`)
    in one atomic store write: all of the file or nothing."""
    from cron_scheduler import pipeline
    from cron_scheduler.jobs import JobService
    service = JobService(get_home(home))
    pipe = pipeline.read(path, check=not no_check, default_zone=service.default_zone())
    changes = pipeline.apply(service.home, pipe, prune=prune, dry_run=dry_run)
    _warn(service, pipe, changes)
    for line in pipeline.format_changes(changes, dry_run):
        click.echo(line)


def _warn(service, pipe, changes) -> None:
    """The warnings `add` gives for odd but legal input, for the jobs a file adds or changes."""
    from cron_scheduler.jobs import next_runs
    from cron_scheduler.lint import job_warnings
    from cron_scheduler.models import utcnow
    from cron_scheduler.home import load_config
    now, channels = utcnow(), load_config(service.home).channels
    for change in changes:
        if change.kind in ("added", "changed"):
            job = pipe.entries[change.job_id].job
            nxt = next_runs(job, now, 1, service.default_zone()) if job.enabled else []
            for warning in job_warnings(job, {}, nxt[0] if nxt else None, now, channels):
                click.echo(f"cron-scheduler: warning: {job.id}: {warning}", err=True)


@cli.command("export", short_help="Write jobs as a YAML pipeline file that apply reads back.")
@click.argument("job_ids", metavar="[ID]...", nargs=-1, shell_complete=complete_jobs)
@click.option("--file", "out", metavar="F", help="Write to F instead of stdout.")
@home_option
def export_cmd(job_ids, out, home):
    """Write jobs (all, or the named ones) in the pipeline-file format of `apply`."""
    from cron_scheduler import pipeline
    from cron_scheduler.errors import OperationalError
    from cron_scheduler.jobs import JobService
    service = JobService(get_home(home))
    if job_ids:
        service.require(list(job_ids))
        jobs = {j: service.get(j) for j in dict.fromkeys(job_ids)}
    else:
        jobs, invalid = service.catalogue()
        for job_id in invalid:
            click.echo(f"cron-scheduler: warning: {job_id}: invalid, not exported", err=True)
    text = pipeline.export(jobs)
    if out is None:
        click.echo(text, nl=False)
        return
    try:
        with open(out, "w", encoding="utf-8") as fh:
            fh.write(text)
    except OSError as exc:
        raise OperationalError(f"cannot write {out}: {exc.strerror or exc}") from None
    from cron_scheduler.humanize import plural
    click.echo(f"exported {plural(len(jobs), 'job')} to {out}", err=True)


IMPORT_EPILOG = """\b
Examples:
  crontab -l | cron-scheduler import-crontab --dry-run -
  cron-scheduler import-crontab --system /etc/crontab --prefix sys-"""


@cli.command("import-crontab", short_help="Create jobs from the lines of a crontab.", epilog=IMPORT_EPILOG)
@click.argument("path", metavar="[FILE|-]", default="-")
@click.option("--system", is_flag=True, help="The /etc/crontab and /etc/cron.d form, with a user field.")
@click.option("--dry-run", is_flag=True, help="Print the jobs that would be created or changed; write nothing.")
@click.option("--prefix", default="", metavar="P", help="Put P before every job id.")
@click.option("--skip-invalid", is_flag=True, help="Import the lines that convert even if some do not.")
@home_option
def import_crontab_cmd(path, system, dry_run, prefix, skip_invalid, home):
    """Create one job per crontab line, run through /bin/sh -c (or $SHELL) as cron runs it.
    Lines that cannot be converted are reported with their line number; unless --skip-invalid,
    nothing is imported then. Lines cron accepts but never runs are skipped with a warning."""
    from cron_scheduler import crontab, pipeline
    from cron_scheduler.errors import InvalidOption
    from cron_scheduler.home import load_config
    from cron_scheduler.jobs import JobService
    service = JobService(get_home(home))
    channels = tuple(load_config(service.home).notify.get("channels", {}) or ())
    text, name, source = crontab.read(path)
    result = crontab.convert(text, name, source, system=system, prefix=prefix, channels=channels,
                             default_zone=service.default_zone(), stored=service.store.load().records())
    for line in result.problems:
        click.echo(f"cron-scheduler: {line}", err=True)
    for line in result.skipped:
        click.echo(f"cron-scheduler: warning: {line}", err=True)
    if result.problems and not skip_invalid:
        raise InvalidOption(f"{name}: {len(result.problems)} line(s) cannot be converted; nothing imported "
                            "(fix them, or use --skip-invalid to import the others)")
    for note in result.notes:
        click.echo(f"cron-scheduler: note: {note}", err=True)
    changes = pipeline.apply(service.home, result.pipeline, dry_run=dry_run)
    _warn(service, result.pipeline, changes)
    for line in pipeline.format_changes(changes, dry_run):
        click.echo(line)
    if result.problems:
        sys.exit(1)
