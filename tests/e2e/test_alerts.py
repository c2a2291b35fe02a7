"""Alerts end to end: the real daemon, its sender process and real transports (an aiosmtpd
SMTP server, a stdlib HTTP server, a command writing its stdin to a file)."""

from __future__ import annotations

import json
import socket
import sqlite3
import statistics
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from harness import CONFIG, Env, free_port, pid_alive, ts, wait_until

SECRET = "Sup3rSecretPassw0rd"


def configure(env: Env, notify: str) -> None:
    (env.home / "config.toml").write_text(CONFIG + notify)


def command_channel(env: Env, name: str = "cmd", extra: str = "") -> Path:
    out = env.tmp / f"{name}.jsonl"
    return out, (f'[notify.channels.{name}]\ncommand = ["/bin/sh", "-c", "cat >> {out}"]\n{extra}')


def events(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def wait_events(path: Path, what: str, predicate, timeout: float = 30) -> list[dict]:
    return wait_until(what, lambda: predicate(events(path)) and events(path), timeout, 0.1,
                      describe=lambda: f"events: {events(path)}")


def alerts_where(env: Env, where: str) -> list[dict]:
    """Rows of the alerts table (none while the sender has not created it yet)."""
    try:
        return env.query(f"SELECT * FROM alerts WHERE {where}")
    except sqlite3.OperationalError:
        return []


@pytest.fixture
def smtp_server():
    from aiosmtpd.controller import Controller

    class Inbox:
        def __init__(self):
            self.messages = []

        async def handle_DATA(self, server, session, envelope):
            self.messages.append(envelope)
            return "250 OK"

    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller.port, inbox.messages
    controller.stop()


def test_the_failure_mail_arrives_through_apprise_mailto(e2e, smtp_server):
    port, messages = smtp_server
    configure(e2e, f'[notify.channels.mail]\nurls = ["mailto://127.0.0.1:{port}?from=cron@a.example'
                   f'&to=ops@b.example&mode=insecure"]\n')
    e2e.create_cron("backup", "--notify", "failure", "--shell", "0 0 1 1 *", "echo disk full; exit 1")
    e2e.start_daemon()
    e2e.cli("run", "backup")
    run = e2e.wait_status("backup", "failed")[0]
    wait_until("the failure mail", lambda: messages, 30, 0.1, describe=e2e.log_tail)
    import email
    mail = email.message_from_bytes(messages[0].content)
    host = socket.gethostname()
    assert mail["Subject"] == f"[cron-scheduler] backup failed (exit 1) on {host}"
    text = mail.get_payload(decode=True).decode() if not mail.is_multipart() else \
        mail.get_payload(0).get_payload(decode=True).decode()
    text = " ".join(text.split())  # Apprise may send the text as HTML: compare words
    assert f"run: {run['run_id']} (manual, attempt 1)" in text and "exit: exit 1" in text
    assert "disk full" in text  # the last lines of output
    assert messages[0].rcpt_tos == ["ops@b.example"]
    rows = e2e.json("alerts")
    assert [(r["kind"], r["status"], r["channel"]) for r in rows] == [("failure", "sent", "mail")]


def test_a_json_webhook_receives_the_event(e2e):
    bodies = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):
            bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        configure(e2e, f'[notify.channels.hook]\nurls = ["json://127.0.0.1:{server.server_port}/alerts"]\n')
        e2e.create_cron("sync", "--notify", "failure", "--shell", "0 0 1 1 *", "exit 7")
        e2e.start_daemon()
        e2e.cli("run", "sync")
        wait_until("the webhook", lambda: bodies, 30, 0.1, describe=e2e.log_tail)
    finally:
        server.shutdown()
    event = json.loads(bodies[0]["message"])
    assert bodies[0]["title"] == event["title"] == f"[cron-scheduler] sync failed (exit 7) on {socket.gethostname()}"
    assert event["event"] == "failure" and event["job_id"] == "sync" and event["exit_code"] == 7


