"""A schedule in words for the dashboard: `every day at 02:30 Europe/Berlin`.

Common shapes get a sentence; anything else is shown as its cron fields (never a wrong guess).
"""

from __future__ import annotations

import re

from cron_scheduler.humanize import span

DAYS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]
DAY_NAMES = {d[:3].lower(): i for i, d in enumerate(DAYS)}
MACROS = {"@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *",
          "@weekly": "0 0 * * 0", "@monthly": "0 0 1 * *", "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *"}


def in_words(expr: str, zone: str | None = None, depends_on: tuple[str, ...] | list[str] = ()) -> str:
    text = " ".join(expr.split())
    low = text.lower()
    if low == "@after":
        return "after " + (", ".join(depends_on) if depends_on else "its dependencies") + (
            " succeeds" if len(depends_on) == 1 else " succeed")
    if low == "@reboot":
        return "each time the daemon starts"
    if low == "@once":
        return "once, at its start time"
    if low.startswith("@every"):
        rest = text[6:].strip()
        return f"every {rest}"
    words = _cron(MACROS.get(low, text))
    if words is None:
        return f"cron {text}" + (f" ({zone})" if zone else "")
    return words + (f" {zone}" if zone and re.search(r"at \d\d:\d\d", words) else "")


def _num(field: str) -> int | None:
    return int(field) if field.isdigit() else None


def _cron(cron: str) -> str | None:
    fields = cron.split()
    if len(fields) == 6:
        if fields[0] != "0":
            sec = _step(fields[0])
            if sec and fields[1:] == ["*"] * 5:
                return "every second" if sec == 1 else f"every {span(sec)}"
            return None
        fields = fields[1:]
    if len(fields) != 5:
        return None
    minute, hour, dom, month, dow = fields
    if [hour, dom, month, dow] == ["*"] * 4:
        step = _step(minute)
        if step:
            return "every minute" if step == 1 else f"every {step} minutes"
        if _num(minute) is not None:
            return f"every hour at :{int(minute):02d}"
        return None
    m, h = _num(minute), _num(hour)
    if m is None:
        return None
    if h is None:
        step = _step(hour)
        if step and [dom, month, dow] == ["*"] * 3:
            return f"every {step} hours at :{m:02d}"
        return None
    at = f"at {h:02d}:{m:02d}"
    if [dom, month] == ["*", "*"]:
        days = _days(dow)
        return None if days is None else f"{days} {at}"
    if month == "*" and dow == "*" and _num(dom) is not None:
        return f"on day {int(dom)} of every month {at}"
    if dow == "*" and _num(dom) is not None and _num(month) is not None:
        return f"every year on {int(dom)}/{int(month)} {at}"
    return None


def _step(field: str) -> int | None:
    if field == "*":
        return 1
    if field.startswith("*/") and field[2:].isdigit() and int(field[2:]) > 0:
        return int(field[2:])
    return None


def _days(dow: str) -> str | None:
    if dow == "*":
        return "every day"
    if dow in ("1-5", "mon-fri", "MON-FRI"):
        return "on weekdays"
    if dow in ("0,6", "6,0", "6,7", "sat,sun", "SAT,SUN"):
        return "on weekends"
    names = []
    for part in dow.split(","):
        key = part.lower()
        index = int(key) % 7 if key.isdigit() and int(key) <= 7 else DAY_NAMES.get(key)
        if index is None:
            return None
        names.append(DAYS[index])
    return "every " + ", ".join(names)
