"""End-to-end: waves, dependencies, retries, overlap and catch-up policies, the worker limit
and priorities, with the real daemon and real child processes (issue: workflows).

Order and concurrency are judged from the recorded started_at/finished_at of each run.
"""

from __future__ import annotations

import re
import sqlite3
import time
from datetime import datetime, timedelta, timezone

import pytest

from harness import ts

FINAL = ("succeeded", "failed", "timeout", "killed", "skipped", "blocked", "missed", "interrupted")

SLEEP = """
import sys, time
time.sleep(float(sys.argv[1]))
"""


def final(runs):
    return all(r["status"] in FINAL for r in runs)


def by_job(runs):
    out: dict[str, list[dict]] = {}
    for r in runs:
        out.setdefault(r["job_id"], []).append(r)
    return out


def max_overlap(runs) -> int:
    """Most runs running at one instant (an end at t comes before a start at t)."""
    events = sorted([(ts(r["started_at"]), 1) for r in runs] + [(ts(r["finished_at"]), -1) for r in runs])
    level = peak = 0
    for _, step in events:
        level += step
        peak = max(peak, level)
    return peak


def overlapping(a, b) -> bool:
    return ts(a["started_at"]) < ts(b["finished_at"]) and ts(b["started_at"]) < ts(a["finished_at"])


# --- dependencies --------------------------------------------------------------------------

def test_chain_runs_in_order(e2e, daemon):
    sleep = e2e.script("sleep.py", SLEEP)
    e2e.create_cron("A", "@after", sleep, "0.3")
    e2e.create_cron("B", "--depends-on", "A", "@after", sleep, "0.2")
    e2e.create_cron("C", "--depends-on", "B", "@after", sleep, "0.1")
    daemon()
    ids = e2e.run_ids(e2e.cli("run", "A"))
    assert len(ids) == 3  # the wave: A and, waiting for it, B and C
    runs = e2e.wait_history("the chain to finish",
                            lambda runs: runs if len(runs) == 3 and final(runs) else None)
    jobs = {r["job_id"]: r for r in runs}
    assert {r["status"] for r in runs} == {"succeeded"}
    assert jobs["A"]["trigger"] == "manual"
    assert jobs["B"]["trigger"] == jobs["C"]["trigger"] == "dependency"
    assert len({r["wave"] for r in runs}) == 1
    assert ts(jobs["B"]["started_at"]) >= ts(jobs["A"]["finished_at"])
    assert ts(jobs["C"]["started_at"]) >= ts(jobs["B"]["finished_at"])


DAG = {
    "job_1": ["job_2", "job_4"],
    "job_2": ["job_3", "job_7"],
    "job_4": ["job_5", "job_6", "job_9"],
    "job_5": ["job_8", "job_9"],
    "job_6": ["job_7"],
    "job_7": ["job_8"],
}


@pytest.mark.slow
def test_nine_job_dag_runs_each_job_once_after_its_upstreams(e2e, daemon):
    sleep = e2e.script("sleep.py", SLEEP)
    # create upstreams first: a dependency must exist when it is written
    for n in (3, 8, 9, 7, 6, 5, 4, 2, 1):
        job = f"job_{n}"
        deps = ["--depends-on", ",".join(DAG[job])] if job in DAG else []
        e2e.create_cron(job, *deps, "@after", sleep, f"{0.1 * n:.1f}")
    daemon()
    result = e2e.cli("run", "job_3", "job_8", "job_9", "--wait", "--timeout", "60")
    assert len(e2e.run_ids(result)) == 9
    runs = e2e.history()
    jobs = by_job(runs)
    assert sorted(jobs) == [f"job_{n}" for n in range(1, 10)]
    assert all(len(v) == 1 for v in jobs.values()), {k: len(v) for k, v in jobs.items()}
    assert {r["status"] for r in runs} == {"succeeded"}
    assert len({r["wave"] for r in runs}) == 1
    for job, deps in DAG.items():
        run = jobs[job][0]
        for dep in deps:
            up = jobs[dep][0]
            assert ts(run["started_at"]) >= ts(up["finished_at"]), (job, dep)
    for root in ("job_3", "job_8", "job_9"):
        assert jobs[root][0]["trigger"] == "manual"
    for n in (1, 2, 4, 5, 6, 7):
        assert jobs[f"job_{n}"][0]["trigger"] == "dependency"
    for n in range(1, 10):
        assert f"run {jobs[f'job_{n}'][0]['run_id']} job_{n}: succeeded" in result.stdout


