"""The dashboard's pure parts: schedules in words, the SVG charts, binds and the token."""

from __future__ import annotations

import os
import xml.dom.minidom

import pytest

from cron_scheduler.errors import InvalidOption, UnsafePath
from cron_scheduler.home import Home
from cron_scheduler.web import auth, charts
from cron_scheduler.web.words import in_words


@pytest.mark.parametrize("expr, words", [
    ("30 2 * * *", "every day at 02:30 Europe/Berlin"),
    ("@daily", "every day at 00:00 Europe/Berlin"),
    ("*/5 * * * *", "every 5 minutes"),
    ("* * * * *", "every minute"),
    ("15 * * * *", "every hour at :15"),
    ("0 9 * * 1-5", "on weekdays at 09:00 Europe/Berlin"),
    ("0 9 * * MON,wed", "every Monday, Wednesday at 09:00 Europe/Berlin"),
    ("0 0 1 * *", "on day 1 of every month at 00:00 Europe/Berlin"),
    ("0 */2 * * *", "every 2 hours at :00"),
    ("*/10 * * * * *", "every 10s"),
    ("@every 90s", "every 90s"),
    ("@after", "after backup succeeds"),
    ("H 3 * * *", "cron H 3 * * * (Europe/Berlin)"),   # no guess: the fields as they are
    ("0 0 31 1,3 *", "cron 0 0 31 1,3 * (Europe/Berlin)"),
])
def test_schedules_in_words(expr, words):
    assert in_words(expr, "Europe/Berlin", ["backup"]) == words


def _run(run_id, status, start, end, **extra):
    base = {"run_id": run_id, "job_id": "a", "status": status, "trigger": "schedule", "attempt": 1, "wave": None,
            "reason": None, "scheduled_for": start, "queued_at": start, "started_at": start, "finished_at": end,
            "duration": 60.0 if end else None}
    return dict(base, **extra)


def test_the_gantt_stacks_overlapping_runs_and_escapes_text():
    from datetime import datetime, timezone
    t0 = datetime(2026, 1, 1, 10, tzinfo=timezone.utc)
    runs = [_run(1, "succeeded", "2026-01-01T10:00:00+00:00", "2026-01-01T10:30:00+00:00"),
            _run(2, "failed", "2026-01-01T10:10:00+00:00", "2026-01-01T10:20:00+00:00", attempt=2,
                 reason="<script>x</script>"),
            _run(3, "blocked", "2026-01-01T10:40:00+00:00", None, started_at=None, queued_at=None)]
    svg = charts.gantt(runs, ["a"], t0, t0.replace(hour=11), t0.replace(hour=11))
    xml.dom.minidom.parseString(svg)  # well-formed
    assert svg.count('class="run ') == 2 and 'class="tick blocked"' in svg
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    assert 'stroke-dasharray="3 2"' in svg  # the retry
    # two overlapping runs of one job: two lanes, so the row is twice as tall as one
    single = charts.gantt(runs[:1], ["a"], t0, t0.replace(hour=11), t0.replace(hour=11))
    height = lambda s: float(s.split('height="', 1)[1].split('"', 1)[0])
    assert height(svg) - height(single) == 16


def test_the_duration_chart_draws_the_usual_band():
    runs = [_run(i, "succeeded", "2026-01-01T10:00:00+00:00", "2026-01-01T10:01:00+00:00") for i in range(1, 6)]
    svg = charts.duration_chart(runs, (50.0, 70.0))
    xml.dom.minidom.parseString(svg)
    assert 'class="band"' in svg and "p50 50s" in svg and "p95 1m10s" in svg and svg.count("<circle") == 5


@pytest.mark.parametrize("bind, host, port", [("127.0.0.1:8765", "127.0.0.1", 8765), ("[::1]:80", "::1", 80),
                                              ("localhost:1", "localhost", 1)])
def test_binds(bind, host, port):
    assert auth.parse_bind(bind) == (host, port) and auth.is_loopback(host)
    auth.check_bind(host, use_token=False)


@pytest.mark.parametrize("bind", ["8765", "host:", ":80", "a:99999", "a:b"])
def test_bad_binds(bind):
    with pytest.raises(InvalidOption):
        auth.parse_bind(bind)


def test_beyond_loopback_without_a_token_is_refused():
    for host in ("0.0.0.0", "192.168.1.5", "example.org"):
        assert not auth.is_loopback(host)
        with pytest.raises(InvalidOption, match="without a token"):
            auth.check_bind(host, use_token=False)
        auth.check_bind(host, use_token=True)


def test_the_token_is_0600_kept_and_compared_in_constant_time(tmp_path):
    home = Home(tmp_path / "home")
    first = auth.token(home)
    assert auth.token(home) == first and len(first) >= 40
    assert os.stat(home.root / auth.TOKEN_FILE).st_mode & 0o777 == 0o600
    assert auth.matches(first, first) and not auth.matches(first, first[:-1]) and not auth.matches(None, None)
    assert auth.presented({"authorization": f"Bearer {first}"}) == first
    assert auth.presented({"cookie": f"x={first}"}) is None  # never from a cookie
    os.chmod(home.root / auth.TOKEN_FILE, 0o644)
    with pytest.raises(Exception, match="readable by group or others"):
        auth.token(home)


def test_a_link_at_the_token_is_refused(tmp_path):
    home = Home(tmp_path / "home")
    home.ensure()
    (home.root / auth.TOKEN_FILE).symlink_to(tmp_path / "target")
    with pytest.raises(UnsafePath):
        auth.token(home)
    assert not (tmp_path / "target").exists()


def test_the_read_cookie_is_derived_from_the_token_and_is_not_it():
    token = "a" * 43
    cookie = auth.read_credential(token)
    assert cookie == auth.read_credential(token) and len(cookie) == 64
    assert token not in cookie and cookie != auth.read_credential(token + "b")


def test_the_timeline_fits_its_window_to_the_runs_and_its_ticks_to_the_window():
    from datetime import datetime, timedelta, timezone
    from cron_scheduler.schedule import get_zone
    from cron_scheduler.web.pages import DEFAULT_HOURS, MIN_WINDOW, fitted_start
    now = datetime(2026, 1, 1, 12, tzinfo=timezone.utc)
    default = now - timedelta(hours=DEFAULT_HOURS)
    iso = lambda minutes: (now - timedelta(minutes=minutes)).isoformat()
    three = [_run(1, "succeeded", iso(3), iso(2.9)), _run(2, "running", iso(1), None)]
    assert fitted_start(three, default, now) == now - timedelta(minutes=3) * 1.05
    assert fitted_start([_run(1, "succeeded", iso(0.1), iso(0.05))], default, now) == now - MIN_WINDOW
    assert fitted_start([], default, now) == default
    assert fitted_start([_run(1, "running", iso(60 * 24), None)], default, now) == default  # never wider
    # a few minutes: ticks every 30 s, labelled with seconds; hours: on the zone's whole hours
    assert charts.tick_step(180) == 30 and charts.tick_step(6 * 3600) == 1800 and charts.tick_step(86400 * 14) == 172800
    svg = charts.gantt(three, ["a"], now - timedelta(minutes=3), now, now, zone=timezone.utc)
    assert ">11:57:30<" in svg and ">11:59:30<" in svg
    kolkata = charts.ticks(now, now + timedelta(hours=3), 3600, get_zone("Asia/Kolkata"))
    assert [t.astimezone(get_zone("Asia/Kolkata")).strftime("%H:%M") for t in kolkata] == ["18:00", "19:00", "20:00"]
