"""`python -m cron_scheduler.web --home H --bind HOST:PORT`: the dashboard as a process of its
own (the daemon's --web starts it this way)."""

from __future__ import annotations

import argparse
import sys

from cron_scheduler.errors import CronSchedulerError
from cron_scheduler.home import Home


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cron_scheduler.web")
    parser.add_argument("--home", required=True)
    parser.add_argument("--bind", default="127.0.0.1:8765")
    parser.add_argument("--read-only", action="store_true")
    args = parser.parse_args(argv)
    try:
        from cron_scheduler.web.app import serve
        serve(Home.at(args.home), args.bind, read_only=args.read_only)
    except CronSchedulerError as exc:
        print(f"cron-scheduler web: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except ImportError as exc:
        print(f"cron-scheduler web: error: the `web` extra is missing ({exc.name}): "
              "pip install 'cron-scheduler-server[web]'", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
