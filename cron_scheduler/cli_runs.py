"""CLI commands about runs: run, stop, rerun, history, logs, explain, daemon."""

from __future__ import annotations

import sys
import time

import click

from cron_scheduler.completion import job_ids as complete_jobs
from cron_scheduler.completion import run_ids as complete_runs

from cron_scheduler.cli import cli, emit_json, get_home, home_option, no_headers_option, text_style

MAX_WORKERS = 1000  # the same bound as python -m cron_scheduler.scheduler --max-workers


def _announce(result: str | None, what: str, home=None, order: list[str] | None = None) -> None:
    """The daemon's answer ("runs 2 3 4", "stopping 5") with each run's job next to its id."""
    from cron_scheduler.control import named_runs, run_jobs
    if result is None:
        click.echo(f"{what}: queued; no daemon is running, it will be handled when one starts", err=True)
        return
    word, _, rest = result.partition(" ")
    if home is not None and word in ("runs", "stopping") and rest and all(x.isdigit() for x in rest.split()):
        ids = [int(x) for x in rest.split()]
        result = f"{word} {named_runs(ids, run_jobs(home, ids), order)}"
    click.echo(f"{what}: {result}")


@cli.command("run")
@click.argument("job_ids", metavar="ID...", nargs=-1, required=True, shell_complete=complete_jobs)
@click.option("--no-deps", is_flag=True, help="Start the named jobs even if their upstreams did not succeed.")
@click.option("--with-upstream", is_flag=True,
              help="Also run the jobs' upstreams (transitively) in the same wave, upstreams first.")
@click.option("--wait", is_flag=True,
              help="Wait until the wave's runs end; exit 1 unless all succeeded (or if no daemon runs).")
@click.option("--timeout", "wait_timeout", type=float, default=None, help="With --wait: give up after N seconds.")
@home_option
def run_cmd(job_ids, no_deps, with_upstream, wait, wait_timeout, home):
    """Run jobs now, in one wave (their downstream jobs follow)."""
    from cron_scheduler.control import require_daemon, run_ids, send_request, upstream_closure, wait_for_runs
    from cron_scheduler.errors import InvalidOption
    from cron_scheduler.jobs import JobService
    if no_deps and with_upstream:
        raise InvalidOption("--no-deps and --with-upstream exclude each other")
    h = get_home(home)
    service = JobService(h)
    service.require(job_ids)
    jobs = list(dict.fromkeys(job_ids))
    if with_upstream:
        jobs = upstream_closure(service.all(), jobs)
    if wait:  # nothing to wait for: refused before the request is queued, so nothing runs later
        require_daemon(h, "nothing ran and nothing was queued")
    _, result = send_request(h, "run", {"jobs": jobs, "no_deps": no_deps})
    _announce(result, "run " + " ".join(jobs), h, jobs)
    if wait and result is not None:
        runs = wait_for_runs(h, run_ids(result), wait_timeout)
        for run in runs:
            click.echo(f"run {run.run_id} {run.job_id}: {run.status}")
        sys.exit(0 if all(r.status == "succeeded" for r in runs) else 1)


@cli.command("stop", short_help="Stop the running and queued runs of jobs.")
@click.argument("job_ids", metavar="[ID]...", nargs=-1, shell_complete=complete_jobs)
@click.option("--all", "stop_all", is_flag=True, help="Stop every running run.")
@click.option("--run", "run_id", type=int, multiple=True, help="Stop this run id.", shell_complete=complete_runs)
@home_option
def stop_cmd(job_ids, stop_all, run_id, home):
    """Stop running (and queued) runs of jobs: SIGTERM to the tree, SIGKILL after the grace."""
    from cron_scheduler.control import require_known_job, require_run, send_request
    from cron_scheduler.errors import InvalidOption
    if not (job_ids or stop_all or run_id):
        raise InvalidOption("name jobs to stop, or use --all or --run ID")
    h = get_home(home)
    for job_id in job_ids:
        require_known_job(h, job_id)
    for one in run_id:
        require_run(h, one)
    _, result = send_request(h, "stop", {"jobs": list(job_ids), "all": stop_all, "runs": list(run_id)})
    if result == "stopping nothing":
        what = ["no run"] if stop_all else []
        what += [f"no run of {', '.join(job_ids)}"] if job_ids and not stop_all else []
        what += [f"run {', '.join(map(str, run_id))}"] if run_id and not stop_all else []
        click.echo(f"stop: nothing to stop: {' or '.join(what)} is queued, waiting or running")
        return
    _announce(result, "stop", h)


