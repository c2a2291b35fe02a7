"""The web dashboard end to end: a real daemon, a real `cron-scheduler web` process on
127.0.0.1 (a free port), the real CLI to compare with, HTTP through urllib."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import urllib.request
from datetime import timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families

from harness import Env, child_env, free_port, wait_until
from webtools import start_web

SLOW_JOB = "import time\nprint('started', flush=True)\ntime.sleep(60)\n"
LINES_JOB = "import time\nfor i in range(6):\n    print('line', i, flush=True)\n    time.sleep(0.4)\n"


@pytest.fixture
def web(e2e):
    servers = []

    def start(*args, **kw):
        server = start_web(e2e, *args, **kw)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def jobs(env: Env) -> None:
    env.create_cron("backup", "--no-check", "0 3 * * *", str(env.script("ok.py", "print('backup done')\n")))
    env.create_cron("report", "--depends-on", "backup", "@after", str(env.script("bad.py", "import sys\nprint('oops')\nsys.exit(3)\n")))
    env.create_cron("slow", "0 4 * * *", str(env.script("slow.py", SLOW_JOB)))


def run_and_wait(env: Env, job_id: str, status: str, count: int = 1) -> list[dict]:
    env.cli("run", job_id)
    return env.wait_status(job_id, status, count)


def metrics(server) -> dict:
    code, body, headers = server.get("/metrics")
    assert code == 200 and headers["Content-Type"].startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_api_mirrors_the_cli_json_shapes(e2e, daemon, web):
    jobs(e2e)
    daemon()
    server = web()
    run_and_wait(e2e, "backup", "succeeded")
    e2e.wait_status("report", "failed")
    assert server.json("/api/jobs") == e2e.json("list")
    assert server.json("/api/jobs/report") == e2e.json("show", "report")
    assert server.json("/api/runs") == e2e.json("history")
    assert server.json("/api/runs?job=report&status=failed&limit=5") == e2e.json(
        "history", "report", "--status", "failed", "--limit", "5")
    status = server.json("/api/status")
    assert status == e2e.json("status") and status["daemon_running"] is True
    run_id = e2e.history("backup")[-1]["run_id"]
    assert server.json(f"/api/runs/{run_id}")["status"] == "succeeded"
    code, log, headers = server.get(f"/api/runs/{run_id}/log")
    assert (code, log) == (200, e2e.cli("logs", "backup", "--run", str(run_id)).stdout.encode())
    assert int(headers["X-Log-Offset"]) == len(log)
    assert server.get(f"/api/runs/{run_id}/log?offset=7")[1] == log[7:]
    assert server.get("/api/jobs/nope")[0] == 404
    assert json.loads(server.get("/api/runs?status=bogus")[1])["error"].startswith("unknown status 'bogus'")


def test_actions_refuse_without_the_token_and_act_with_it(e2e, daemon, web):
    jobs(e2e)
    daemon()
    server = web()
    assert oct((e2e.home / "web.token").stat().st_mode & 0o777) == "0o600"
    printed = e2e.cli("web", "--print-token").stdout.strip()
    assert printed == server.token and len(printed) >= 32
    for token in (None, "", "wrong"):
        code, body = server.post("/api/jobs/backup/run", token)
        assert code == 403 and "token" in body["error"]
    code, _ = server.post("/api/jobs/backup/run", headers={"Cookie": f"cron_scheduler_token={server.token}"})
    assert code == 403  # a cookie alone never acts
    assert e2e.runs("backup") == []
    code, body = server.post("/api/jobs/backup/run", server.token)
    assert code == 200 and body["request"] == "run" and len(body["run_ids"]) == 2  # backup, then report
    e2e.wait_status("backup", "succeeded")
    code, body = server.post("/api/jobs/backup/run", body=f"token={server.token}".encode(),
                             headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert code == 200 and body["run_ids"]  # the form field (a page without script)

    code, body = server.post("/api/jobs/slow/pause", server.token)
    assert code == 200 and body["enabled"] is False and e2e.json("show", "slow")["enabled"] is False
    assert server.post("/api/jobs/slow/resume", server.token)[1]["enabled"] is True

    code, body = server.post("/api/jobs/slow/run", server.token)
    slow_run = body["run_ids"][0]
    e2e.wait_runs("slow running", lambda runs: runs and runs[-1]["status"] == "running", "slow")
    code, body = server.post(f"/api/runs/{slow_run}/stop", server.token)
    assert code == 200 and body["result"].startswith("stopping")
    e2e.wait_status("slow", "killed")

    failed = e2e.wait_status("report", "failed")[0]["run_id"]
    code, body = server.post(f"/api/runs/{failed}/rerun", server.token)
    assert code == 200 and body["request"] == "rerun"
    e2e.wait_status("report", "failed", 2)
    assert server.post("/api/jobs/nope/run", server.token)[0] == 404
    assert server.post("/api/runs/999999/rerun", server.token)[0] == 404


def test_read_only_refuses_every_action(e2e, daemon, web):
    jobs(e2e)
    daemon()
    server = web("--read-only")
    token = e2e.cli("web", "--print-token").stdout.strip()
    for path in ("/api/jobs/backup/run", "/api/jobs/backup/pause", "/api/jobs/backup/stop"):
        code, body = server.post(path, token)
        assert code == 403 and "read-only" in body["error"]
    assert e2e.runs("backup") == [] and e2e.json("show", "backup")["enabled"] is True
    assert server.get("/")[0] == 200 and b"read-only" in server.get("/")[1]


def test_a_bind_beyond_loopback_needs_the_token(e2e, web):
    jobs(e2e)
    result = e2e.cli("web", "--bind", "0.0.0.0:8765", "--no-token", check=False)
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "refusing to listen on 0.0.0.0 without a token" in result.stderr
    assert e2e.cli("web", "--bind", "nonsense", check=False).returncode == 2

    port = free_port()
    cmd = [sys.executable, "-m", "cron_scheduler", "--home", str(e2e.home), "web", "--bind", f"0.0.0.0:{port}"]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, env=child_env())
    try:
        base = f"http://127.0.0.1:{port}"

        def answer(path, headers=None):
            try:
                with urllib.request.urlopen(urllib.request.Request(base + path, headers=headers or {}), timeout=10) as r:
                    return r.status
            except urllib.error.HTTPError as exc:
                return exc.code
            except OSError:
                return None

        wait_until("the web process answering", lambda: answer("/api/jobs"), 30, 0.1)
        assert answer("/api/jobs") == 401 and answer("/metrics") == 401
        token = (e2e.home / "web.token").read_text().strip()
        assert answer("/api/jobs", {"X-Token": token}) == 200
        assert answer("/metrics", {"Authorization": f"Bearer {token}"}) == 200
    finally:
        proc.terminate()
        proc.wait(20)


def test_no_url_reaches_a_file_outside_the_home(e2e, daemon, web, tmp_path):
    jobs(e2e)
    daemon()
    server = web()
    run_id = run_and_wait(e2e, "backup", "succeeded")[0]["run_id"]
    for path in ("/jobs/..%2F..%2Fetc", "/api/jobs/..", "/api/runs/abc/log", "/api/runs/-1/log",
                 "/api/runs/99999999999999999999/log", "/api/runs?job=../x", "/static/../web.token",
                 "/static/%2e%2e/app.py"):
        code, body, _ = server.get(path)
        assert code in (400, 404), (path, code)
        assert server.token.encode() not in body
    # state.db's output_path is never used: the log is runs/<job>/<run-id>.log of the home
    e2e.daemons[0].terminate()
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret\n")
    e2e.query("SELECT 1")
    import sqlite3
    conn = sqlite3.connect(e2e.home / "state.db")
    conn.execute("UPDATE runs SET output_path = ? WHERE run_id = ?", (str(secret), run_id))
    conn.commit()
    conn.close()
    assert server.get(f"/api/runs/{run_id}/log")[1] == b"backup done\n"
    # and a link planted at the log's place is refused, not followed
    log = e2e.home / "runs" / "backup" / f"{run_id}.log"
    log.unlink()
    log.symlink_to(secret)
    code, body, _ = server.get(f"/api/runs/{run_id}/log")
    assert code == 409 and b"top secret" not in body and b"symbolic link" in body
    # the live stream refuses it the same way, before any 200 (no stream that dies in a traceback)
    code, body, headers = server.get(f"/api/runs/{run_id}/log/stream")
    assert code == 409 and headers["Content-Type"] == "application/json", (code, body)
    assert "symbolic link" in json.loads(body)["error"] and b"top secret" not in body
    assert "Traceback" not in server.stderr()


XSS = "<script>planted_{}()</script>"


def test_pages_escape_what_jobs_runs_and_their_output_hold(e2e, web):
    """A job's command and description, a run's reason and output, and even a quarantined id
    of jobs.json hold HTML: every page shows it as text (Jinja autoescape), never as markup."""
    from cron_scheduler.history import History
    from cron_scheduler.home import Home
    from cron_scheduler.models import Job, RunStatus, utcnow
    from cron_scheduler.store import Store
    home = Home(e2e.home)
    with Store(home).transaction() as store:
        store["xss"] = Job(id="xss", schedule="0 3 * * *", command=("/bin/echo", XSS.format("command")),
                           description=XSS.format("description"))
    raw = json.loads((e2e.home / "jobs.json").read_text())
    raw["jobs"][XSS.format("id")] = {"schedule": XSS.format("schedule"), "command": ["/bin/true"]}
    (e2e.home / "jobs.json").write_text(json.dumps(raw))
    with History.opened(home) as history:
        at = (utcnow() - timedelta(hours=1)).isoformat()
        run_id = history.add_run(RunStatus.QUEUED, at, job_id="xss", scheduled_for=at, trigger="schedule", priority=0)
        history.transition(run_id, RunStatus.RUNNING, at, started_at=at, pid=1)
        history.transition(run_id, RunStatus.FAILED, at, finished_at=at, exit_code=1, reason=XSS.format("reason"))
    log = home.run_log("xss", run_id)
    log.parent.mkdir(parents=True, mode=0o700)
    log.write_text(XSS.format("output") + "\n")
    server = web()
    pages = {path: server.get(path)[1].decode() for path in ("/", "/jobs/xss", f"/runs/{run_id}", "/timeline")}
    shown = {"/": ["id", "schedule", "description"], "/jobs/xss": ["command", "description", "reason"],
             f"/runs/{run_id}": ["reason", "output"], "/timeline": ["reason"]}
    for path, markers in shown.items():
        for marker in markers:
            assert f"&lt;script&gt;planted_{marker}()&lt;/script&gt;" in pages[path], (path, marker)
        assert "<script>planted_" not in pages[path], path
    assert '<small class="muted">2 jobs, ' in pages["/"]  # the valid job and the quarantined one
    # without ?hours the timeline fits its window to its one run of an hour ago (not 6 hours)
    assert "the last 1h03m (fitted to the runs of the last 6 hours)" in pages["/timeline"]


def test_the_login_cookie_reads_but_never_acts_and_is_not_the_token(e2e):
    """On a bind beyond loopback, /login sets a cookie that is a read credential derived from
    the token, not the token: it opens the pages and the API for reading; no action accepts
    it (as a cookie, a header or a form field) and /login does not take it as the token."""
    import http.client
    e2e.create_cron("backup", "--no-check", "0 3 * * *", "/bin/true")
    port = free_port()
    cmd = [sys.executable, "-m", "cron_scheduler", "--home", str(e2e.home), "web", "--bind", f"0.0.0.0:{port}"]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, env=child_env())

    def request(method, path, body=None, headers=None):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, resp.read(), resp.headers
        finally:
            conn.close()

    def up():
        try:
            return request("GET", "/login")[0] == 200
        except OSError:
            return False

    try:
        wait_until("the web process answering", up, 30, 0.1)
        token = (e2e.home / "web.token").read_text().strip()
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        code, _, headers = request("POST", "/login", f"token={token}", form)
        assert code == 303
        set_cookie = headers["Set-Cookie"]
        assert token not in set_cookie and "HttpOnly" in set_cookie and "SameSite=strict" in set_cookie
        name, value = set_cookie.split(";", 1)[0].split("=", 1)
        assert len(value) >= 32 and value != token
        cookie = {"Cookie": f"{name}={value}"}
        assert request("GET", "/api/jobs", headers=cookie)[0] == 200
        assert request("GET", "/", headers=cookie)[0] == 200
        assert request("GET", "/api/jobs")[0] == 401
        for headers in (cookie, {**cookie, "X-Token": value}, {"Authorization": f"Bearer {value}"}):
            assert request("POST", "/api/jobs/backup/run", b"", headers)[0] == 403
        assert request("POST", "/api/jobs/backup/run", f"token={value}", {**form, **cookie})[0] == 403
        assert request("POST", "/login", f"token={value}", form)[0] == 403  # not a token either
        assert e2e.runs("backup") == []
        assert request("POST", "/api/jobs/backup/pause", b"", {**cookie, "X-Token": token})[0] == 200
    finally:
        proc.terminate()
        proc.wait(20)


def test_a_busy_port_is_one_error_line_and_exit_1_without_a_url(e2e, web):
    server = web()
    port = server.base.rsplit(":", 1)[1]
    result = e2e.cli("web", "--bind", f"127.0.0.1:{port}", check=False, timeout=30)
    assert result.returncode == 1, (result.returncode, result.stderr)
    assert result.stderr.splitlines() == [f"cron-scheduler: error: cannot listen on 127.0.0.1:{port}: Address "
                                          "already in use (another `cron-scheduler web`? pick a free port with --bind)"]
    assert "http://" not in result.stderr + result.stdout


def test_the_token_file_is_never_followed_through_a_link(e2e):
    target = e2e.tmp / "elsewhere"
    (e2e.home / "web.token").symlink_to(target)
    result = e2e.cli("web", "--print-token", check=False)
    assert result.returncode == 1 and "symbolic link" in result.stderr and not target.exists()


def test_metrics_count_outcomes_across_restarts_and_retention(e2e, daemon, web):
    jobs(e2e)
    first = daemon()
    server = web()
    run_and_wait(e2e, "backup", "succeeded")
    e2e.wait_status("report", "failed")
    run_and_wait(e2e, "backup", "succeeded", 2)
    e2e.wait_status("report", "failed", 2)
    seen = metrics(server)
    assert seen[("cron_scheduler_runs_total", (("job", "backup"), ("status", "succeeded")))] == 2
    assert seen[("cron_scheduler_runs_total", (("job", "report"), ("status", "failed")))] == 2
    assert seen[("cron_scheduler_run_duration_seconds_count", (("job", "backup"),))] == 2
    assert seen[("cron_scheduler_running_runs", ())] == 0
    last = seen[("cron_scheduler_last_success_timestamp_seconds", (("job", "backup"),))]
    assert abs(last - max(__import__("harness").ts(r["finished_at"]) for r in e2e.history("backup"))) < 1
    # the daemon restarts and the history is pruned: the counters stay
    first.terminate()
    import sqlite3
    conn = sqlite3.connect(e2e.home / "state.db")
    conn.execute("DELETE FROM runs")
    conn.commit()
    conn.close()
    daemon()
    after = metrics(server)
    assert after[("cron_scheduler_runs_total", (("job", "backup"), ("status", "succeeded")))] == 2
    assert after[("cron_scheduler_runs_total", (("job", "report"), ("status", "failed")))] == 2
    run_and_wait(e2e, "backup", "succeeded")
    wait_until("the counter to count the new run", lambda: metrics(server)[
        ("cron_scheduler_runs_total", (("job", "backup"), ("status", "succeeded")))] == 3)


def _read_sse(url: str, out: list, stop: threading.Event) -> None:
    with urllib.request.urlopen(url, timeout=60) as resp:
        event = None
        for raw in resp:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                out.append((event, json.loads(line[6:])))
                if event == "end" or stop.is_set():
                    return


def test_run_events_and_a_running_log_stream_live(e2e, daemon, web):
    e2e.create_cron("lines", "@after", str(e2e.script("lines.py", LINES_JOB)))
    daemon()
    server = web()
    events: list = []
    stop = threading.Event()
    reader = threading.Thread(target=_read_sse, args=(server.base + "/api/events", events, stop), daemon=True)
    reader.start()
    wait_until("the event stream connected", lambda: server.get("/api/status")[0] == 200)
    code, body = server.post("/api/jobs/lines/run", server.token)
    run_id = body["run_ids"][0]
    e2e.wait_runs("lines running", lambda runs: runs and runs[-1]["status"] == "running", "lines")
    chunks: list = []
    follower = threading.Thread(target=_read_sse, args=(f"{server.base}/api/runs/{run_id}/log/stream", chunks,
                                                        threading.Event()), daemon=True)
    follower.start()
    follower.join(60)
    assert chunks[-1] == ("end", {"status": "succeeded"})
    text = "".join(c["text"] for kind, c in chunks if kind == "log")
    assert text == "".join(f"line {i}\n" for i in range(6))
    assert len([c for c in chunks if c[0] == "log"]) >= 2  # it came in parts, while the run ran
    wait_until("the succeeded event", lambda: any(e[1]["new_status"] == "succeeded" for e in events))
    stop.set()
    mine = [e[1]["new_status"] for e in events if e[1]["run_id"] == run_id]
    assert mine[-2:] == ["running", "succeeded"] and all(e[0] == "run" for e in events)


def test_list_and_help_do_not_import_the_web_framework(e2e):
    jobs(e2e)
    code = ("import sys\nfrom cron_scheduler.cli import main\nfor args in (['--help'], ['--home', sys.argv[1], 'list']):\n"
            "    try:\n        main(args)\n    except SystemExit:\n        pass\n"
            "print(sorted(m for m in ('starlette', 'uvicorn', 'jinja2', 'prometheus_client') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code, str(e2e.home)], capture_output=True, text=True,
                            env=child_env(), timeout=60)
    assert result.stdout.strip().splitlines()[-1] == "[]", result.stderr


def test_the_daemon_serves_the_dashboard_with_web_and_stops_it(e2e):
    jobs(e2e)
    port = free_port()
    d = e2e.start_daemon("--web", f"127.0.0.1:{port}")

    def status():
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status", timeout=5) as r:
                return json.load(r)
        except OSError:
            return None

    seen = wait_until("the daemon's dashboard answering", status, 30, 0.1)
    assert seen["daemon_running"] is True and seen["pid"] == d.pid
    pid = int(e2e.log_text().split("web: dashboard pid ", 1)[1].split()[0])
    assert d.terminate() == 0
    assert status() is None
    assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z"


def _lags(env: Env, first_run: int) -> list[float]:
    from harness import ts
    return sorted(ts(r["started_at"]) - ts(r["scheduled_for"]) for r in env.history("tick")
                  if r["run_id"] > first_run and r["trigger"] == "schedule" and r["started_at"])


@pytest.mark.slow
def test_the_daemons_launch_lag_is_unchanged_with_the_web_polling(e2e, daemon, web):
    """A job every second, 12 s without the web process, then 12 s with it serving a live
    event stream, a followed log and a page plus /metrics every half second: the start lag
    (start - slot) stays where it was. The figures are printed (-s shows them)."""
    import statistics
    import time
    e2e.create_cron("tick", "* * * * * *", str(e2e.script("tick.py", "print('tick')\n")))
    daemon()
    time.sleep(12)
    quiet = _lags(e2e, 0)
    last = e2e.history("tick")[-1]["run_id"]
    server = web()
    stop = threading.Event()
    threading.Thread(target=_read_sse, args=(server.base + "/api/events", [], stop), daemon=True).start()
    end = time.monotonic() + 12
    while time.monotonic() < end:
        for path in ("/", "/metrics", "/timeline", "/jobs/tick"):
            assert server.get(path)[0] == 200
        time.sleep(0.5)
    stop.set()
    busy = _lags(e2e, last)
    assert len(quiet) >= 8 and len(busy) >= 8

    def q(values, p):
        return values[min(len(values) - 1, int(p * len(values)))]

    print(f"\nlaunch lag without web: p50 {statistics.median(quiet) * 1000:.1f} ms, p95 {q(quiet, .95) * 1000:.1f} ms"
          f" ({len(quiet)} runs); with web polling: p50 {statistics.median(busy) * 1000:.1f} ms, "
          f"p95 {q(busy, .95) * 1000:.1f} ms ({len(busy)} runs)")
    assert statistics.median(busy) < statistics.median(quiet) + 0.05
