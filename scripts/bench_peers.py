#!/usr/bin/env python3
"""The peer schedulers of scripts/bench.py, run by the bench-only venv's Python (.bench-venv:
`schedule` and APScheduler 3.11, never a dependency of cron-scheduler):

    bench_peers.py schedule|apscheduler lag   JOBS SECONDS PROBE...   # JOBS jobs every second
    bench_peers.py schedule|apscheduler burst RUNS PROBE...           # RUNS runs due at once

Each run exec's PROBE (argv, no shell) from a pool of 10 threads and reads the CLOCK_REALTIME
stamp it prints. Prints one JSON object: the runs as [job, slot, stamp, finished] (epoch
seconds; slot = the instant the scheduler meant the run for) and the process's CPU seconds
(all threads, children excluded) over the measured window.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

POOL = 10


def probe(argv: list[str]) -> float:
    out = subprocess.run(argv, stdout=subprocess.PIPE, check=False).stdout
    return float(out.strip() or "nan")


def cpu() -> float:
    t = os.times()
    return t.user + t.system


def run_schedule(mode: str, count: int, seconds: float, argv: list[str]) -> dict:
    """`schedule`: run_pending in a loop; each job hands the probe to a 10-thread pool (the
    library's documented way to run jobs in parallel)."""
    import schedule

    runs: list[list] = []
    lock = threading.Lock()
    pool = ThreadPoolExecutor(POOL)

    def launch(name: str, job_ref: list) -> object:
        slot = job_ref[0].next_run.timestamp()  # still the intended time while the job runs

        def work():
            stamp = probe(argv)
            with lock:
                runs.append([name, slot, stamp, time.time()])
        pool.submit(work)
        return schedule.CancelJob if mode == "burst" else None

    for i in range(count):
        ref: list = []
        ref.append(schedule.every(1).seconds.do(launch, f"job{i:05d}", ref))
    c0, end = cpu(), time.time() + (seconds if mode == "lag" else 1e9)
    while time.time() < end and (mode == "lag" or schedule.jobs):
        schedule.run_pending()
        idle = schedule.idle_seconds()  # the library's loop, sleeping until the next job is due
        time.sleep(min(max(idle if idle is not None else 0.01, 0.0005), 0.5))
    pool.shutdown(wait=True)
    return {"runs": runs, "cpu": cpu() - c0}


def run_apscheduler(mode: str, count: int, seconds: float, argv: list[str]) -> dict:
    """APScheduler 3.11 BackgroundScheduler, its ThreadPoolExecutor of 10; lag: a cron trigger
    each second; burst: a date trigger at one instant. The slot is the event's scheduled time."""
    from datetime import datetime, timedelta, timezone

    from apscheduler.events import EVENT_JOB_EXECUTED, EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED
    from apscheduler.executors.pool import ThreadPoolExecutor as APPool
    from apscheduler.schedulers.background import BackgroundScheduler

    runs: list[list] = []
    skipped = [0]
    lock = threading.Lock()
    done = threading.Event()

    def listener(event):
        with lock:
            if event.code == EVENT_JOB_EXECUTED:
                runs.append([event.job_id, event.scheduled_run_time.timestamp(), event.retval, time.time()])
                if mode == "burst" and len(runs) == count:
                    done.set()
            else:
                skipped[0] += 1

    sched = BackgroundScheduler(executors={"default": APPool(POOL)}, timezone=timezone.utc,
                                job_defaults={"misfire_grace_time": 3600, "coalesce": False, "max_instances": 1})
    sched.add_listener(listener, EVENT_JOB_EXECUTED | EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES)
    at = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(seconds=2)
    for i in range(count):
        if mode == "lag":
            sched.add_job(probe, "cron", second="*", args=[argv], id=f"job{i:05d}")
        else:
            sched.add_job(probe, "date", run_date=at, args=[argv], id=f"job{i:05d}")
    sched.start()
    c0 = cpu()
    if mode == "lag":
        time.sleep(seconds)
    else:
        done.wait(timeout=600)
    c1 = cpu()
    sched.shutdown(wait=True)
    return {"runs": runs, "cpu": c1 - c0, "skipped": skipped[0]}


def main() -> None:
    peer, mode, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if mode == "lag":
        seconds, argv = float(sys.argv[4]), sys.argv[5:]
    else:
        seconds, argv = 0.0, sys.argv[4:]
    run = {"schedule": run_schedule, "apscheduler": run_apscheduler}[peer]
    print(json.dumps(run(mode, count, seconds, argv)))


if __name__ == "__main__":
    main()