@cli.command("rerun", short_help="Run a finished run's job again inside its wave.")
@click.argument("run_id", type=int, shell_complete=complete_runs)
@home_option
def rerun_cmd(run_id, home):
    """Run a finished run's job again inside its wave; on success its blocked downstream jobs run."""
    from cron_scheduler.control import require_run, send_request
    h = get_home(home)
    require_run(h, run_id)
    _, result = send_request(h, "rerun", {"run_id": run_id})
    _announce(result, f"rerun {run_id}", h)


@cli.command("history", short_help="Show runs, newest first.")
@click.argument("job_id", metavar="[ID]", required=False, shell_complete=complete_jobs)
@click.option("--limit", "-n", type=click.IntRange(1, 100000), default=20, show_default=True)
@click.option("--status", metavar="STATUS", help="Only runs with this status.")
@click.option("--json", "as_json", is_flag=True)
@no_headers_option
@home_option
def history_cmd(job_id, limit, status, as_json, no_headers, home):
    """Runs, newest first."""
    from cron_scheduler.control import history_view
    from cron_scheduler.views import format_history, text_zone
    h = get_home(home)
    rows = history_view(h, job_id, limit, status)
    if as_json:
        emit_json(rows)
        return
    click.echo(format_history(rows, text_zone(h), headers=not no_headers, **text_style()))


@cli.command("logs")
@click.argument("job_id", metavar="ID", shell_complete=complete_jobs)
@click.option("--run", "which", default="last", show_default=True, help="Run id, or 'last'.", shell_complete=complete_runs)
@click.option("--follow", "-f", is_flag=True,
              help="Keep printing while the run runs; without --run, follow the newest run, "
                   "waiting for it to start if it is queued.")
@home_option
def logs_cmd(job_id, which, follow, home):
    """Print a run's output (stdout and stderr)."""
    from cron_scheduler.control import find_run, open_run_log
    from cron_scheduler.history import History
    from cron_scheduler.models import ACTIVE
    h = get_home(home)
    run = find_run(h, job_id, which, follow=follow)
    if follow:
        click.echo(f"following run {run.run_id} ({run.status})", err=True)
    out = click.get_binary_stream("stdout")
    with History.opened(h) as history:
        # runs/<job>/<run-id>.log of this home, never through a link; a queued or waiting run
        # has none until it starts
        while (fh := open_run_log(h, run)) is None and follow and run.status in ACTIVE:
            time.sleep(0.2)
            run = history.get_run(run.run_id)
        if fh is None:
            click.echo(f"(run {run.run_id} is {run.status}; it has no output file)", err=True)
            return
        with fh:
            while True:
                chunk = fh.read(65536)
                if chunk:
                    out.write(chunk)
                    out.flush()
                    continue
                if not follow:
                    break
                run = history.get_run(run.run_id)
                if run.status not in ACTIVE:
                    out.write(fh.read())  # what it wrote between the last read and its end
                    out.flush()
                    break
                time.sleep(0.2)
    if run.truncated:
        click.echo(f"(output truncated at the job's max_output; {run.output_bytes} bytes written)", err=True)


@cli.command("explain", short_help="Explain why a job ran or not at a slot, and what comes next.")
@click.argument("job_id", metavar="ID", shell_complete=complete_jobs)
@click.option("--at", "at", metavar="ISO-TIME", help="The slot to explain (default: recent runs).")
@click.option("--json", "as_json", is_flag=True)
@home_option
def explain_cmd(job_id, at, as_json, home):
    """Why a job did or did not run at a slot (or recently), and what will happen next and why:
    its next slot, paused, waiting for its upstreams, outside start/end, no daemon."""
    from cron_scheduler.explain import explain_view
    from cron_scheduler.views import instant_option
    view = explain_view(get_home(home), job_id, instant_option(at, "--at") if at else None)
    if as_json:
        emit_json(view)
        return
    for line in view["lines"]:
        click.echo(line)


