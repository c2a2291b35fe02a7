"""Shell completion of job ids and run ids (click's `shell_complete=` callbacks).

Completion runs on every TAB: it reads jobs.json and state.db without waiting on a lock it does
not get at once, offers what it finds, and never fails loudly (any error: no candidates).
"""

from __future__ import annotations

from typing import Any

RECENT_RUNS = 50


def _home(ctx: Any):
    from cron_scheduler.home import Home
    root = ctx.find_root()
    return Home.at(ctx.params.get("home") or (root.params or {}).get("home"))


def job_ids(ctx: Any, param: Any, incomplete: str) -> list:
    from click.shell_completion import CompletionItem
    try:
        from cron_scheduler.jobs import JobService
        home = _home(ctx)
        if not home.jobs.exists():
            return []
        jobs = JobService(home).all()
        return [CompletionItem(j, help=jobs[j].schedule) for j in sorted(jobs) if j.startswith(incomplete)]
    except Exception:  # noqa: BLE001 - a TAB must never print a traceback
        return []


def run_ids(ctx: Any, param: Any, incomplete: str) -> list:
    """The newest runs, newest first, each with its job and status as help."""
    from click.shell_completion import CompletionItem
    try:
        from cron_scheduler.history import History
        home = _home(ctx)
        if not home.state_db.exists():
            return []
        with History.opened(home) as history:
            runs = history.runs(limit=RECENT_RUNS)
        return [CompletionItem(str(r.run_id), help=f"{r.job_id} {r.status}")
                for r in runs if str(r.run_id).startswith(incomplete)]
    except Exception:  # noqa: BLE001
        return []