def test_five_failures_one_alert_then_one_recovered(e2e):
    out, channel = command_channel(e2e)
    configure(e2e, channel)
    e2e.create_cron("flaky", "--notify", "failure,recovered", "--shell", "* * * * * *", "exit 2")
    e2e.start_daemon()
    e2e.wait_status("flaky", "failed", count=5, timeout=60)
    e2e.cli("update", "flaky", "--command", "true")
    e2e.wait_status("flaky", "succeeded", timeout=60)
    got = wait_events(out, "recovered", lambda ev: any(e["event"] == "recovered" for e in ev))
    failures = len([r for r in e2e.history("flaky") if r["status"] == "failed"])
    assert failures >= 5
    assert [e["event"] for e in got] == ["failure", "recovered"], got
    delays = [r["sent_at"] and ts(r["sent_at"]) - ts(e2e.query(
        "SELECT finished_at FROM runs WHERE run_id = ?", (r["run_id"],))[0]["finished_at"])
        for r in e2e.json("alerts")]
    print(f"alerts per streak: 1 for {failures} failures; delivery delay after the run ended: "
          f"{', '.join(f'{d * 1000:.0f} ms' for d in delays)}")


def test_the_rate_limit_bites_with_one_summary(e2e):
    out, channel = command_channel(e2e)
    configure(e2e, '[notify]\nrate_limit = 2\nsummary_delay = "1s"\n' + channel)
    jobs = [f"job{i}" for i in range(5)]
    for job_id in jobs:
        e2e.create_cron(job_id, "--notify", "failure", "--shell", "0 0 1 1 *", "exit 1")
    e2e.start_daemon()
    for job_id in jobs:  # a wave each: one `run` of them all would be one digest
        e2e.cli("run", job_id)
    got = wait_events(out, "a summary", lambda ev: any(e["event"] == "summary" for e in ev))
    time.sleep(0.5)  # nothing else may follow the summary (a second summary would be a flood)
    got = events(out)
    assert [e["event"] for e in got] == ["failure", "failure", "summary"], got
    assert got[2]["reason"].startswith("3 more alerts suppressed: ")
    rows = e2e.json("alerts")
    assert sorted(r["status"] for r in rows if r["kind"] == "failure") == ["sent", "sent", "suppressed",
                                                                          "suppressed", "suppressed"]


def test_slow_arrives_while_the_run_is_still_running(e2e):
    out, channel = command_channel(e2e)
    configure(e2e, channel)
    e2e.create_cron("crawl", "--notify", "slow", "--expect", "1s", "--shell", "0 0 1 1 *", "sleep 60")
    e2e.start_daemon()
    e2e.cli("run", "crawl")
    got = wait_events(out, "a slow alert", lambda ev: ev)
    assert got[0]["event"] == "slow" and got[0]["status"] == "running"
    assert e2e.runs("crawl")[0]["status"] == "running"  # still running once the alert is there
    assert "crawl slow (running" in got[0]["title"]
    e2e.cli("stop", "crawl")


def _start_lags(env: Env, seconds: float) -> list[float]:
    """Start lag (started_at - scheduled_for) of the timer runs of the last `seconds`."""
    since = time.time() - seconds
    return [ts(r["started_at"]) - ts(r["scheduled_for"]) for r in env.runs()
            if r["trigger"] == "schedule" and r["started_at"] and ts(r["scheduled_for"]) > since]


@pytest.mark.slow
def test_a_black_holed_smtp_port_delays_no_run_start(e2e):
    """The same four every-second jobs, first without alerts (the daemon's own start lag on this
    machine), then with every alert going to an SMTP port that accepts and never answers."""
    for i in range(3):
        e2e.create_cron(f"bad{i}", "--notify", "failure,recovered,slow,output", "--alert-output", "1",
                        "--shell", "* * * * * *", f"echo out; exit {i % 2}")
    e2e.create_cron("tick", "--shell", "* * * * * *", "true")
    daemon = e2e.start_daemon()
    time.sleep(7)
    baseline = _start_lags(e2e, 6)
    daemon.terminate()
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(64)  # the kernel accepts connections; nobody ever says a word
    try:
        configure(e2e, f'[notify]\nretries = 5\nretry_delay = "1s"\n[notify.channels.mail]\n'
                       f'urls = ["mailto://127.0.0.1:{hole.getsockname()[1]}?from=a@b.example&to=c@d.example'
                       f'&mode=insecure"]\ntimeout = "20s"\n')
        e2e.start_daemon()
        wait_until("the sender hangs on the black hole", lambda: alerts_where(e2e, "status = 'pending'"), 30, 0.1)
        time.sleep(7)
        hanging = _start_lags(e2e, 6)
        assert not alerts_where(e2e, "status = 'sent'")
    finally:
        hole.close()
    assert len(baseline) >= 16 and len(hanging) >= 16
    print(f"start lag without alerts: {len(baseline)} runs, median {statistics.median(baseline) * 1000:.1f} ms, "
          f"max {max(baseline) * 1000:.1f} ms; while the SMTP channel hangs: {len(hanging)} runs, median "
          f"{statistics.median(hanging) * 1000:.1f} ms, max {max(hanging) * 1000:.1f} ms")
    assert max(hanging) < max(baseline) + 0.05, (sorted(baseline)[-3:], sorted(hanging)[-3:])
    assert statistics.median(hanging) < statistics.median(baseline) + 0.01


