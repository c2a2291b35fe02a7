"""CLI command `web`: the dashboard, JSON API and /metrics (the optional `web` extra)."""

from __future__ import annotations

import click

from cron_scheduler.cli import cli, get_home, home_option


@cli.command("web", short_help="Serve the dashboard, the JSON API and /metrics.")
@click.option("--bind", default="127.0.0.1:8765", show_default=True, metavar="HOST:PORT",
              help="Where to listen; a bind other than loopback needs the token for every request.")
@click.option("--read-only", is_flag=True, help="Refuse every action (run, stop, pause, resume, rerun).")
@click.option("--no-token", is_flag=True, help="No token at all, so no actions (loopback binds only).")
@click.option("--print-token", is_flag=True, help="Print the token for actions (created if missing) and exit.")
@home_option
def web_cmd(bind, read_only, no_token, print_token, home):
    """Serve the dashboard (jobs, job, run, timeline pages), the JSON API under /api and
    /metrics. Actions need the token kept in the home (web.token, 0600)."""
    from cron_scheduler.errors import OperationalError
    from cron_scheduler.web import auth
    h = get_home(home)
    if print_token:
        click.echo(auth.token(h))
        return
    host, _ = auth.parse_bind(bind)
    auth.check_bind(host, not no_token)
    try:
        from cron_scheduler.web.app import serve
    except ImportError as exc:
        raise OperationalError(f"the web dashboard needs the `web` extra ({exc.name} is missing): "
                               "pip install 'cron-scheduler-server[web]'") from None
    serve(h, bind, read_only=read_only, use_token=not no_token)