def test_failed_upstream_blocks_then_rerun_releases_downstream_once(e2e, daemon):
    fixed = e2e.tmp / "fixed"
    up = e2e.script("up.py", f"""
        import os, sys
        sys.exit(0 if os.path.exists({str(fixed)!r}) else 4)
    """)
    e2e.create_cron("up", "@after", up)
    e2e.create_cron("down", "--depends-on", "up", "@after", e2e.script("down.py", "print('down')\n"))
    e2e.create_cron("further", "--depends-on", "down", "@after", e2e.script("f.py", "print('f')\n"))
    daemon()
    e2e.cli("run", "up")
    runs = e2e.wait_history("the wave to end", lambda runs: runs if len(runs) == 3 and final(runs) else None)
    jobs = {r["job_id"]: r for r in runs}
    failed = jobs["up"]
    assert failed["status"] == "failed" and failed["exit_code"] == 4
    for job in ("down", "further"):
        assert jobs[job]["status"] == "blocked"
        assert "up" in jobs[job]["reason"] and str(failed["run_id"]) in jobs[job]["reason"], jobs[job]

    fixed.touch()  # fix the script
    rerun = e2e.run_ids(e2e.cli("rerun", str(failed["run_id"])))
    assert len(rerun) == 1
    runs = e2e.wait_history("the rerun and the released jobs",
                            lambda runs: runs if len(runs) == 6 and final(runs) else None)
    jobs = by_job(runs)
    assert [(r["status"], r["trigger"]) for r in jobs["up"]] == [("failed", "manual"), ("succeeded", "rerun")]
    assert jobs["up"][1]["run_id"] == rerun[0]
    for job in ("down", "further"):
        assert [r["status"] for r in jobs[job]] == ["blocked", "succeeded"], jobs[job]
    assert len({r["wave"] for r in runs}) == 1
    assert ts(jobs["down"][1]["started_at"]) >= ts(jobs["up"][1]["finished_at"])
    assert ts(jobs["further"][1]["started_at"]) >= ts(jobs["down"][1]["finished_at"])


def test_blocked_once_when_a_sibling_upstream_succeeds_later(e2e, daemon):
    """Regression: C depends on A and B; A fails, then B succeeds. B's success released C,
    which was blocked again by A: two blocked records (and alerts) for one failure."""
    fixed = e2e.tmp / "fixed"
    e2e.create_cron("A", "@after", e2e.script("a.py", f"""
        import os, sys
        sys.exit(0 if os.path.exists({str(fixed)!r}) else 1)
    """))
    gate = e2e.tmp / "a_failed"
    e2e.create_cron("B", "@after", e2e.script("b.py", f"""
        import os, time
        while not os.path.exists({str(gate)!r}):
            time.sleep(0.05)
    """))
    e2e.create_cron("C", "--depends-on", "A,B", "@after", e2e.script("c.py", "pass\n"))
    daemon()
    e2e.cli("run", "A", "B")
    e2e.wait_status("C", "blocked")
    gate.touch()  # B succeeds only after C was blocked by A
    runs = e2e.wait_history("B to succeed and the wave to end",
                            lambda runs: runs if final(runs) and any(
                                r["job_id"] == "B" and r["status"] == "succeeded" for r in runs) else None)
    jobs = by_job(runs)
    assert [r["status"] for r in jobs["C"]] == ["blocked"], jobs["C"]
    assert "blocked by A run" in jobs["C"][0]["reason"]

    fixed.touch()
    e2e.cli("rerun", str(jobs["A"][0]["run_id"]))
    runs = e2e.wait_history("C to run after the rerun",
                            lambda runs: runs if final(runs) and any(
                                r["job_id"] == "C" and r["status"] == "succeeded" for r in runs) else None)
    jobs = by_job(runs)
    assert [r["status"] for r in jobs["C"]] == ["blocked", "succeeded"]
    assert [r["status"] for r in jobs["B"]] == ["succeeded"]