def test_a_secret_in_a_channel_url_is_shown_nowhere(e2e):
    port = free_port()  # nothing listens there: every delivery fails
    configure(e2e, f'[notify]\nretries = 0\n[notify.channels.mail]\n'
                   f'urls = ["mailto://alice:{SECRET}@127.0.0.1:{port}?from=a@b.example&to=c@d.example'
                   f'&mode=insecure"]\n')
    e2e.create_cron("leaky", "--notify", "failure", "--shell", "0 0 1 1 *", "exit 1")
    daemon = e2e.start_daemon()
    e2e.cli("run", "leaky")
    wait_until("the delivery failed", lambda: alerts_where(e2e, "status = 'failed'"), 60, 0.1,
               describe=e2e.log_tail)
    test = e2e.cli("notify-test", check=False)
    assert test.returncode == 1 and "mail: FAILED: mailto://alice:***@127.0.0.1" in test.stdout, test.stdout
    outputs = [e2e.cli(*args).stdout for args in (("alerts",), ("alerts", "--json"), ("show", "leaky"),
                                                  ("history", "leaky"), ("status",))]
    daemon.terminate()
    texts = outputs + [test.stdout, test.stderr, e2e.log_text(), daemon.stderr(),
                       json.dumps(e2e.query("SELECT * FROM alerts"))]
    assert "alert channel mail failing: mailto://alice:***@127.0.0.1" in e2e.log_text()
    for text in texts:
        assert SECRET not in text


def test_an_undelivered_alert_is_delivered_after_a_crash_and_the_crash_alerts(e2e):
    out = e2e.tmp / "out.jsonl"
    gate = e2e.tmp / "gate"  # the channel fails until this file exists
    configure(e2e, f'[notify]\nretries = 5\nretry_delay = "1h"\n[notify.channels.cmd]\n'
                   f'command = ["/bin/sh", "-c", "test -e {gate} && cat >> {out}"]\n')
    e2e.create_cron("backup", "--notify", "failure", "--shell", "0 0 1 1 *", "exit 1")
    daemon = e2e.start_daemon()
    e2e.cli("run", "backup")
    wait_until("a failed first attempt", lambda: alerts_where(
        e2e, "kind = 'failure' AND status = 'pending' AND attempts = 1"), 30, 0.1)
    daemon.kill9()
    gate.touch()
    e2e.start_daemon()
    got = wait_events(out, "the failure and the crash", lambda ev: len(ev) >= 2)
    assert sorted(e["event"] for e in got) == ["daemon", "failure"]
    assert "restarted after a crash" in next(e["reason"] for e in got if e["event"] == "daemon")


# --- channels deliver independently, and a command's tree never outlives its timeout ---------

def test_a_hanging_channel_does_not_delay_a_healthy_one(e2e):
    out, healthy = command_channel(e2e, "healthy")
    configure(e2e, f'[notify]\nretries = 0\n[notify.channels.hang]\ncommand = ["sleep", "1000"]\ntimeout = "5s"\n'
                   + healthy)
    for job_id in ("backup", "sync"):
        e2e.create_cron(job_id, "--notify", "failure", "--shell", "0 0 1 1 *", "exit 1")
    e2e.start_daemon()
    for job_id in ("backup", "sync"):  # two waves: the healthy channel gets both while `hang` holds the first
        e2e.cli("run", job_id)
        e2e.wait_status(job_id, "failed")
    wait_events(out, "both failures on the healthy channel",
                lambda ev: len([e for e in ev if e["event"] == "failure"]) == 2, timeout=30)
    # the channel's output comes first, the sent record right after it
    sent = wait_until("both failures recorded sent", lambda: (lambda rows: rows if len(rows) == 2 else None)(
        alerts_where(e2e, "channel = 'healthy' AND status = 'sent' AND kind = 'failure'")), timeout=30)
    delays = [ts(a["sent_at"]) - ts(a["created_at"]) for a in sent]
    assert max(delays) < 4, delays  # the hanging channel's timeout is 5s
    failed = wait_until("the hanging channel's timeout", lambda: alerts_where(
        e2e, "channel = 'hang' AND status = 'failed'"), 30, 0.1, describe=e2e.log_tail)
    assert "command sleep: no exit within 5s (killed)" in failed[0]["error"]


