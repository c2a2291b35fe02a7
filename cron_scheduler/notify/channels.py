"""Delivering one alert through one channel: Apprise URLs (mail, chat, webhooks, ...) or a
command (argv, no shell) that gets the event JSON on stdin.

Apprise is imported here only, lazily, in the sender process (its import costs ~140 ms): the
CLI's fast paths and the scheduling loop never pay it. Every error message is redacted with the
secrets of the channel's URLs before it leaves this module.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from typing import Any

from cron_scheduler.errors import OperationalError
from cron_scheduler.notify.config import Channel
from cron_scheduler.notify.masking import mask_url, redact, secrets_of
from cron_scheduler.notify.message import body

WEBHOOK_SCHEMES = ("json", "jsons")  # these get the event JSON itself as their message
STDERR_SHOWN = 500  # characters of a failing command's stderr kept in the error


class ChannelFailed(OperationalError):
    """A channel did not take an alert; the message names the URL (masked) or the command."""


def deliver(channel: Channel, event: dict[str, Any]) -> str:
    """Send `event` through every target of the channel; ChannelFailed names the first failing
    one and why. Returns a short note for the log (e.g. a command's stderr)."""
    if channel.command:
        return _run_command(channel, event)
    for url in channel.urls:
        _send_url(url, event, channel.timeout)
    return ""


def _send_url(url: str, event: dict[str, Any], timeout: float) -> None:
    import apprise  # here only: see the module docstring
    secrets = secrets_of(url)
    shown = mask_url(url)
    notifier = apprise.Apprise()
    if not notifier.add(url):
        raise ChannelFailed(f"{shown}: not a URL Apprise can use (unknown scheme or missing parts)")
    scheme = url.split("://", 1)[0].lower()
    text = json.dumps(event, ensure_ascii=False) if scheme in WEBHOOK_SCHEMES else body(event)
    problems: list[str] = []

    def collect(entry, service=None) -> None:
        if str(getattr(entry, "level", "")).upper() in ("WARNING", "ERROR", "CRITICAL"):
            problems.append(str(entry.message))

    kind = "failure" if event["event"] in ("failure", "timeout", "blocked", "missed", "daemon") else "info"
    try:
        result = notifier.notify(body=text, title=event["title"], notify_type=kind, timeout=timeout,
                                 log_callback=collect, log_level=30)
    except Exception as exc:  # noqa: BLE001 - a plugin bug is this channel's failure, not the sender's
        raise ChannelFailed(redact(f"{shown}: {type(exc).__name__}: {exc}", secrets)) from None
    if not result:
        status = getattr(getattr(result, "status", None), "name", "FAILURE")
        why = "; ".join(dict.fromkeys(problems)) or ("no answer within "
                                                     f"{timeout:g}s" if status == "TIMEOUT" else "delivery failed")
        raise ChannelFailed(redact(f"{shown}: {why}", secrets))


def _run_command(channel: Channel, event: dict[str, Any]) -> str:
    """The command gets the event JSON on stdin; exit 0 is success. Its own session, so a
    timeout kills its whole process group."""
    argv = list(channel.command)
    data = json.dumps(event, ensure_ascii=False).encode() + b"\n"
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                start_new_session=True, close_fds=True)
    except OSError as exc:
        raise ChannelFailed(f"command {argv[0]}: cannot start: {exc.strerror or exc}") from None
    try:
        _, err = proc.communicate(data, timeout=channel.timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc.pid)
        proc.communicate()
        raise ChannelFailed(f"command {argv[0]}: no exit within {channel.timeout:g}s (killed)") from None
    except BrokenPipeError:  # it exited without reading stdin
        _, err = proc.communicate()
    stderr = err.decode(errors="replace").strip()
    if proc.returncode != 0:
        how = (f"killed by signal {signal.Signals(-proc.returncode).name}" if proc.returncode < 0
               else f"exited {proc.returncode}")
        raise ChannelFailed(f"command {argv[0]} {how}" + (f": {stderr[-STDERR_SHOWN:]}" if stderr else ""))
    return stderr[-STDERR_SHOWN:]


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def describe(channel: Channel) -> str:
    """The channel as it may be shown (secrets masked)."""
    if channel.command:
        return "command " + " ".join(channel.command)
    return ", ".join(mask_url(u) for u in channel.urls)
