"""Delivering one alert through one channel: Apprise URLs (mail, chat, webhooks, ...) or a
command (argv, no shell) that gets the event JSON on stdin.

Apprise is imported here only, lazily, in the sender process (its import costs ~140 ms): the
CLI's fast paths and the scheduling loop never pay it. Every error message is redacted with the
secrets of the channel's URLs before it leaves this module.
"""

from __future__ import annotations

import html
import json
import logging
import os
import secrets
import signal
import subprocess
import tempfile
import threading
import time
from typing import Any

from cron_scheduler.errors import OperationalError
from cron_scheduler.notify.config import Channel
from cron_scheduler.notify.masking import mask_url, redact, secrets_of
from cron_scheduler.notify.message import body
from cron_scheduler.runner import MARKER_VAR, kill_tree

WEBHOOK_SCHEMES = ("json", "jsons")  # these get the event JSON itself as their message
STDERR_SHOWN = 500  # characters of a failing command's stderr kept in the error
STDERR_BYTES = 4096  # only the end of its stderr file is read
KILL_WAIT = 5.0      # seconds spent killing a command's tree (a process stuck in D state)
_running: dict[str, subprocess.Popen] = {}  # marker -> command delivering (one per channel thread)
_lock = threading.Lock()


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
    _quiet_apprise()
    hidden = secrets_of(url)
    shown = mask_url(url)
    notifier = apprise.Apprise()
    if not notifier.add(url):
        raise ChannelFailed(f"{shown}: not a URL Apprise can use (unknown scheme or missing parts)")
    scheme = url.split("://", 1)[0].lower()
    text = json.dumps(event, ensure_ascii=False) if scheme in WEBHOOK_SCHEMES else body(event)
    text, text_format = _formatted(text, getattr(notifier[0], "notify_format", "text"))
    problems: list[str] = []

    def collect(entry, service=None) -> None:
        if str(getattr(entry, "level", "")).upper() in ("WARNING", "ERROR", "CRITICAL"):
            problems.append(str(entry.message))

    kind = "failure" if event["event"] in ("failure", "timeout", "blocked", "missed", "daemon") else "info"
    try:
        result = notifier.notify(body=text, title=event["title"], notify_type=kind, body_format=text_format,
                                 timeout=timeout, log_callback=collect, log_level=30)
    except Exception as exc:  # noqa: BLE001 - a plugin bug is this channel's failure, not the sender's
        raise ChannelFailed(redact(f"{shown}: {type(exc).__name__}: {exc}", hidden)) from None
    if not result:
        status = getattr(getattr(result, "status", None), "name", "FAILURE")
        why = "; ".join(dict.fromkeys(problems)) or ("no answer within "
                                                     f"{timeout:g}s" if status == "TIMEOUT" else "delivery failed")
        raise ChannelFailed(redact(f"{shown}: {why}", hidden))


def _formatted(text: str, wanted) -> tuple[str, str]:
    """The message and its format for a plugin whose preferred format is `wanted` (a format, or
    a tuple of them, preferred first). Told the format, Apprise converts text for markdown
    plugins and keeps its newlines (without it, mail lost every newline). An HTML plugin (mail)
    gets the text escaped in <pre>: its text/html part keeps the layout and columns, and the
    text/plain part Apprise derives from it keeps every line."""
    if isinstance(wanted, (tuple, list)):
        wanted = wanted[0] if wanted else "text"
    if getattr(wanted, "value", wanted) == "html":
        return f"<pre>{html.escape(text, quote=False)}</pre>", "html"
    return text, "text"


def _quiet_apprise() -> None:
    """Apprise's own log lines are not printed (they could name a URL's parts); what matters
    of them reaches the error message through the log callback, redacted."""
    apprise_log = logging.getLogger("apprise")
    apprise_log.propagate = False
    if not apprise_log.handlers:
        apprise_log.addHandler(logging.NullHandler())


def _run_command(channel: Channel, event: dict[str, Any]) -> str:
    """The command gets the event JSON on stdin; exit 0 is success.

    Nothing here waits on a pipe a descendant could hold open: stdin and stderr are files. At
    its exit or its timeout, the command's whole tree is killed - its process group and every
    process carrying its marker, which descendants that setsid away inherit - so no delivery
    outlives its channel's timeout."""
    argv = list(channel.command)
    marker = f"alert-{os.getpid()}-{secrets.token_hex(6)}"
    with tempfile.TemporaryFile() as stdin, tempfile.TemporaryFile() as stderr:
        stdin.write(json.dumps(event, ensure_ascii=False).encode() + b"\n")
        stdin.seek(0)
        try:
            proc = subprocess.Popen(argv, stdin=stdin, stdout=subprocess.DEVNULL, stderr=stderr,
                                    start_new_session=True, close_fds=True, env={**os.environ, MARKER_VAR: marker})
        except OSError as exc:
            raise ChannelFailed(f"command {argv[0]}: cannot start: {exc.strerror or exc}") from None
        with _lock:
            _running[marker] = proc
        try:
            proc.wait(channel.timeout)
        except subprocess.TimeoutExpired:
            pass
        timed_out = proc.poll() is None
        _kill_tree(proc, marker)
        with _lock:
            _running.pop(marker, None)
        stderr.seek(max(0, stderr.seek(0, 2) - STDERR_BYTES))
        err = stderr.read().decode(errors="replace").strip()[-STDERR_SHOWN:]
    if timed_out:
        raise ChannelFailed(f"command {argv[0]}: no exit within {channel.timeout:g}s (killed)")
    if proc.returncode != 0:
        how = (f"killed by signal {signal.Signals(-proc.returncode).name}" if proc.returncode < 0
               else f"exited {proc.returncode}")
        raise ChannelFailed(f"command {argv[0]} {how}" + (f": {err}" if err else ""))
    return err


def kill_running() -> None:
    """The sender stops: kill every command still delivering (its alert stays pending)."""
    with _lock:
        running = list(_running.items())
    for marker, proc in running:
        _kill_tree(proc, marker)


def _kill_tree(proc: subprocess.Popen, marker: str) -> None:
    """SIGKILL the command's group and marked descendants until none is left (bounded)."""
    deadline = time.monotonic() + KILL_WAIT
    while kill_tree(proc.pid, marker, signal.SIGKILL) and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.wait()


def describe(channel: Channel) -> str:
    """The channel as it may be shown (secrets masked)."""
    if channel.command:
        return "command " + " ".join(channel.command)
    return ", ".join(mask_url(u) for u in channel.urls)