@pytest.mark.parametrize("main", ["cat >> {out}", "cat >> {out}; exec sleep 1000"],
                         ids=["command-exits", "command-hangs"])
def test_a_setsid_grandchild_holding_stderr_is_killed_and_not_waited_for(e2e, main):
    """The channel's command leaves a grandchild in a session of its own, holding the command's
    stderr: the sender waits for neither the pipe nor the grandchild past the timeout."""
    out, pid_file = e2e.tmp / "out.jsonl", e2e.tmp / "grandchild.pid"
    script = (f"setsid sh -c 'echo $$ > {pid_file}; exec sleep 1000' & "
              f"while [ ! -s {pid_file} ]; do sleep 0.01; done; " + main.format(out=out))
    configure(e2e, f'[notify]\nretries = 0\n[notify.channels.cmd]\ncommand = ["/bin/sh", "-c", "{script}"]\n'
                   'timeout = "3s"\n')
    for job_id in ("backup", "sync"):
        e2e.create_cron(job_id, "--notify", "failure", "--shell", "0 0 1 1 *", "exit 1")
    e2e.start_daemon()
    e2e.cli("run", "backup")
    done = wait_until("the delivery to end", lambda: alerts_where(e2e, "status IN ('sent', 'failed')"), 30, 0.1,
                      describe=e2e.log_tail)[0]
    ended_within = time.time() - ts(done["created_at"])  # an upper bound: the poll saw it ended by now
    grandchild = int(pid_file.read_text())
    wait_until("the grandchild killed", lambda: not pid_alive(grandchild), 10, 0.05)
    assert events(out) and events(out)[0]["job_id"] == "backup"
    if main.startswith("cat >> {out};"):
        assert done["status"] == "failed" and "no exit within 3s (killed)" in done["error"]
        assert ended_within < 3 + 3, ended_within
    else:
        assert done["status"] == "sent" and ts(done["sent_at"]) - ts(done["created_at"]) < 3, done
    # the sender is free: the next alert goes out at once
    e2e.cli("run", "sync")
    wait_events(out, "the next alert", lambda ev: any(e["job_id"] == "sync" for e in ev), timeout=15)


# --- mail layout ---------------------------------------------------------------------------

def test_the_alert_mail_keeps_its_layout_in_both_parts(e2e, smtp_server):
    import email
    from email import policy
    port, messages = smtp_server
    configure(e2e, f'[notify.channels.mail]\nurls = ["mailto://127.0.0.1:{port}?from=cron@a.example'
                   f'&to=ops@b.example&mode=insecure"]\n')
    e2e.create_cron("backup", "--notify", "failure", "--shell", "0 0 1 1 *",
                    "echo 'rsync: <dir> & more'; echo '  indented line'; exit 1")
    e2e.start_daemon()
    e2e.cli("run", "backup")
    wait_until("the failure mail", lambda: messages, 30, 0.1, describe=e2e.log_tail)
    mail = email.message_from_bytes(messages[0].content, policy=policy.default)
    plain = mail.get_body(("plain",)).get_content().replace("\r\n", "\n")
    html_part = mail.get_body(("html",)).get_content().replace("\r\n", "\n")
    lines = plain.splitlines()
    assert lines[0] == f"backup failed (exit 1) on {socket.gethostname()}" and lines[1] == ""
    for line in ("job:        backup", "status:     failed", "exit:       exit 1",
                 "rsync: <dir> & more", "  indented line"):
        assert line in lines, plain
    assert "<pre>" in html_part and "</pre>" in html_part, html_part
    pre = html_part[html_part.index("<pre>") + 5:html_part.index("</pre>")]
    assert "rsync: &lt;dir&gt; &amp; more\n  indented line" in pre  # escaped, lines and indentation kept
    assert "\njob:        backup\n" in pre and "\nexit:       exit 1\n" in pre


