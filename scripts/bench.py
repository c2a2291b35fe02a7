#!/usr/bin/env python3
"""Benchmarks for the performance goals; each figure is also given as a ratio to a baseline
measured in the same run, so results compare across machines.

    python scripts/bench.py            # all scenarios (about 3 minutes)
    python scripts/bench.py cli idle   # some of: cli idle lag burst
    python scripts/bench.py --quick    # shorter idle and lag windows

Scenarios:
  cli    10,000 jobs in the store: `create_cron` end to end, `list`, `create_cron --help`
         (baseline: `python -c pass`).
  idle   10,000 jobs, none due: daemon ready time, CPU over the idle window, RSS.
  lag    100 jobs every second: missed, duplicated, start lag from slot to the child's first
         instruction (a tiny C probe when gcc exists, else /bin/date).
  burst  1,000 runs due at one instant on a pool of 10, against 1,000
         subprocess.run(["true"]) calls on 10 threads (the baseline); also the floor of a
         one-thread supervisor (bare posix_spawn + wait4, no bookkeeping) for context.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from cron_scheduler.home import Home  # noqa: E402
from cron_scheduler.models import Job, to_iso  # noqa: E402
from cron_scheduler.store import Store  # noqa: E402

PY = sys.executable
BIN = Path(PY).parent


def wall(cmd: list[str], env=None, repeat: int = 5) -> float:
    """Median wall time of a command, in seconds."""
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def fill_store(home: Home, count: int, schedule_of, command=("/bin/true",)) -> None:
    created = to_iso(datetime.now(timezone.utc))
    with Store(home).transaction() as jobs:
        for i in range(count):
            job_id = f"job{i:05d}"
            jobs[job_id] = Job(id=job_id, schedule=schedule_of(i), command=tuple(command), created_at=created)


def realistic(i: int) -> str:
    """A mix like a real crontab: fixed daily/weekly times, steps, hashed fields."""
    kind = i % 4
    if kind == 0:
        return f"{i % 60} {(i // 60) % 24} * * *"
    if kind == 1:
        return f"{i % 60} {i % 24} * * {i % 7}"
    if kind == 2:
        return f"*/{5 + i % 25} * * * *"
    return "H H * * *"


def start_daemon(home: Home, *extra: str) -> tuple[subprocess.Popen, float]:
    """Start the daemon (its stderr discarded: an unread pipe would block it); the ready time
    is its "daemon started" log line's timestamp minus the launch time."""
    offset = home.log.stat().st_size if home.log.exists() else 0
    launched = time.time()
    proc = subprocess.Popen([PY, "-m", "cron_scheduler.scheduler", "--home", str(home.root), *extra],
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if home.log.exists():
            with open(home.log) as fh:
                fh.seek(offset)
                for line in fh:
                    if f"daemon started: pid {proc.pid}" in line:
                        return proc, datetime.fromisoformat(line.split()[0]).timestamp() - launched
        time.sleep(0.02)
    raise RuntimeError("daemon did not start")


def stop_daemon(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)


def cpu_seconds(pid: int) -> float:
    """CPU time of a process: /proc/PID/schedstat (nanoseconds) where the kernel has it, else
    utime + stime from /proc/PID/stat (10 ms ticks: too coarse for an idle daemon)."""
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0]) / 1e9
    except (OSError, ValueError, IndexError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


# --- scenarios -------------------------------------------------------------------------------

def bench_cli(tmp: Path, quick: bool) -> dict:
    home = Home(tmp / "cli").ensure()
    fill_store(home, 10000, realistic)
    env = dict(os.environ, CRON_SCHEDULER_HOME=str(home.root))
    base = wall([PY, "-c", "pass"])
    counter = iter(range(10**6))

    def add():
        n = next(counter)
        return wall([str(BIN / "create_cron"), f"new{n}", "--interval", "30", "*/5 * * * *", "/bin/true"],
                    env=env, repeat=1)
    add_time = statistics.median(add() for _ in range(5))
    list_time = wall([str(BIN / "cron-scheduler"), "list"], env=env)
    list_json = wall([str(BIN / "cron-scheduler"), "list", "--json"], env=env)
    help_time = wall([str(BIN / "create_cron"), "--help"], env=env)
    return {"python -c pass (baseline) ms": base * 1000,
            "create_cron with 10k jobs ms (goal <= 200)": add_time * 1000,
            "list with 10k jobs ms (goal <= 300)": list_time * 1000,
            "list --json with 10k jobs ms": list_json * 1000,
            "create_cron --help ms (goal <= 150)": help_time * 1000,
            "create_cron / baseline": add_time / base, "list / baseline": list_time / base}


def bench_idle(tmp: Path, quick: bool) -> dict:
    home = Home(tmp / "idle").ensure()
    # yearly jobs at varied times: none is due during the window
    fill_store(home, 10000, lambda i: f"{i % 60} {i % 24} {1 + i % 28} {1 + (datetime.now().month % 12)} *")
    window = 10 if quick else 60
    out = {}
    for label in ("first start", "restart"):
        proc, ready = start_daemon(home)
        out[f"ready after start, {label} s (goal <= 0.5)"] = ready
        if label == "restart":
            c0 = cpu_seconds(proc.pid)
            time.sleep(window)
            c1 = cpu_seconds(proc.pid)
            out[f"idle CPU % of a core over {window}s (goal <= 0.05)"] = 100 * (c1 - c0) / window
            out["RSS MiB (goal <= 45)"] = rss_mib(proc.pid)
        stop_daemon(proc)
    t = time.perf_counter()
    subprocess.run([PY, "-c", "import cron_scheduler.scheduler"], check=True)
    out["python import of the daemon module s (baseline)"] = time.perf_counter() - t
    return out


PROBE_C = r"""
#include <stdio.h>
#include <time.h>
int main(void){struct timespec t; clock_gettime(CLOCK_REALTIME,&t); printf("%ld.%09ld\n",(long)t.tv_sec,t.tv_nsec); return 0;}
"""


def probe_command(tmp: Path) -> list[str]:
    if shutil.which("gcc"):
        src = tmp / "probe.c"
        src.write_text(PROBE_C)
        subprocess.run(["gcc", "-O2", "-o", str(tmp / "probe"), str(src)], check=True)
        return [str(tmp / "probe")]
    return ["/bin/date", "+%s.%N"]


def bench_lag(tmp: Path, quick: bool) -> dict:
    home = Home(tmp / "lag").ensure()
    probe = probe_command(tmp)
    fill_store(home, 100, lambda i: "* * * * * *", command=probe)
    window = 20 if quick else 60
    proc, _ = start_daemon(home)
    time.sleep(window)
    stop_daemon(proc)
    db = sqlite3.connect(home.state_db)
    rows = db.execute("SELECT job_id, slot, status, output_path FROM runs WHERE trigger = 'schedule'").fetchall()
    lags, per_slot = [], {}
    for job_id, slot, status, path in rows:
        per_slot[(job_id, slot)] = per_slot.get((job_id, slot), 0) + 1
        if status == "succeeded" and path and Path(path).exists():
            text = Path(path).read_text().strip()
            if text:
                lags.append(float(text) - datetime.fromisoformat(slot).timestamp())
    slots = sorted({s for _, s in per_slot})
    full = slots[1:-1]  # the window cuts the first and the last second
    missed = sum(1 for j in range(100) for s in full if (f"job{j:05d}", s) not in per_slot)
    lags.sort()
    p = lambda q: lags[min(len(lags) - 1, int(q * len(lags)))] * 1000  # noqa: E731
    return {"runs": len(rows), "seconds covered": len(full), "missed (goal 0)": missed,
            "duplicated (goal 0)": sum(1 for c in per_slot.values() if c > 1),
            "start lag p50 ms": p(0.5), "start lag p99 ms (goal <= 35)": p(0.99), "start lag max ms": lags[-1] * 1000,
            "100 bare posix_spawn, one thread, 10 in flight ms (floor)": one_thread_floor(100) * 1000,
            "not succeeded": sum(1 for r in rows if r[2] != "succeeded")}


def one_thread_floor(n: int, width: int = 10) -> float:
    """n bare posix_spawn(true) from one thread, `width` in flight, reaped with wait4: what a
    one-thread supervisor could do with no bookkeeping at all (context for the ratios)."""
    true = shutil.which("true")
    t = time.perf_counter()
    started = live = 0
    while started < n or live:
        while live < width and started < n:
            os.posix_spawn(true, [true], os.environ, setsid=True)
            started, live = started + 1, live + 1
        os.wait4(-1, 0)
        live -= 1
    return time.perf_counter() - t


def bench_burst(tmp: Path, quick: bool) -> dict:
    n = 1000
    t = time.perf_counter()
    with ThreadPoolExecutor(10) as ex:
        list(ex.map(lambda _: subprocess.run(["true"]), range(n)))
    baseline = time.perf_counter() - t
    floor = one_thread_floor(n)
    home = Home(tmp / "burst").ensure()
    fill_store(home, n, lambda i: "@after", command=(shutil.which("true"),))
    proc, _ = start_daemon(home, "--max-workers", "10")
    env = dict(os.environ, CRON_SCHEDULER_HOME=str(home.root))
    ids = [f"job{i:05d}" for i in range(n)]
    subprocess.run([str(BIN / "cron-scheduler"), "run", "--wait", *ids], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    stop_daemon(proc)
    db = sqlite3.connect(home.state_db)
    first, last, ok = db.execute("SELECT MIN(queued_at), MAX(finished_at), SUM(status = 'succeeded') FROM runs").fetchone()
    took = (datetime.fromisoformat(last) - datetime.fromisoformat(first)).total_seconds()
    return {"1000 subprocess.run(true) on 10 threads s (baseline)": baseline,
            "1000 bare posix_spawn, one thread, 10 in flight s (floor)": floor,
            "1000 runs via daemon s": took, "succeeded": ok, "ratio (goal <= 1.3)": took / baseline,
            "daemon / floor": took / floor, "daemon ms per run over the floor": (took - floor) / n * 1000}


SCENARIOS = {"cli": bench_cli, "idle": bench_idle, "lag": bench_lag, "burst": bench_burst}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenarios", nargs="*", choices=[[], *SCENARIOS], default=[])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.scenarios or SCENARIOS:
            results[name] = SCENARIOS[name](Path(tmp), args.quick)
            if not args.json:
                print(f"[{name}]")
                for key, value in results[name].items():
                    print(f"  {key:<55} {value:.3f}" if isinstance(value, float) else f"  {key:<55} {value}")
    if args.json:
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
