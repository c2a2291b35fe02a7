"""loop.py: the scheduler's event loop. Timers, readers, wake fds and notify(), on a real
selector; sleeping is checked with process CPU time."""

from __future__ import annotations

import os
import threading
import time

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