# --- one digest per wave; recovered only for the job that failed ------------------------------

def test_a_failed_upstream_gives_one_digest_and_the_fix_one_recovered(e2e):
    out, channel = command_channel(e2e)
    configure(e2e, channel)
    fixed = e2e.tmp / "fixed"
    notify = ("--notify", "failure,blocked,recovered")
    e2e.create_cron("extract", *notify, "--shell", "@after", f"test -e {fixed} || exit 3")
    e2e.create_cron("transform", *notify, "--depends-on", "extract", "--shell", "@after", "true")
    e2e.create_cron("load", *notify, "--depends-on", "transform", "--shell", "@after", "true")
    e2e.create_cron("report", *notify, "--depends-on", "extract", "--shell", "@after", "true")
    e2e.create_cron("publish", *notify, "--depends-on", "load,report", "--shell", "@after", "true")
    e2e.start_daemon()
    e2e.cli("run", "extract")
    runs = e2e.wait_runs("the wave to end", lambda rs: rs if len(rs) == 5 and all(
        r["status"] not in ("queued", "waiting", "running") for r in rs) else None)
    assert sorted(r["status"] for r in runs) == ["blocked"] * 4 + ["failed"]
    wait_until("the wave's alerts delivered", lambda: len(alerts_where(e2e, "status = 'sent'")) == 5, 30, 0.1,
               describe=lambda: f"{e2e.json('alerts')}\n{e2e.log_tail()}")
    got = events(out)
    assert len(got) == 1, [e["title"] for e in got]  # one message for the wave
    digest = got[0]
    assert (digest["event"], digest["job_id"], digest["exit_code"]) == ("failure", "extract", 3)
    assert sorted((e["event"], e["job_id"]) for e in digest["wave_alerts"]) == [
        ("blocked", "load"), ("blocked", "publish"), ("blocked", "report"), ("blocked", "transform")]
    assert digest["title"].endswith("(and 4 blocked in the same wave)")

    fixed.touch()
    failed = next(r for r in runs if r["status"] == "failed")
    e2e.cli("rerun", str(failed["run_id"]))
    e2e.wait_runs("the released jobs to succeed", lambda rs: len([r for r in rs if r["status"] == "succeeded"]) == 5)
    got = wait_events(out, "the recovery", lambda ev: len(ev) >= 2)
    wait_until("nothing else pending", lambda: not alerts_where(e2e, "status = 'pending'"), 30, 0.1)
    got = events(out)
    assert [(e["event"], e["job_id"]) for e in got[1:]] == [("recovered", "extract")], got[1:]
    assert "wave_alerts" not in got[1]
    kinds = [(r["kind"], r["job_id"]) for r in e2e.json("alerts") if r["kind"] == "recovered"]
    assert kinds == [("recovered", "extract")]


# --- secrets masked by rule, in every place a channel shows ------------------------------------