def test_retry_succeeds_on_the_second_attempt(e2e, daemon):
    marker = e2e.tmp / "tried"
    script = e2e.script("flaky.py", f"""
        import os, sys
        if not os.path.exists({str(marker)!r}):
            open({str(marker)!r}, "w").close()
            sys.exit(1)
    """)
    e2e.create_cron("flaky", "--retries", "2", "--retry-delay", "1s", "@after", script)
    e2e.create_cron("after_flaky", "--depends-on", "flaky", "@after", e2e.script("ok.py", "pass\n"))
    daemon()
    e2e.cli("run", "flaky")
    runs = e2e.wait_history("the retry", lambda runs: runs if len(runs) == 3 and final(runs) else None)
    jobs = by_job(runs)
    flaky = jobs["flaky"]
    assert [(r["attempt"], r["status"], r["trigger"]) for r in flaky] == [
        (1, "failed", "manual"), (2, "succeeded", "retry")]
    assert ts(flaky[1]["started_at"]) - ts(flaky[0]["finished_at"]) >= 0.9  # the retry delay
    assert flaky[0]["wave"] == flaky[1]["wave"]
    # retries happen before blocking: the downstream job waited and ran once
    assert [r["status"] for r in jobs["after_flaky"]] == ["succeeded"]


# --- overlap policies ------------------------------------------------------------------------

def overlap_job(e2e, policy: str) -> None:
    e2e.create_cron("slow", "--overlap", policy, "* * * * * *", e2e.script("sleep.py", SLEEP), "2.5")


@pytest.mark.slow
def test_overlap_skip(e2e, daemon):
    overlap_job(e2e, "skip")
    daemon()
    skipped = e2e.wait_status("slow", "skipped")[0]
    m = re.fullmatch(r"previous run (\d+) still running", skipped["reason"])
    assert m, skipped["reason"]
    runs = e2e.wait_history("the run that caused the skip to end",
                            lambda runs: [r for r in runs if r["run_id"] == int(m.group(1))
                                          and r["status"] == "succeeded"], "slow")
    busy = runs[0]
    # the skip was decided while that run was running
    assert ts(busy["started_at"]) <= ts(skipped["queued_at"]) <= ts(busy["finished_at"])
    assert skipped["trigger"] == "schedule"
    done = [r for r in e2e.history("slow") if r["status"] == "succeeded"]
    assert max_overlap(done) == 1


@pytest.mark.slow
def test_overlap_allow(e2e, daemon):
    overlap_job(e2e, "allow")
    daemon()

    def two_overlapping(runs):
        done = [r for r in runs if r["status"] == "succeeded"]
        return [(a, b) for i, a in enumerate(done) for b in done[i + 1:] if overlapping(a, b)]

    e2e.wait_history("two runs overlapping in time", two_overlapping, "slow")
    assert not [r for r in e2e.history("slow") if r["status"] == "skipped"]


@pytest.mark.slow
def test_overlap_queue(e2e, daemon):
    overlap_job(e2e, "queue")
    daemon()

    def queued_and_done(runs):
        return [r for r in runs if r["status"] == "succeeded" and "queued behind run" in (r["reason"] or "")]

    queued = e2e.wait_history("a queued run to run", queued_and_done, "slow")[0]
    ahead = int(re.search(r"queued behind run (\d+)", queued["reason"]).group(1))
    runs = e2e.history("slow")
    first = [r for r in runs if r["run_id"] == ahead][0]
    assert ts(queued["started_at"]) >= ts(first["finished_at"])
    assert max_overlap([r for r in runs if r["status"] == "succeeded"]) == 1
    # slots arriving while one is already queued are skipped, not piled up
    skipped = [r for r in runs if r["status"] == "skipped"]
    assert skipped and all("already queued" in r["reason"] for r in skipped)


@pytest.mark.slow
def test_overlap_replace(e2e, daemon):
    overlap_job(e2e, "replace")
    daemon()
    killed = e2e.wait_status("slow", "killed")[0]
    assert "replaced by a newer run" in killed["reason"]
    runs = e2e.wait_history("the replacing run to start",
                            lambda runs: [r for r in runs if r["run_id"] > killed["run_id"]
                                          and r["started_at"]], "slow")
    assert ts(runs[0]["started_at"]) >= ts(killed["finished_at"])
    assert not [r for r in e2e.history("slow") if r["status"] == "skipped"]


# --- catch-up after downtime -----------------------------------------------------------------

