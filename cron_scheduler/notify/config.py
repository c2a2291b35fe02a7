"""`[notify]` of config.toml: named channels and the no-flood settings, validated where read.

    [notify]
    rate_limit = 30            # alerts per channel per hour (then one summary)
    merge_window = "5m"        # identical alerts within it are merged
    wave_wait = "60s"          # a wave's alerts wait for it to settle, then go as one digest
    [notify.channels.ops]
    urls = ["mailto://user:pass@smtp.example.com?to=ops@example.com"]
    [notify.channels.pager]
    command = ["/usr/local/bin/page-me", "--json"]
    timeout = "30s"
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from cron_scheduler.errors import InvalidOption, UsageError

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://\S+")
SETTINGS = ("channels", "rate_limit", "merge_window", "retries", "retry_delay", "summary_delay", "wave_wait", "host")
CHANNEL_KEYS = ("urls", "command", "timeout")


@dataclass(frozen=True)
class Channel:
    name: str
    urls: tuple[str, ...] = ()
    command: tuple[str, ...] = ()
    timeout: float = 30.0


@dataclass(frozen=True)
class NotifyConfig:
    channels: dict[str, Channel] = field(default_factory=dict)
    rate_limit: int = 30          # alerts per channel per rolling hour
    merge_window: float = 300.0   # seconds: an identical alert within it is merged
    retries: int = 3              # attempts after the first failed delivery
    retry_delay: float = 10.0     # seconds before the first retry, doubling
    summary_delay: float = 60.0   # seconds after the first suppressed alert: the summary
    wave_wait: float = 60.0       # seconds a wave's alerts wait for the wave to settle (one digest)
    host: str | None = None       # shown in subjects; default the machine's name


def parse_notify(raw: Any, where: str = "config.toml") -> NotifyConfig:
    """Validate `[notify]`; InvalidOption names the key at fault (exit 2)."""
    from cron_scheduler.models import parse_duration
    if not raw:
        return NotifyConfig()
    if not isinstance(raw, dict):
        raise InvalidOption(f"{where}: notify must be a table ([notify])")
    unknown = sorted(set(raw) - set(SETTINGS))
    if unknown:
        raise InvalidOption(f"{where}: unknown setting 'notify.{unknown[0]}' (known: {', '.join(SETTINGS)})")
    values: dict[str, Any] = {}
    for key in ("rate_limit", "retries"):
        if key in raw:
            value = raw[key]
            if type(value) is not int or not 0 <= value <= 100_000:
                raise InvalidOption(f"{where}: notify.{key} must be an integer from 0 to 100000")
            values[key] = value
    for key in ("merge_window", "retry_delay", "summary_delay", "wave_wait"):
        if key in raw:
            values[key] = _seconds(raw[key], f"notify.{key}", where, parse_duration)
    if "host" in raw:
        if not isinstance(raw["host"], str) or not raw["host"].strip():
            raise InvalidOption(f"{where}: notify.host must be a non-empty string")
        values["host"] = raw["host"].strip()
    channels = raw.get("channels", {})
    if not isinstance(channels, dict):
        raise InvalidOption(f"{where}: notify.channels must be a table ([notify.channels.NAME])")
    parsed = {}
    for name, body in channels.items():
        parsed[name] = _channel(name, body, where, parse_duration)
    return NotifyConfig(channels=parsed, **values)


def _channel(name: str, body: Any, where: str, parse_duration) -> Channel:
    key = f"notify.channels.{name}"
    if not _NAME.fullmatch(name):
        raise InvalidOption(f"{where}: bad channel name {name!r} in [{key}]: use letters, digits, '_', '.', '-'")
    if not isinstance(body, dict):
        raise InvalidOption(f"{where}: {key} must be a table")
    unknown = sorted(set(body) - set(CHANNEL_KEYS))
    if unknown:
        raise InvalidOption(f"{where}: unknown setting '{key}.{unknown[0]}' (known: {', '.join(CHANNEL_KEYS)})")
    urls, command = body.get("urls"), body.get("command")
    if (urls is None) == (command is None):
        raise InvalidOption(f"{where}: {key} needs exactly one of urls = [...] or command = [...]")
    if urls is not None:
        if not isinstance(urls, list) or not urls or not all(isinstance(u, str) for u in urls):
            raise InvalidOption(f"{where}: {key}.urls must be a non-empty list of strings")
        for number, url in enumerate(urls, 1):
            if not _URL.fullmatch(url.strip()):  # not shown: it may hold a password
                raise InvalidOption(f"{where}: {key}.urls: URL {number} is not a URL like scheme://...")
    if command is not None:
        if not isinstance(command, list) or not command or not all(isinstance(a, str) and a for a in command):
            raise InvalidOption(f"{where}: {key}.command must be a non-empty list of strings (argv, no shell)")
    timeout = _seconds(body.get("timeout", 30.0), f"{key}.timeout", where, parse_duration)
    return Channel(name=name, urls=tuple(u.strip() for u in urls or ()), command=tuple(command or ()),
                   timeout=timeout)


def _seconds(value: Any, key: str, where: str, parse_duration) -> float:
    """A number of seconds or a duration string ("90s", "5m")."""
    if type(value) in (int, float) and 0 < value <= 86400 * 7:
        return float(value)
    if isinstance(value, str):
        try:
            seconds = parse_duration(value if not value.strip().isdigit() else value + "s", key)
        except UsageError as exc:  # InvalidDuration
            raise InvalidOption(f"{where}: {exc}") from None
        if seconds <= 86400 * 7:
            return seconds
    raise InvalidOption(f"{where}: {key} must be a number of seconds or a duration like 90s, 5m (up to 7d)")
