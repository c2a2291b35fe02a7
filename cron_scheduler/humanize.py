"""Text output for people: one time style, human sizes and spans, aligned tables, status colour.

Times for people are shown in the viewer's zone - $TZ when set to a valid IANA name, else the
home's config.toml `timezone`, else the machine's zone - as `2026-01-05 14:00:00 CET`, with a
relative time next to them where it helps (`in 3h`, `2m ago`). `--json` never goes through
here: it keeps ISO 8601 UTC.
"""

from __future__ import annotations

import os
import shutil
import sys
from datetime import datetime, tzinfo
from typing import Sequence, TextIO

from cron_scheduler import schedule

STATUS_COLOURS = {
    "succeeded": "32", "enabled": "32",                                # green
    "failed": "31", "timeout": "31", "killed": "31", "interrupted": "31", "blocked": "31",  # red
    "running": "36", "queued": "36", "waiting": "36",                  # cyan
    "skipped": "33", "missed": "33", "paused": "33",                   # yellow
    "completed": "2", "not run": "2",                                  # dim
}


# --- time ----------------------------------------------------------------------------------

def viewer_zone(default: str | None = None) -> tzinfo:
    """The zone times are shown in: $TZ (an IANA name), else `default` (config.toml), else the
    machine's zone. An unreadable $TZ is ignored, never an error."""
    name = os.environ.get("TZ", "").lstrip(":")
    if name:
        try:
            return schedule.get_zone(name)
        except Exception:  # noqa: BLE001 - a POSIX TZ string or a typo: fall back quietly
            pass
    try:
        return schedule.get_zone(default)
    except Exception:  # noqa: BLE001
        return schedule.local_zone()


def stamp(dt: datetime | None, zone: tzinfo) -> str:
    """`2026-01-05 14:00:00 CET`; fractions of a second (to the millisecond: what people read)
    only when there are some, e.g. `@every 1.5s` slots or the instant of a manual run."""
    if dt is None:
        return "-"
    local = dt.astimezone(zone)
    text = local.strftime("%Y-%m-%d %H:%M:%S")
    if local.microsecond >= 1000:
        text += f".{local.microsecond // 1000:03d}".rstrip("0")
    return f"{text} {local.tzname() or local.strftime('%z')}"


def relative(dt: datetime, now: datetime) -> str:
    """`in 3h`, `2m ago`, `now` (within a second): two units at most."""
    delta = (dt - now).total_seconds()
    if abs(delta) < 1:
        return "now"
    text = span(abs(delta), units=2, whole=True)
    return f"in {text}" if delta > 0 else f"{text} ago"


def when(dt: datetime | None, zone: tzinfo, now: datetime, short: bool = False) -> str:
    """The one time style: `2026-01-05 14:00:00 CET (in 3h)`, or `-`. `short` (a table that
    must fit a narrow terminal): `01-05 14:00 CET`, without the relative time, the year when it
    is this year's, the seconds when they are zero."""
    if dt is None:
        return "-"
    if not short:
        return f"{stamp(dt, zone)} ({relative(dt, now)})"
    local = dt.astimezone(zone)
    day = "%m-%d" if local.year == now.astimezone(zone).year else "%Y-%m-%d"
    clock = "%H:%M" if local.second == 0 and not local.microsecond else "%H:%M:%S"
    return f"{local.strftime(f'{day} {clock}')} {local.tzname() or local.strftime('%z')}"


def plural(count: int, word: str, words: str | None = None) -> str:
    """`1 job`, `4 jobs`, `0 jobs`."""
    return f"{count} {word if count == 1 else words or word + 's'}"


