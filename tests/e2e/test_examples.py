"""Every example of examples/ applied to a temp home and run end to end under the real daemon:
each produces its output; fetch goes to a local HTTP server (a failure, then retried); the ETL
alerts on failure; the DAG's start order respects every dependency."""

from __future__ import annotations

import csv
import gzip
import http.server
import json
import os
import shutil
import sqlite3
import threading
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from harness import ts, wait_until

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
DAG = {"job_1": ["job_2", "job_4"], "job_2": ["job_3", "job_7"], "job_4": ["job_5", "job_6", "job_9"],
       "job_5": ["job_8", "job_9"], "job_6": ["job_7"], "job_7": ["job_8"]}


@pytest.fixture
def examples(e2e):
    """A copy of examples/ (as a user copies it), applied from there."""
    target = e2e.tmp / "examples"
    shutil.copytree(EXAMPLES, target, ignore=shutil.ignore_patterns("work"))
    return target


def run_wait(e2e, *jobs: str) -> None:
    e2e.cli("run", *jobs, "--wait", "--timeout", "90", timeout=120)


def test_maintenance_makes_a_dated_dir_rotates_logs_and_deletes_old_files(e2e, examples):
    logs, tmp = examples / "work" / "logs", examples / "work" / "tmp"
    logs.mkdir(parents=True)
    tmp.mkdir(parents=True)
    (logs / "app.log").write_text("line 1\nline 2\n")
    old, new = tmp / "old.txt", tmp / "new.txt"
    old.write_text("old")
    new.write_text("new")
    ten_days_ago = time.time() - 10 * 86400
    os.utime(old, (ten_days_ago, ten_days_ago))
    e2e.cli("apply", examples / "maintenance.yaml")
    e2e.start_daemon()
    run_wait(e2e, "maint-dated-dir", "maint-rotate-logs", "maint-cleanup")
    assert (examples / "work" / "archive" / date.today().isoformat()).is_dir()
    rotated = list(logs.glob("app.log.*.gz"))
    assert len(rotated) == 1 and gzip.decompress(rotated[0].read_bytes()) == b"line 1\nline 2\n"
    assert (logs / "app.log").read_text() == ""
    assert not old.exists() and new.read_text() == "new"


