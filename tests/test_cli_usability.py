"""What a new user trips on, through the installed console scripts: unknown jobs and runs,
create_cron -h/--version, --max-workers bounds, huge numbers, and graph in both directions."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys

import pytest

from test_cli import CREATE_CRON, CRON_SCHEDULER, assert_one_line_error, run

HUGE = str(10 ** 30)  # beyond SQLite's 64-bit INTEGER


def requests_in(home) -> int:
    db = home / "state.db"
    if not db.exists():
        return 0
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT COUNT(*) FROM requests").fetchone()[0]
    finally:
        conn.close()


@pytest.fixture
def chain(home):
    """a -> b -> c, plus x feeding b, and d after c."""
    for args in (["a", "@daily"], ["x", "@daily"], ["b", "--depends-on", "a,x", "@after"],
                 ["c", "--depends-on", "b", "@after"], ["d", "--depends-on", "c", "@after"]):
        assert run(CREATE_CRON, *args, "/bin/true", home=home).returncode == 0
    return home


# --- unknown jobs and runs: exit 1, one line, nothing queued -----------------------------------

@pytest.mark.parametrize("args, fragment", [
    (["stop", "ghost"], "unknown job id: 'ghost'"),
    (["stop", "a", "ghost"], "unknown job id: 'ghost'"),
    (["stop", "--run", "999"], "unknown run id: 999"),
    (["stop", "--run", HUGE], f"unknown run id: {HUGE}"),
    (["history", "ghost"], "unknown job id: 'ghost'"),
    (["logs", "ghost"], "unknown job id: 'ghost'"),
    (["logs", "ghost", "--follow"], "unknown job id: 'ghost'"),
    (["logs", "a", "--run", HUGE], f"unknown run id: {HUGE}"),
    (["rerun", HUGE], f"unknown run id: {HUGE}"),
    (["rerun", "0"], "unknown run id: 0"),
])
def test_unknown_job_or_run_is_exit_1_and_queues_nothing(chain, args, fragment):
    line = assert_one_line_error(run(CRON_SCHEDULER, *args, home=chain), 1)
    assert fragment in line
    assert requests_in(chain) == 0


def test_history_of_a_known_job_without_runs_says_no_runs(chain):
    result = run(CRON_SCHEDULER, "history", "a", home=chain)
    assert result.returncode == 0 and result.stdout.strip() == "no runs"


# --- create_cron -h / --version ---------------------------------------------------------------

@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_create_cron_help(home, flag):
    result = run(CREATE_CRON, flag, home=home)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Usage: create_cron [OPTIONS] ID SCHEDULE SCRIPT")
    assert not (home / "jobs.json").exists()


def test_create_cron_version(home):
    from cron_scheduler import __version__
    result = run(CREATE_CRON, "--version", home=home)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"create_cron, version {__version__}"


def test_group_add_keeps_its_help(home):
    assert run(CRON_SCHEDULER, "add", "-h", home=home).stdout.startswith("Usage: cron-scheduler add")


# --- --max-workers bounds: usage errors (exit 2), one line ---------------------------------------

DAEMONS = {"python-m": [sys.executable, "-m", "cron_scheduler.scheduler"], "group": CRON_SCHEDULER + ["daemon"]}


@pytest.mark.parametrize("value", ["0", "-3", "1001", HUGE])
@pytest.mark.parametrize("daemon", DAEMONS.values(), ids=DAEMONS.keys())
def test_max_workers_out_of_range_is_a_usage_error(home, daemon, value):
    result = subprocess.run(daemon + ["--home", str(home), "--max-workers", value],
                            capture_output=True, text=True, timeout=60)
    line = assert_one_line_error(result, 2)
    assert "--max-workers" in line and "1000" in line
    assert not (home / "daemon.pid").exists()


def test_both_daemon_entry_points_share_the_bound():
    from cron_scheduler import cli_runs, scheduler
    assert cli_runs.MAX_WORKERS == scheduler.MAX_WORKERS == 1000


# --- run --with-upstream: bad combinations ------------------------------------------------------

def test_with_upstream_and_no_deps_exclude_each_other(chain):
    line = assert_one_line_error(run(CRON_SCHEDULER, "run", "c", "--with-upstream", "--no-deps", home=chain), 2)
    assert "--with-upstream" in line
    assert requests_in(chain) == 0


def test_with_upstream_queues_the_closure_upstreams_first(chain):
    """No daemon: the request is queued; its job list is the upstream closure, in order."""
    result = run(CRON_SCHEDULER, "run", "c", "--with-upstream", home=chain)
    assert result.returncode == 0, result.stderr
    conn = sqlite3.connect(chain / "state.db")
    try:
        args = json.loads(conn.execute("SELECT args FROM requests").fetchone()[0])
    finally:
        conn.close()
    jobs = args["jobs"]
    assert sorted(jobs) == ["a", "b", "c", "x"]
    assert jobs.index("a") < jobs.index("b") < jobs.index("c") and jobs.index("x") < jobs.index("b")


# --- graph: both directions -----------------------------------------------------------------------

def test_graph_of_a_job_shows_its_upstream_chain_and_downstream_tree(chain):
    result = run(CRON_SCHEDULER, "graph", "c", home=chain)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "c [@after]",
        "upstream (runs before c):",
        "    └── b [@after]",
        "        └── a [@daily]",
        "        └── x [@daily]",
        "downstream (runs after c):",
        "    └── d [@after]",
    ]


def test_graph_of_a_root_says_it_has_no_upstream(chain):
    lines = run(CRON_SCHEDULER, "graph", "a", home=chain).stdout.splitlines()
    assert lines[:3] == ["a [@daily]", "upstream (runs before a): none", "downstream (runs after a):"]
    assert lines[3] == "    └── b [@after]  (also needs x)"


def test_graph_json(chain):
    one = json.loads(run(CRON_SCHEDULER, "graph", "c", "--json", home=chain).stdout)
    assert one["id"] == "c"
    assert [u["id"] for u in one["upstream"]] == ["b"]
    assert [u["id"] for u in one["upstream"][0]["upstream"]] == ["a", "x"]
    assert one["downstream"] == [{"id": "d", "schedule": "@after", "downstream": []}]
    every = json.loads(run(CRON_SCHEDULER, "graph", "--json", home=chain).stdout)
    b = next(j for j in every["jobs"] if j["id"] == "b")
    assert b == {"id": "b", "schedule": "@after", "depends_on": ["a", "x"], "downstream": ["c"]}
