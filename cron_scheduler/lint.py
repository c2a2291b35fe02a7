"""Warnings about job definitions that are legal but probably not what was meant.

They never stop a write: `add`/`update` save the job, print each warning on stderr and exit 0.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Collection
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cron_scheduler.models import Job, parse_iso

FAR_AWAY = timedelta(days=365)


def job_warnings(job: Job, opts: dict[str, Any], next_run: datetime | None, now: datetime,
                 channels: Collection[str] = ()) -> list[str]:
    """`opts`: the raw options given (None = not given); `next_run`: the job's next fire time;
    `channels`: the alert channels config.toml defines now."""
    warnings = []
    unknown = [name for name in job.notify_to if name not in channels]
    if unknown:
        defined = ", ".join(sorted(channels)) or "none yet"
        warnings.append(f"--notify-to names {', '.join(map(repr, unknown))}, not a channel of config.toml "
                        f"(it has: {defined}): alerts meant for it go nowhere until it is added")
    end_at = parse_iso(job.end_at)
    if job.enabled and end_at is not None and end_at <= now:
        warnings.append(f"--end-at {job.end_at} is already past: the job will never run")
    if opts.get("timeout") is not None and not opts["timeout"].strip():
        warnings.append("an empty --interval removes the run's time cap; say --interval none if that is meant")
    shebang = _other_interpreter(job)
    if shebang:
        warnings.append(f"{job.command[0]} starts with '#!{shebang}', but a .py script runs with the "
                        f"daemon's Python ({sys.executable}), not with that interpreter")
    if next_run is not None and next_run - now > FAR_AWAY:
        warnings.append(f"the job's next run is more than a year away ({next_run.date().isoformat()})")
    return warnings


def _other_interpreter(job: Job) -> str | None:
    """The shebang of a .py script when it names something other than a Python 3 (the script
    runs with the daemon's Python whatever its first line says)."""
    if job.shell or not job.command or not job.command[0].endswith(".py"):
        return None
    try:
        with open(Path(job.cwd or os.getcwd(), job.command[0]), "rb") as fh:
            first = fh.readline(256)
    except OSError:
        return None
    if not first.startswith(b"#!"):
        return None
    line = first[2:].decode("utf-8", "replace").strip()
    words = line.split()
    if not words:
        return None
    name = Path(words[0]).name
    if name == "env":
        name = next((Path(w).name for w in words[1:] if not w.startswith("-") and "=" not in w), name)
    ours = f"python{sys.version_info.major}.{sys.version_info.minor}"
    return None if name in ("python", "python3", ours) else line
