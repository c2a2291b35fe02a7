"""loop.py: the scheduler's event loop. Timers, readers, wake fds and notify(), on a real
selector; sleeping is checked with process CPU time."""

from __future__ import annotations

import os
import threading
import time

import pytest

from cron_scheduler.loop import Loop


def test_timers_fire_in_time_order_and_cancelled_ones_never():
    loop, fired = Loop(), []
    now = time.monotonic()
    loop.call_at(now + 0.06, lambda: fired.append("b"))
    loop.call_at(now + 0.03, lambda: fired.append("a"))
    loop.call_at(now + 0.04, lambda: fired.append("never")).cancel()
    loop.run(0.2)
    assert fired == ["a", "b"]


def test_run_returns_on_notify_not_before():
    loop = Loop()
    loop.call_at(time.monotonic() + 0.1, loop.notify)
    start = time.monotonic()
    loop.run(30)
    assert 0.09 <= time.monotonic() - start < 10


def test_run_sleeps_until_its_timeout_without_using_cpu():
    loop = Loop()
    r, w = os.pipe()
    loop.add_reader(r, lambda: None)  # never readable
    cpu, start = time.process_time(), time.monotonic()
    loop.run(0.5)
    assert time.monotonic() - start >= 0.45 and time.process_time() - cpu < 0.2
    os.close(r)
    os.close(w)


def test_a_wake_fd_is_drained_runs_its_callbacks_and_notifies():
    loop, woke = Loop(), []
    r, w = os.pipe()
    os.set_blocking(r, False)
    loop.add_wake_fd(r)
    loop.on_wake(lambda: woke.append(True))
    timer = threading.Timer(0.1, os.write, (w, b"\0\0"))
    timer.start()
    loop.run(30)
    timer.join()
    assert woke == [True]
    loop.run(0.05)  # drained: no second wake-up
    assert woke == [True]
    os.close(r)
    os.close(w)


def test_run_with_nothing_to_wait_for_returns_at_once():
    start = time.monotonic()
    Loop().run(None)
    assert time.monotonic() - start < 1


def test_the_daemons_sleep_is_counted_from_the_end_of_its_pass():
    """A pass that took 200 ms (preparing a hundred runs) must not push the next wake back by
    200 ms: the timeout runs to the wake time from the pass's end; a wake time that came during
    the pass gives one zero timeout; what was due at its start waits for an event."""
    from datetime import datetime, timedelta, timezone
    from types import SimpleNamespace
    from cron_scheduler.home import Config, Home
    from cron_scheduler.scheduler import STORE_POLL, Daemon

    start = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
    daemon = Daemon(Home.at("/nonexistent"), Config())

    def timeout(wake_in: float, pass_took: float) -> float:
        engine = SimpleNamespace(next_wake=lambda: start + timedelta(seconds=wake_in))
        return daemon._timeout(engine, start, start + timedelta(seconds=pass_took))

    assert timeout(0.25, 0.2) == pytest.approx(0.05)   # not 0.25
    assert timeout(0.25, 0.3) == 0.0                   # came during the pass: at once
    assert timeout(0.0, 0.3) == STORE_POLL             # due at its start: handled, no spin
    assert timeout(5.0, 0.0) == STORE_POLL