@cli.command("daemon", short_help="Run the daemon in the foreground.", context_settings={"ignore_unknown_options": True})
@click.option("--max-workers", type=click.IntRange(1, MAX_WORKERS), metavar=f"1..{MAX_WORKERS}",
              help="Runs at once (default: config, else 10).")
@click.option("--once", is_flag=True)
@click.option("--log-level", default="INFO")
@click.option("--executor", type=click.Choice(["local", "dask"]), help="Where runs execute (default: config, else local).")
@click.option("--dask-scheduler", metavar="ADDRESS", help="Dask scheduler for --executor dask, e.g. tcp://HOST:8786.")
@home_option
def daemon_cmd(max_workers, once, log_level, executor, dask_scheduler, home):
    """Run the daemon in the foreground (same as python -m cron_scheduler.scheduler)."""
    from cron_scheduler.scheduler import main as daemon_main
    args = ["--home", str(get_home(home).root), "--log-level", log_level]
    if max_workers is not None:
        args += ["--max-workers", str(max_workers)]
    if once:
        args.append("--once")
    args += ["--executor", executor] if executor else []
    args += ["--dask-scheduler", dask_scheduler] if dask_scheduler else []
    sys.exit(daemon_main(args))


@cli.command("doctor", short_help="Check state.db; --repair rebuilds a damaged one.")
@click.option("--repair", is_flag=True,
              help="Set a damaged state.db aside (state.db.corrupt-TIME) and rebuild it from its readable rows.")
@click.option("--json", "as_json", is_flag=True,
              help="Print {state_db, exists, ok, problems} (with --repair: also repaired, aside, tables).")
@home_option
def doctor_cmd(repair, as_json, home):
    """Check state.db's integrity; exit 1 if it is damaged. jobs.json is never touched."""
    from cron_scheduler.doctor import check
    from cron_scheduler.doctor import repair as rebuild
    from cron_scheduler.errors import StateDamaged
    from cron_scheduler.humanize import plural
    from cron_scheduler.models import utcnow
    h = get_home(home)
    if not repair:
        problems = check(h)
        if as_json:
            emit_json({"state_db": str(h.state_db), "exists": problems is not None, "ok": not problems,
                       "problems": problems or []})
        elif problems is None:
            click.echo(f"{h.state_db}: not created yet; nothing to check")
        elif not problems:
            click.echo(f"{h.state_db}: ok")
        else:
            for problem in problems:
                click.echo(f"{h.state_db}: {problem}")
        if problems:
            raise StateDamaged(f"{h.state_db} is damaged: stop the daemon and run "
                               f"`cron-scheduler doctor --repair` (jobs.json is not affected)")
        return
    result = rebuild(h, utcnow())
    if as_json:
        emit_json({"state_db": str(h.state_db), "exists": h.state_db.exists(), "ok": True, "problems": [],
                   "repaired": result is not None, "aside": str(result.aside) if result else None,
                   "tables": [{"table": t.table, "rows": t.rows, "unreadable": t.unreadable, "error": t.error}
                              for t in (result.tables if result else [])]})
        return
    if result is None:
        click.echo(f"{h.state_db}: ok; nothing to repair")
        return
    click.echo(f"damaged database moved to {result.aside} (with its -wal/-shm)")
    for t in result.tables:
        if t.error:
            click.echo(f"  {t.table}: nothing salvaged ({t.error})")
        else:
            lost = f", {t.unreadable} id(s) on damaged pages lost (or pruned earlier)" if t.unreadable else ""
            click.echo(f"  {t.table}: {plural(t.rows, 'row')} salvaged{lost}")
    click.echo("schedule cursors start fresh: every job goes on from its next slot; jobs.json untouched")
    click.echo(f"{h.state_db}: rebuilt")
