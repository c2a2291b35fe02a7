"""The dashboard's token and where it may listen.

The token lives in the home as `web.token` (0600, created and read without following a link).
Actions (run, stop, pause, resume, rerun) need it in the `X-Token` header (or an
`Authorization: Bearer` header, or a `token` form field): never in a cookie alone, so another
site cannot make a browser post one. On a bind other than loopback every request needs it, or,
for reads, the cookie /login sets: not the token but a read credential derived from it
(read_credential), so a leaked cookie lets one read the dashboard, never act.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import secrets
import stat

from cron_scheduler import safefs
from cron_scheduler.errors import InvalidOption, OperationalError
from cron_scheduler.home import Home

TOKEN_FILE = "web.token"
READ_PURPOSE = b"cron-scheduler web: read-only cookie v1"
DEFAULT_BIND = "127.0.0.1:8765"


def parse_bind(text: str) -> tuple[str, int]:
    """'HOST:PORT' (IPv6 as [::1]:PORT) -> (host, port); InvalidOption if malformed."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise InvalidOption(f"invalid --bind {text!r}: use HOST:PORT, such as {DEFAULT_BIND}")
    return host.strip("[]"), int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: where it points is not ours to trust


def check_bind(host: str, use_token: bool) -> None:
    """A bind other than loopback serves the network: refused without the token."""
    if not is_loopback(host) and not use_token:
        raise InvalidOption(f"refusing to listen on {host} without a token: a bind other than loopback "
                            "needs the token for every request (drop --no-token)")


def token(home: Home, create: bool = True) -> str | None:
    """The home's token, created (0600, never through a link) if missing and `create`."""
    home.ensure()
    try:
        with safefs.read_file(home.root, TOKEN_FILE) as fh:
            mode = os.fstat(fh.fileno()).st_mode
            if stat.S_IMODE(mode) & 0o077:
                raise OperationalError(f"refusing {home.root / TOKEN_FILE}: readable by group or others "
                                       f"(mode {stat.S_IMODE(mode):o}; fix with chmod 600)")
            value = fh.read().decode("ascii", "replace").strip()
        if value:
            return value
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise OperationalError(f"cannot read {home.root / TOKEN_FILE}: {exc.strerror or exc}") from None
    if not create:
        return None
    value = secrets.token_urlsafe(32)
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    try:
        fd = safefs.open_file(home.root, TOKEN_FILE, flags, 0o600)
        with os.fdopen(fd, "w") as fh:
            os.fchmod(fh.fileno(), 0o600)
            fh.write(value + "\n")
    except OSError as exc:
        raise OperationalError(f"cannot write {home.root / TOKEN_FILE}: {exc.strerror or exc}") from None
    return value


def presented(headers, form: dict | None = None) -> str | None:
    """The token a request carries in a header (or a form field), not in a cookie."""
    value = headers.get("x-token")
    if not value:
        auth = headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            value = auth[7:].strip()
    if not value and form:
        value = form.get("token")
    return value or None


def read_credential(token: str) -> str:
    """The /login cookie's value: HMAC-SHA256 of the token for the read purpose. It proves the
    token was known, and the token cannot be computed back from it; a new web.token voids it."""
    return hmac.new(token.encode(), READ_PURPOSE, hashlib.sha256).hexdigest()


def matches(expected: str | None, given: str | None) -> bool:
    return bool(expected and given) and hmac.compare_digest(expected.encode(), given.encode())