def one_line(text: str) -> str:
    """Text for a one-line cell: a newline (a shell command of several lines, a crontab `%`
    stdin) or other control character is shown escaped (`\\n`), never breaking the line."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


def short_command(text: str, room: int) -> str:
    """A command cut to `room` characters keeping what names it: the program's directory is
    dropped first (`…/backup.sh --target …`), then the end of its arguments."""
    if len(text) <= room:
        return text
    program, sep, rest = text.partition(" ")
    if "/" in program.rstrip("/"):
        text = "…/" + program.rstrip("/").rsplit("/", 1)[1] + sep + rest
    return text if len(text) <= room else text[:room - 1] + "…"


# --- spans and sizes --------------------------------------------------------------------------

def span(seconds: float | None, units: int = 2, whole: bool = False) -> str:
    """A duration for people: `0.42s`, `12s`, `1m05s`, `1h30m`, `3d4h` (at most `units` units).
    `whole` rounds to whole seconds."""
    if seconds is None:
        return "-"
    if not whole and seconds < 10 and seconds != int(seconds):
        return f"{seconds:.2f}s"
    left = int(round(seconds))
    pieces: list[tuple[int, str]] = []
    for unit, length in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if left >= length or pieces:
            value, left = divmod(left, length)
            pieces.append((value, unit))
        if len(pieces) == units:
            break
    while len(pieces) > 1 and pieces[-1][0] == 0:  # 2h, not 2h00m
        pieces.pop()
    if not pieces:
        return "0s"
    return "".join(f"{v:02d}{u}" if i and u in "ms" else f"{v}{u}" for i, (v, u) in enumerate(pieces))


def size(n: int | None) -> str:
    """`10 MiB`, `512 KiB`, `1.5 GiB`, `123 B`."""
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            break
        value /= 1024
    if unit == "B":
        return f"{int(value)} B"
    return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"


# --- terminal ---------------------------------------------------------------------------------

def use_colour(stream: TextIO | None = None) -> bool:
    """Colour only on a terminal, and never with NO_COLOR set (https://no-color.org)."""
    stream = stream or sys.stdout
    if os.environ.get("NO_COLOR"):
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def width(stream: TextIO | None = None) -> int | None:
    """The width to fit tables to: $COLUMNS, else the terminal's; None (no limit) in a pipe."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    stream = stream or sys.stdout
    try:
        if stream.isatty():
            return shutil.get_terminal_size().columns
    except (AttributeError, ValueError):
        pass
    return None


def paint(text: str, status: str, colour: bool) -> str:
    code = STATUS_COLOURS.get(status)
    return f"\x1b[{code}m{text}\x1b[0m" if colour and code else text


def fits(headers: Sequence[str], rows: Sequence[Sequence[str]], max_width: int | None) -> bool:
    """Whether the table is at most `max_width` wide without shortening anything."""
    if max_width is None:
        return True
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]
    return sum(widths) + 2 * (len(headers) - 1) <= max_width


def _cut(text: str, room: int) -> str:
    return text if len(text) <= room else text[:room - 1] + "…"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], *, flex: int = -1,
          max_width: int | None = None, show_headers: bool = True,
          status_col: int | None = None, colour: bool = False, shorten=_cut) -> list[str]:
    """Rows aligned in columns two spaces apart. Only column `flex` (the free text: a command, a
    reason) is shortened, by `shorten(text, room)` (default: cut with '…'), to fit `max_width`;
    ids, names, statuses and times are never cut. Column `status_col` is coloured by its value
    when `colour`."""
    all_rows = ([list(headers)] if show_headers else []) + [list(r) for r in rows]
    if not all_rows:
        return []
    n = len(headers)
    flex %= n
    widths = [max(len(r[i]) for r in all_rows) for i in range(n)]
    if max_width is not None:
        fixed = sum(w for i, w in enumerate(widths) if i != flex) + 2 * (n - 1)
        room = max(max_width - fixed, len(headers[flex]), 12)
        if widths[flex] > room:
            widths[flex] = room
            for r in all_rows:
                r[flex] = shorten(r[flex], room)
    lines = []
    for index, r in enumerate(all_rows):
        cells = []
        for i, cell in enumerate(r):
            padded = cell.ljust(widths[i]) if i < n - 1 else cell
            if i == status_col and (index > 0 or not show_headers):
                padded = paint(cell, cell, colour) + " " * (len(padded) - len(cell))
            cells.append(padded)
        lines.append("  ".join(cells).rstrip())
    return lines
