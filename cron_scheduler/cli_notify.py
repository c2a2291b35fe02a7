"""CLI commands about alerts: alerts (what was sent, failed or suppressed) and notify-test."""

from __future__ import annotations

import sys

import click

from cron_scheduler.cli import cli, emit_json, get_home, home_option


@cli.command("alerts", short_help="List the alerts sent, failed or suppressed.")
@click.option("--json", "as_json", is_flag=True)
@click.option("--limit", type=click.IntRange(1, 100_000), default=50, show_default=True)
@home_option
def alerts_cmd(as_json, limit, home):
    """Alerts recorded by the daemon, newest first: sent, pending, failed or suppressed."""
    from cron_scheduler.notify.views import alert_rows, format_alerts
    rows = alert_rows(get_home(home), limit)
    if as_json:
        emit_json(rows)
    else:
        click.echo(format_alerts(rows))


@cli.command("notify-test", short_help="Send a test alert through each channel.")
@click.argument("channel", metavar="[CHANNEL]", required=False)
@home_option
def notify_test_cmd(channel, home):
    """Send a test alert through each channel (or one); exit 1 if any failed."""
    from cron_scheduler.notify.views import notify_test
    results = notify_test(get_home(home), channel)
    for name, target, error in results:
        click.echo(f"{name}: {'ok' if error is None else 'FAILED: ' + error} ({target})")
    sys.exit(1 if any(error is not None for _, _, error in results) else 0)