@pytest.mark.slow
def test_catch_up_policies_after_downtime(e2e, daemon):
    ok = e2e.script("ok.py", "print('ok')\n")
    for policy in ("latest", "all", "none"):
        e2e.create_cron(f"cu_{policy}", "--catch-up", policy, "* * * * *", ok)
    d = daemon()
    assert d.terminate() == 0
    # stay clear of a minute boundary between rewriting the cursors and the daemon's first tick
    while not 2 <= datetime.now(timezone.utc).second < 50:
        time.sleep(0.5)
    now = datetime.now(timezone.utc).replace(second=0, microsecond=0)
    # slots cursor .. now fell while no daemon ran (6 slots, `now` too: it came a few seconds
    # before the restart): every one of them follows catch_up, however short the outage
    cursor = now - timedelta(minutes=5)
    with sqlite3.connect(e2e.home / "state.db") as db:
        n = db.execute("UPDATE job_state SET next_slot = ? WHERE job_id LIKE 'cu_%'",
                       (cursor.isoformat(),)).rowcount
    assert n == 3
    daemon()
    late = [(cursor + timedelta(minutes=i)).isoformat() for i in range(6)]

    def settled(runs):
        jobs = by_job(runs)
        if len(jobs) < 3 or not final(runs):
            return None
        if len([r for r in jobs["cu_all"] if r["trigger"] == "catch-up" and r["status"] == "succeeded"]) < 6:
            return None
        if not [r for r in jobs["cu_latest"] if r["trigger"] == "catch-up" and r["status"] == "succeeded"]:
            return None
        if not [r for r in jobs["cu_none"] if r["status"] == "missed"]:
            return None
        return jobs

    jobs = e2e.wait_history("catch-up to settle", settled)

    latest = jobs["cu_latest"]
    catch = [r for r in latest if r["trigger"] == "catch-up"]
    missed = [r for r in latest if r["status"] == "missed"]
    assert [r["scheduled_for"] for r in catch] == [late[-1]]
    assert len(missed) == 1 and missed[0]["missed_count"] == 5
    assert missed[0]["scheduled_for"] == late[0] and missed[0]["missed_until"] == late[4]

    every = jobs["cu_all"]
    assert sorted(r["scheduled_for"] for r in every if r["trigger"] == "catch-up") == late
    assert all(r["status"] == "succeeded" for r in every if r["trigger"] == "catch-up")
    assert not [r for r in every if r["status"] == "missed"]

    none = jobs["cu_none"]
    missed = [r for r in none if r["status"] == "missed"]
    assert len(missed) == 1 and missed[0]["missed_count"] == 6
    assert missed[0]["scheduled_for"] == late[0] and missed[0]["missed_until"] == late[-1]
    assert not [r for r in none if r["trigger"] == "catch-up"]
    # no slot of the outage ran as an on-time schedule run, whatever the policy
    for runs in jobs.values():
        assert not [r for r in runs if r["trigger"] == "schedule" and r["status"] != "missed"
                    and r["scheduled_for"] in late], runs


# --- the worker limit and priorities --------------------------------------------------------

@pytest.mark.slow
def test_worker_limit_is_never_exceeded(e2e, daemon):
    sleep = e2e.script("sleep.py", SLEEP)
    ids = [f"w{i:02d}" for i in range(12)]
    for job in ids:
        e2e.create_cron(job, "@after", sleep, "1")
    daemon("--max-workers", "10")
    result = e2e.cli("run", *ids, "--wait", "--timeout", "60")
    assert len(e2e.run_ids(result)) == 12
    runs = e2e.history()
    assert len(runs) == 12 and {r["status"] for r in runs} == {"succeeded"}
    assert max_overlap(runs) == 10


def test_priority_orders_queued_runs(e2e, daemon):
    gate = e2e.tmp / "go"
    blocker = e2e.script("blocker.py", f"""
        import os, time
        while not os.path.exists({str(gate)!r}):
            time.sleep(0.05)
    """)
    ok = e2e.script("ok.py", "pass\n")
    e2e.create_cron("blocker", "@after", blocker)
    for prio in (1, 5, 3):
        e2e.create_cron(f"p{prio}", "--priority", str(prio), "@after", ok)
    daemon("--max-workers", "1")
    e2e.cli("run", "blocker")
    e2e.wait_status("blocker", "running")
    e2e.cli("run", "p1", "p5", "p3")
    e2e.wait_history("three queued runs", lambda runs: len([r for r in runs if r["status"] == "queued"]) == 3)
    gate.touch()
    runs = e2e.wait_history("every run to end", lambda runs: runs if len(runs) == 4 and final(runs) else None)
    assert {r["status"] for r in runs} == {"succeeded"}
    order = [r["job_id"] for r in sorted(runs, key=lambda r: ts(r["started_at"]))]
    assert order == ["blocker", "p5", "p3", "p1"]
    assert max_overlap(runs) == 1
