"""Secrets in channel URLs: masked for display, and redacted from any text (error messages,
Apprise's log lines) before it reaches scheduler.log, the alerts table or the CLI."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, unquote, urlsplit

MASK = "***"
_SENSITIVE_KEY = re.compile(r"pass|pwd|token|key|secret|auth|sig|apikey|webhook|code", re.I)
_TOKENISH = re.compile(r"[A-Za-z0-9_\-]{16,}")  # long opaque path parts (Slack/Discord/Telegram tokens)


def secrets_of(url: str) -> list[str]:
    """The parts of a channel URL that must never be shown: password, sensitive query values,
    and long opaque tokens in the host or path."""
    found: list[str] = []
    try:
        parts = urlsplit(url)
    except ValueError:
        return [url]
    netloc = parts.netloc
    userinfo, at, host = netloc.rpartition("@")
    if at:
        user, colon, password = userinfo.partition(":")
        if colon and password:
            found += [password, unquote(password)]
        elif not colon and _TOKENISH.fullmatch(user):
            found += [user, unquote(user)]
    else:
        host = netloc
    for piece in re.split(r"[/:]", host) + parts.path.split("/"):
        if _TOKENISH.fullmatch(piece):
            found.append(piece)
    for key, value in parse_qsl(parts.query, keep_blank_values=False):
        if _SENSITIVE_KEY.search(key) and value:
            found.append(value)
    raw_query = parts.query
    for item in raw_query.split("&"):
        key, eq, value = item.partition("=")
        if eq and value and _SENSITIVE_KEY.search(key):
            found.append(value)
    # longest first, so a secret containing another is replaced whole
    return sorted({s for s in found if len(s) >= 3}, key=len, reverse=True)


def redact(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, MASK)
    return text


def mask_url(url: str) -> str:
    """The URL as it may be shown: mailto://user:***@host, slack://***/***/***."""
    return redact(url, secrets_of(url))
