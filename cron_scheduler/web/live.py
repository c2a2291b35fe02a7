"""Live updates by Server-Sent Events: run status changes (from the run_events outbox) and a
run's log while it runs.

One poller per web process reads run_events every POLL seconds, and only while a browser
listens: however many pages are open, the daemon sees one short read a second at most.
"""

from __future__ import annotations

import asyncio
import json
from typing import AsyncIterator

from starlette.requests import Request
from starlette.responses import StreamingResponse

from cron_scheduler.models import ACTIVE

POLL = 0.75        # seconds between two reads of run_events (and of a followed log)
KEEPALIVE = 15.0   # a comment line this often keeps proxies from closing an idle stream


class Broadcaster:
    """Fans the new run events out to every listening stream (one queue each)."""

    def __init__(self, home):
        self.home = home
        self.listeners: set[asyncio.Queue] = set()
        self.task: asyncio.Task | None = None
        self.cursor: int | None = None

    def subscribe(self) -> asyncio.Queue:
        queue: asyncio.Queue = asyncio.Queue(maxsize=1000)
        self.listeners.add(queue)
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._poll())
        return queue

    def unsubscribe(self, queue: asyncio.Queue) -> None:
        self.listeners.discard(queue)

    async def _poll(self) -> None:
        from cron_scheduler.web import data
        if self.cursor is None:
            self.cursor = await asyncio.to_thread(data.last_event_id, self.home)
        while self.listeners:
            try:
                events = await asyncio.to_thread(data.events_after, self.home, self.cursor)
            except Exception:  # a damaged or locked state.db: try again at the next poll
                events = []
            for event in events:
                self.cursor = event.event_id
                payload = {"event_id": event.event_id, "run_id": event.run_id, "job_id": event.job_id,
                           "old_status": event.old_status and event.old_status.value,
                           "new_status": event.new_status.value, "at": event.at, "reason": event.reason}
                for queue in list(self.listeners):
                    if not queue.full():
                        queue.put_nowait(payload)
            await asyncio.sleep(POLL)
        self.task = None


def _sse(event: str, data) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


async def events(request: Request) -> StreamingResponse:
    """GET /api/events: `event: run` with {event_id, run_id, job_id, old_status, new_status,
    at, reason} for each run status change from now on."""
    broadcaster: Broadcaster = request.app.state.broadcaster
    queue = broadcaster.subscribe()

    async def stream() -> AsyncIterator[bytes]:
        try:
            yield b": connected\n\n"
            while True:
                try:
                    payload = await asyncio.wait_for(queue.get(), KEEPALIVE)
                    yield _sse("run", payload)
                except asyncio.TimeoutError:
                    yield b": keepalive\n\n"
        finally:
            broadcaster.unsubscribe(queue)

    return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})


async def log_stream(request: Request) -> StreamingResponse:
    """GET /api/runs/{id}/log/stream: the log's last part, then `event: log` chunks
    ({"text": ...}) as the run writes them, and `event: end` ({"status": ...}) once it ended.
    An unknown run (404) or a link at the log's place (409) is a JSON error before the 200; a
    link planted while it streams ends the stream with `event: error` ({"error": ...})."""
    from cron_scheduler.control import require_run
    from cron_scheduler.errors import CronSchedulerError
    from cron_scheduler.web.api import home_of, read_log, run_id_of
    home, run_id = home_of(request), run_id_of(request)
    run = await asyncio.to_thread(require_run, home, run_id)
    first = await asyncio.to_thread(read_log, home, run_id, None)

    async def stream() -> AsyncIterator[bytes]:
        nonlocal run
        data, offset = first
        yield _sse("log", {"text": data.decode("utf-8", "replace"), "offset": offset})
        try:
            while run.status in ACTIVE:
                await asyncio.sleep(POLL)
                run = await asyncio.to_thread(require_run, home, run_id)
                data, end = await asyncio.to_thread(read_log, home, run_id, offset)
                if data:
                    yield _sse("log", {"text": data.decode("utf-8", "replace"), "offset": end})
                offset = end
        except CronSchedulerError as exc:
            yield _sse("error", {"error": str(exc)})
            return
        yield _sse("end", {"status": run.status.value})

    return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})