def secret_channels(port: int) -> list[tuple[str, str, list[str], str]]:
    """(channel, URL, its secret parts, what notify-test shows of it) for each Apprise scheme
    the README names and the common others. Local ones point at a port nobody listens on; the
    others fail on this offline machine."""
    mail = "from=a@b.example&to=c@d.example&mode=insecure"
    local = f"127.0.0.1:{port}"
    return [
        ("mail", f"mailto://alice:MailPass9x@{local}?{mail}", ["MailPass9x"], f"mailto://alice:***@{local}?{mail}"),
        ("mails", f"mailtos://bob@{local}?pass=MailsPass8y&{mail}", ["MailsPass8y"],
         f"mailtos://bob@{local}?pass=***&{mail}"),
        ("slack", "slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ/#ops",
         ["T1JJ3T3L2", "A1BRTD4JD", "TIiajkdnlazkcOXrIdevi7FQ"], "slack://***/***/***/#ops"),
        ("slackhook", "https://hooks.slack.com/services/T0AAA1111/B0BBB2222/XyzHookTok3n",
         ["T0AAA1111", "B0BBB2222", "XyzHookTok3n"], "https://hooks.slack.com/services/***/***/***"),
        ("pushover", "pover://uQiRzpo4DXghDmr9QzzfQu27cmVRsG@azGDORePK8gMaC0QOYAMyEEuzJnyUi/phone",
         ["uQiRzpo4DXghDmr9QzzfQu27cmVRsG", "azGDORePK8gMaC0QOYAMyEEuzJnyUi"], "pover://***@***/phone"),
        ("telegram", "tgram://987654:AbC9dEf/4567", ["AbC9dEf", "987654:AbC9dEf"], "tgram://***/***"),
        ("discord", "discord://4174216298/JHMHI8qBe7bk2ZwO5U711o3dV_js", ["4174216298", "JHMHI8qBe7bk2ZwO5U711o3dV_js"],
         "discord://***/***"),
        ("teams", "msteams://TeamsTokA7/TeamsTokB8/TeamsTokC9/", ["TeamsTokA7", "TeamsTokB8", "TeamsTokC9"],
         "msteams://***/***/***/"),
        ("pagerduty", "pagerduty://PdIntegration1@PdApiKey22/", ["PdIntegration1", "PdApiKey22"],
         "pagerduty://***@***/"),
        ("json", f"json://hookuser:JsonPass7z@{local}/alerts?token=JsonTok3n", ["JsonPass7z", "JsonTok3n"],
         f"json://hookuser:***@{local}/alerts?token=***"),
        ("xml", f"xml://{local}/hook/XmlSecret5Q?+X-Api-Key=XmlHeaderKey1", ["XmlSecret5Q", "XmlHeaderKey1"],
         f"xml://{local}/hook/***?+X-Api-Key=***"),
        ("ntfy", f"ntfy://ntfyuser:NtfyPass6w@{local}/backups", ["NtfyPass6w"], f"ntfy://ntfyuser:***@{local}/backups"),
        ("ntfytoken", f"ntfy://tk_NtfyTok3nAbc@{local}/backups", ["tk_NtfyTok3nAbc"], f"ntfy://***@{local}/backups"),
        ("gotify", f"gotify://{local}/GotifyTok9Kx", ["GotifyTok9Kx"], f"gotify://{local}/***"),
        ("matrix", f"matrix://mxuser:MatrixPass4v@{local}/#ops", ["MatrixPass4v"], f"matrix://mxuser:***@{local}/#ops"),
    ]


def test_secrets_of_every_scheme_are_shown_nowhere(e2e):
    from webtools import start_web
    channels = secret_channels(free_port())
    configure(e2e, '[notify]\nretries = 0\n' + "".join(
        f'[notify.channels.{name}]\nurls = ["{url}"]\ntimeout = "10s"\n' for name, url, _, _ in channels))
    e2e.create_cron("leaky", "--notify", "failure", "--shell", "0 0 1 1 *", "exit 1")
    daemon = e2e.start_daemon()
    e2e.cli("run", "leaky")
    wait_until("every channel's delivery failed", lambda: len(alerts_where(
        e2e, "kind = 'failure' AND status = 'failed'")) == len(channels), 60, 0.2, describe=e2e.log_tail)
    test = e2e.cli("notify-test", check=False)
    assert test.returncode == 1
    for name, _, _, shown in channels:  # recognisable: the scheme, the host, the channel name
        assert f"{name}: FAILED: " in test.stdout and f"({shown})" in test.stdout, (shown, test.stdout)
    web = start_web(e2e)
    try:
        code, page, _ = web.get("/jobs/leaky")
    finally:
        web.stop()
    assert code == 200 and "mailto://alice:***@127.0.0.1" in page.decode()  # the page shows the errors
    outputs = [e2e.cli(*args).stdout for args in (("alerts",), ("alerts", "--json"), ("show", "leaky"))]
    daemon.terminate()
    places = {"notify-test": test.stdout + test.stderr, "scheduler.log": e2e.log_text(),
              "daemon stderr": daemon.stderr(), "alerts": outputs[0], "alerts --json": outputs[1], "show": outputs[2],
              "state.db alerts": json.dumps(e2e.query("SELECT * FROM alerts")), "web job page": page.decode()}
    assert "alert channel slack failing: slack://***/***/***/#ops" in places["scheduler.log"]
    for name, _, secrets, _ in channels:
        for secret in secrets:
            for place, text in places.items():
                assert secret not in text, f"channel {name}: {secret!r} shown in {place}"
