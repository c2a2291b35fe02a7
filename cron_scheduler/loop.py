"""The daemon's event loop (DESIGN.md section 7): one selector, a heap of timers, wake fds.

The scheduler owns the loop; pools register their fds (a run's output pipe, its pidfd) and
their deadlines (timers) with it. `run(timeout)` dispatches those until someone calls
`notify()` ("the owner should look now": a run finished, a signal arrived) or the timeout
passes. It sleeps in select() in between and never returns early without a reason: blocked
work waits for an event, not for a zero timeout.
"""

from __future__ import annotations

import heapq
import itertools
import os
import selectors
import time
from typing import Callable


class Timer:
    """A callback due at a monotonic time; cancel() before it fires to drop it."""

    __slots__ = ("when", "callback", "cancelled")

    def __init__(self, when: float, callback: Callable[[], None]):
        self.when, self.callback, self.cancelled = when, callback, False

    def cancel(self) -> None:
        self.cancelled = True


class Loop:
    def __init__(self):
        self._sel = selectors.DefaultSelector()
        self._timers: list[tuple[float, int, Timer]] = []
        self._seq = itertools.count()
        self._notified = False
        self._wake_callbacks: list[Callable[[], None]] = []

    # --- registration ------------------------------------------------------------------------

    def add_reader(self, fd: int, callback: Callable[[], None]) -> None:
        self._sel.register(fd, selectors.EVENT_READ, callback)

    def remove_reader(self, fd: int) -> None:
        try:
            self._sel.unregister(fd)
        except (KeyError, ValueError):
            pass

    def call_at(self, when: float, callback: Callable[[], None]) -> Timer:
        timer = Timer(when, callback)
        heapq.heappush(self._timers, (when, next(self._seq), timer))
        return timer

    def add_wake_fd(self, fd: int) -> None:
        """A non-blocking fd written to in order to wake the loop (signal.set_wakeup_fd): drained
        when readable, then the wake callbacks run and the owner is notified."""
        def drain() -> None:
            try:  # one read; if more is pending, select() reports it again (level-triggered)
                data = os.read(fd, 65536)
            except (BlockingIOError, InterruptedError):
                return
            if not data:  # writer gone: stop watching, or select() would spin on EOF
                self.remove_reader(fd)
            for callback in self._wake_callbacks:
                callback()
            self.notify()
        self.add_reader(fd, drain)

    def on_wake(self, callback: Callable[[], None]) -> None:
        """Run callback whenever a wake fd fired (e.g. SIGCHLD: reap orphans)."""
        self._wake_callbacks.append(callback)

    def notify(self) -> None:
        """Make the current (or next) run() return once the event being handled is done."""
        self._notified = True

    # --- running -----------------------------------------------------------------------------

    def run(self, timeout: float | None) -> None:
        """Dispatch fd events and due timers until notify() or timeout (None: no limit). Returns
        at once if nothing could ever happen (no fd, no timer, no timeout)."""
        end = None if timeout is None else time.monotonic() + timeout
        polled = False  # even run(0) selects once: output and exits are only seen by a select()
        while True:
            now = time.monotonic()
            self._fire_timers(now)
            if self._notified:
                self._notified = False
                return
            if polled and end is not None and now >= end:
                return
            wait = self._wait(now, end)
            if wait is None and not self._sel.get_map():
                return
            for key, _ in self._sel.select(wait):
                key.data()
            polled = True

    def close(self) -> None:
        self._sel.close()
        self._timers.clear()

    def _fire_timers(self, now: float) -> None:
        """Run the timers due by now; those they add wait for the next round (after a select),
        so a timer that re-arms itself in the past cannot starve the fds."""
        due = []
        while self._timers and (self._timers[0][2].cancelled or self._timers[0][0] <= now):
            due.append(heapq.heappop(self._timers)[2])
        for timer in due:
            if not timer.cancelled:
                timer.cancelled = True  # fired: a later cancel() is harmless
                timer.callback()

    def _wait(self, now: float, end: float | None) -> float | None:
        times = [t for t in (end, self._timers[0][0] if self._timers else None) if t is not None]
        return None if not times else max(0.0, min(times) - now)