def test_files_example_writes_the_csv_summary(e2e, examples):
    e2e.cli("apply", examples / "files.yaml")
    e2e.start_daemon()
    run_wait(e2e, "sales-report")
    with open(examples / "data" / "sales.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    units = sum(int(r["units"]) for r in rows)
    revenue = sum(int(r["units"]) * float(r["price"]) for r in rows)
    report = (examples / "work" / "report.txt").read_text().splitlines()
    assert report[0] == f"Sales report for data/sales.csv: {len(rows)} rows"
    assert report[-1].split() == ["total", str(units), f"{revenue:.2f}"]
    north = next(line for line in report if line.startswith("north"))
    assert north.split()[1] == str(sum(int(r["units"]) for r in rows if r["region"] == "north"))


class _Flaky(http.server.BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self):  # noqa: N802
        self.hits.append(self.path)
        if len(self.hits) == 1:
            self.send_error(503, "try again")
            return
        body = b"<html>fetched</html>\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_fetch_gets_the_url_with_retries_and_saves_it(e2e, examples):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    _Flaky.hits = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        e2e.cli("apply", examples / "fetch.yaml")
        url = f"http://127.0.0.1:{server.server_address[1]}/page"
        e2e.cli("update", "fetch-page", "--env", f"FETCH_URL={url}", "--retry-delay", "1s")
        e2e.start_daemon()
        run_wait(e2e, "fetch-page")
    finally:
        server.shutdown()
    assert (examples / "work" / "fetched.html").read_text() == "<html>fetched</html>\n"
    runs = e2e.history("fetch-page")
    assert [(r["status"], r["attempt"]) for r in runs] == [("failed", 1), ("succeeded", 2)]
    assert _Flaky.hits == ["/page", "/page"]
    assert not list((examples / "work").glob(".fetch.*"))  # the temp file was renamed, not left


def test_etl_runs_extract_transform_load_in_order_and_alerts_on_failure(e2e, examples):
    alerts = e2e.tmp / "alerts.jsonl"
    with open(e2e.home / "config.toml", "a") as fh:
        fh.write(f'[notify.channels.ops]\ncommand = ["/bin/sh", "-c", "cat >> {alerts}; echo >> {alerts}"]\n')
    e2e.cli("apply", examples / "etl.yaml")
    e2e.start_daemon()
    run_wait(e2e, "etl-extract")
    runs = {r["job_id"]: r for r in e2e.history()}
    assert [runs[j]["status"] for j in ("etl-extract", "etl-transform", "etl-load")] == ["succeeded"] * 3
    assert ts(runs["etl-transform"]["started_at"]) >= ts(runs["etl-extract"]["finished_at"])
    assert ts(runs["etl-load"]["started_at"]) >= ts(runs["etl-transform"]["finished_at"])
    with sqlite3.connect(examples / "work" / "etl" / "warehouse.db") as conn:
        assert conn.execute("SELECT count(*), sum(units) FROM sales").fetchone() == (10, 78)
    # the source disappears: extract fails (no retries here, to keep the test short) and alerts
    (examples / "data" / "sales.csv").rename(examples / "data" / "sales.csv.bak")
    e2e.cli("update", "etl-extract", "--retries", "0")
    proc = e2e.cli("run", "etl-extract", "--wait", "--timeout", "60", check=False)
    assert proc.returncode == 1
    events = wait_until("a failure alert", lambda: [json.loads(line) for line in alerts.read_text().splitlines()
                                                    if line.strip()] if alerts.exists() else None, 60)
    assert events[0]["event"] == "failure" and events[0]["job_id"] == "etl-extract"


def test_dag_runs_all_nine_jobs_and_respects_every_dependency(e2e, examples):
    e2e.cli("apply", examples / "dag.yaml")
    e2e.start_daemon()
    run_wait(e2e, "job_3", "job_8", "job_9")
    runs = {r["job_id"]: r for r in e2e.history()}
    assert sorted(runs) == [f"job_{n}" for n in range(1, 10)]
    assert {r["status"] for r in runs.values()} == {"succeeded"}
    for job, ups in DAG.items():
        for up in ups:
            assert ts(runs[job]["started_at"]) >= ts(runs[up]["finished_at"]), (job, up)
    out = e2e.cli("logs", "job_1").stdout
    assert [line for line in out.splitlines() if line.startswith("job 1:")] == [f"job 1: {i}/10" for i in range(1, 11)]


def test_dag_roots_due_at_one_instant_open_one_wave_each_job_once(e2e, examples):
    """dag.yaml on timers: job_3, job_8 and job_9 share a slot, so that slot is one DAG run:
    one wave, each of the nine jobs once in it, none blocked (each root's own wave ran job_1
    three times and blocked job_2 on job_7, which was outside its wave)."""
    slot = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(seconds=4)
    at = f"{slot.second} {slot.minute} {slot.hour} {slot.day} {slot.month} *"
    text = (examples / "dag.yaml").read_text()
    assert text.count('"*/10 * * * *"') == 3
    soon = examples / "dag-soon.yaml"
    soon.write_text(text.replace('"*/10 * * * *"', f'"{at}"').replace("defaults:\n", "defaults:\n  timezone: UTC\n"))
    e2e.cli("apply", soon)
    e2e.start_daemon()
    runs = wait_until("job_1 to end", lambda: (lambda rs: rs if any(
        r["job_id"] == "job_1" and r["status"] not in ("queued", "waiting", "running") for r in rs) else None)(
        e2e.history()), 90)
    assert sorted(r["job_id"] for r in runs) == [f"job_{n}" for n in range(1, 10)], runs
    assert {r["status"] for r in runs} == {"succeeded"}
    assert len({r["wave"] for r in runs}) == 1
