"""Deliveries in flight: at most one per channel, each in a thread of its own, so a channel
that hangs holds up its own alerts only (a command is bounded by its timeout, then its tree is
killed; Apprise stops waiting at the timeout it is given).

The sender's loop stays the only user of state.db: a worker hands its result back through a
queue and wakes the loop with a byte on a pipe (`fileno()`, for its select()).
"""

from __future__ import annotations

import os
import queue
import threading
from dataclasses import dataclass
from typing import Any

from cron_scheduler.models import utcnow
from cron_scheduler.notify.config import Channel


@dataclass(frozen=True)
class Done:
    channel: str
    alerts: list            # the store.Alert rows the message carried
    error: str | None       # None: delivered
    note: str               # e.g. a command's stderr
    at: Any                 # when it ended (datetime)


class Dispatcher:
    def __init__(self):
        self.busy: dict[str, list] = {}  # channel -> the alerts in flight
        self.results: queue.SimpleQueue[Done] = queue.SimpleQueue()
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)

    def fileno(self) -> int:
        return self.wake_r

    def idle(self, channel: str) -> bool:
        return channel not in self.busy

    def start(self, channel: Channel, alerts: list, event: dict[str, Any]) -> None:
        self.busy[channel.name] = alerts
        threading.Thread(target=self._work, args=(channel, alerts, event), name=f"alerts-{channel.name}",
                         daemon=True).start()

    def _work(self, channel: Channel, alerts: list, event: dict[str, Any]) -> None:
        from cron_scheduler.notify.channels import ChannelFailed, deliver
        error, note = None, ""
        try:
            note = deliver(channel, event)
        except ChannelFailed as exc:
            error = str(exc)
        except Exception as exc:  # noqa: BLE001 - a bug fails this delivery, not the sender
            # (its type only: its text may hold a URL's secret)
            error = f"internal error while delivering: {type(exc).__name__}"
        self.results.put(Done(channel.name, alerts, error, note, utcnow()))
        try:
            os.write(self.wake_w, b"x")
        except OSError:  # full: the loop is awake already
            pass

    def finished(self) -> list[Done]:
        """The deliveries that ended since the last call; their channels are idle again."""
        try:
            while os.read(self.wake_r, 4096):
                pass
        except BlockingIOError:
            pass
        done = []
        while True:
            try:
                result = self.results.get_nowait()
            except queue.Empty:
                return done
            self.busy.pop(result.channel, None)
            done.append(result)
