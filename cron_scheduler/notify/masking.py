"""Secrets in channel URLs: masked for display, and redacted from any text (error messages,
Apprise's log lines) before it reaches scheduler.log, the alerts table or the CLI.

Masking goes by rule over the URL's parts, not by what Apprise makes of the URL (its short
forms put tokens where a host or a path would be: `slack://A/B/C/#ch`, `pushover://USER@TOKEN`,
`tgram://BOT:TOKEN/CHAT`). What is shown keeps the channel recognisable, everything else is
masked:

- the scheme;
- a user name when a password follows it (`mailto://alerts:***@host`); a user alone is a token
  (`pushover://***@***`, `ntfy://***@host`), except for mail, where it is the login;
- the host when it looks like one (a dotted name, an IP address, a name with a port, a plain
  lowercase word); else it is a token (`slack://***/...`, `tgram://***/...`);
- path parts that are plain lowercase words (`/services`, `/alerts`) or channel and user names
  (`#ops`, `@alice`); every other part (ids, tokens, keys) is masked;
- query values, unless their key sounds secret (token, key, pass, secret, auth, hook, ...) or
  the value looks like a token (16 or more letters, digits, `-`, `_`);
- the fragment (Slack's and Matrix's `#channel`).
"""

from __future__ import annotations

import re
from urllib.parse import quote, unquote

MASK = "***"
MAIL_SCHEMES = frozenset({"mailto", "mailtos"})
_URL = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<netloc>[^/?#]*)(?P<path>[^?#]*)"
                  r"(?:\?(?P<query>[^#]*))?(?P<fragment>#.*)?", re.S)
_HOST = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+)(:\d+)?|[A-Za-z0-9-]+:\d+")
_WORD = re.compile(r"[a-z][a-z_-]{0,19}")
_SENSITIVE_KEY = re.compile(r"pass|pw|token|key|secret|auth|sig|hook|code|cred|bearer|session|private|cookie|jwt",
                            re.I)
_TOKENISH = re.compile(r"[A-Za-z0-9_\-]{16,}")
SHORTEST = 3  # secrets shorter than this are masked in URLs but not hunted for in free text


def _pieces(url: str) -> list[tuple[str, bool]]:
    """The URL cut into (text, is_secret) pieces that join back into the URL."""
    match = _URL.fullmatch(url)
    if match is None:
        return [(url, True)]
    scheme, netloc, path, query, fragment = match.group("scheme", "netloc", "path", "query", "fragment")
    pieces: list[tuple[str, bool]] = [(scheme, False)]
    userinfo, at, host = netloc.rpartition("@")
    if at:
        user, colon, password = userinfo.partition(":")
        if colon:
            pieces += [(user, False), (":", False), (password, True)]
        else:
            pieces.append((user, scheme[:-3].lower() not in MAIL_SCHEMES))
        pieces.append(("@", False))
    pieces.append((host, bool(host) and not (_HOST.fullmatch(host) or _WORD.fullmatch(host))))
    for number, part in enumerate(path.split("/")):
        if number:
            pieces.append(("/", False))
        pieces.append((part, bool(part) and not _shown_path_part(unquote(part))))
    if query is not None:
        pieces.append(("?", False))
        for number, item in enumerate(query.split("&")):
            if number:
                pieces.append(("&", False))
            key, eq, value = item.partition("=")
            secret = bool(value) and (bool(_SENSITIVE_KEY.search(key)) or bool(_TOKENISH.fullmatch(unquote(value))))
            pieces += [(key + eq, not eq and bool(_TOKENISH.fullmatch(key))), (value, secret)]
    if fragment:
        pieces.append((fragment, False))
    return pieces


def _shown_path_part(part: str) -> bool:
    return bool(_WORD.fullmatch(part)) or part[:1] in ("#", "@")


def mask_url(url: str) -> str:
    """The URL as it may be shown: mailto://user:***@host, slack://***/***/***/#ops."""
    return "".join(MASK if secret else text for text, secret in _pieces(url))


def secrets_of(url: str) -> list[str]:
    """The parts of a channel URL that must never be shown, as written, decoded and cut at
    `:` (a Telegram bot id and token, which a message may name apart), longest first (so that
    a secret containing another is replaced whole)."""
    found = set()
    for text, secret in _pieces(url):
        if secret:
            found.update({text, unquote(text), quote(unquote(text), safe=""), *unquote(text).split(":")})
    return sorted((s for s in found if len(s) >= SHORTEST), key=len, reverse=True)


def redact(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, MASK)
    return text
