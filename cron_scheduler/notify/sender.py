"""The alert sender: a process of its own, started by the daemon (notify.link), that follows
the run_events outbox by a cursor persisted in state.db, records every alert in the `alerts`
table and delivers it, retrying with backoff a bounded number of times. Each channel delivers
in a thread of its own (dispatch.py), so a hanging channel delays no other; the alerts of one
wave go to a channel as one digest once the wave settled (rules.deliveries).

A process rather than a thread of the daemon: the daemon reaps every child with wait4(-1) (it
is a child subreaper), which would steal the exit status of a command channel; a hanging SMTP
server, Apprise's import and its CPU never touch the scheduling loop; and it has its own SQLite
connection. Its stdin is a pipe from the daemon (a line "quit" = clean stop; "daemon TEXT" = a
daemon event; end of file = the daemon is gone); its stderr lines go to scheduler.log.

    python -m cron_scheduler.notify.sender --home DIR --daemon-pid PID
"""

from __future__ import annotations

import argparse
import logging
import os
import select
import signal
import sys
import time
from datetime import datetime, timedelta

from cron_scheduler.errors import CronSchedulerError
from cron_scheduler.history import History
from cron_scheduler.home import Home, load_config
from cron_scheduler.models import RunStatus, parse_iso, utcnow
from cron_scheduler.notify import message, rules
from cron_scheduler.notify.config import NotifyConfig, parse_notify
from cron_scheduler.notify.dispatch import Dispatcher
from cron_scheduler.notify.rules import Kind
from cron_scheduler.notify.store import FAILED, PENDING, SENT, SUPPRESSED, AlertStore

log = logging.getLogger("cron_scheduler.notify")
POLL = 0.25          # seconds between two looks at the outbox
SLOW_EVERY = 1.0     # seconds between two looks for slow runs
DRAIN = 10.0         # at a clean stop: seconds spent delivering what is due
BATCH = 500


class Sender:
    def __init__(self, home: Home, daemon_pid: int | None = None, since: str | None = None):
        self.home, self.daemon_pid, self.since = home, daemon_pid, since
        self.history = History.open(home)
        self.history.set_busy_timeout(10.0)
        self.store = AlertStore(self.history)
        self.config, self.config_sig = NotifyConfig(), None
        self.jobs: dict = {}
        self.jobs_sig = None
        self.failing: dict[str, str] = {}      # channel -> error, while it fails (logged once)
        self.said: set[str] = set()            # other warnings said once
        self.slow_checked = 0.0
        self.dispatcher = Dispatcher()
        self.reload()
        self.host = message.host_name(self.config.host)

    # --- inputs --------------------------------------------------------------------------

    def reload(self) -> None:
        """config.toml and jobs.json, when they changed (a broken file keeps the last good one)."""
        from cron_scheduler.store import Store
        sig = _signature(self.home.config_file)
        if sig != self.config_sig:
            self.config_sig = sig
            try:
                self.config = parse_notify(load_config(self.home).notify, str(self.home.config_file))
            except CronSchedulerError as exc:
                log.error("config not reloaded, keeping the last good channels: %s", exc)
        store = Store(self.home)
        sig = store.signature()
        if sig != self.jobs_sig:
            self.jobs_sig = sig
            try:
                self.jobs = store.load().decode_all()
            except CronSchedulerError as exc:
                log.error("job store unusable, keeping the last good jobs: %s", exc)

    # --- start and stop --------------------------------------------------------------------

    def begin(self, now: datetime) -> None:
        """First start on a home: follow the outbox from the daemon's start (`since`; older runs
        cause no alerts). A
        daemon that did not stop cleanly last time: a `daemon` alert."""
        with self.store.transaction():
            if self.store.get("cursor") is None:
                self.store.put("cursor", str(self.store.last_event_id(self.since)))
            previous = self.store.get("daemon_pid")
            if previous:
                self.daemon_alert(f"the daemon restarted after a crash (pid {previous} did not stop cleanly)", now)
            self.store.put("daemon_pid", str(self.daemon_pid or os.getpid()))
            self.store.retry_now(now)  # alerts left pending by the previous daemon: try them again now

    def end_clean(self) -> None:
        with self.store.transaction():
            self.store.put("daemon_pid", None)

    # --- one pass --------------------------------------------------------------------------

    def tick(self, now: datetime) -> None:
        self.reload()
        self.follow(now)
        if time.monotonic() - self.slow_checked >= SLOW_EVERY:
            self.slow_checked = time.monotonic()
            self.check_slow(now)
        self.summaries(now)
        self.deliver(now)

    def follow(self, now: datetime) -> None:
        """Alerts for the run events after the cursor; the cursor moves in the same commit."""
        cursor = int(self.store.get("cursor") or 0)
        while True:
            events = self.history.events(cursor, BATCH)
            if not events:
                return
            for event in events:
                alerts = self.decide(event, now)
                with self.store.transaction():
                    for kind, payload, job in alerts:
                        self.record(kind, payload, job, now, run_id=event.run_id, event_id=event.event_id)
                    self.store.put("cursor", str(event.event_id))
                cursor = event.event_id

    def decide(self, event, now: datetime) -> list[tuple[Kind, dict, object]]:
        status = event.new_status
        if not status.final or status in rules.NEUTRAL:
            return []
        job = self.jobs.get(event.job_id)
        if job is None or not job.notify:
            return []
        try:
            run = self.history.get_run(event.run_id)
        except CronSchedulerError:  # pruned or unreadable
            return []
        recent = self.history.runs(job.id, limit=200)
        retried = rules.retried_ids(recent)
        before = [r for r in recent if r.run_id < run.run_id]
        last_ok = next((r.run_id for r in before if r.status is RunStatus.SUCCEEDED), 0)
        streak = rules.Streak(rules.failed_since_success(before, retried),
                              self.store.streak_alerted(job.id, last_ok, [k.value for k in rules.STREAK_KINDS]))
        kinds = rules.outcome_alerts(status, run, job, streak, run.run_id in retried)
        if not kinds:
            return []
        usual = rules.usual(self.durations(job.id, before_run=run.run_id))
        tail = self.output_tail(run) if run.output_path else None
        return [(kind, message.run_event(kind, run, job, usual, self.host, now, tail), job) for kind in kinds]

    def durations(self, job_id: str, before_run: int | None = None) -> list[float]:
        runs = self.history.runs(job_id, status=RunStatus.SUCCEEDED.value, limit=rules.USUAL_RUNS + 1)
        found = [rules.duration(r) for r in runs if before_run is None or r.run_id < before_run]
        return [d for d in found if d is not None][:rules.USUAL_RUNS]

    def output_tail(self, run) -> str | None:
        from cron_scheduler.control import open_run_log
        try:
            return message.tail(open_run_log(self.home, run))
        except (CronSchedulerError, OSError):
            return None

    def check_slow(self, now: datetime) -> None:
        """A `slow` alert while the run still runs: past --expect, or 2x the learned p95."""
        for run in self.history.with_status(RunStatus.RUNNING):
            job = self.jobs.get(run.job_id)
            if job is None or Kind.SLOW.value not in job.notify or self.store.has_alert(run.run_id, Kind.SLOW.value):
                continue
            durations = self.durations(job.id)
            threshold = rules.slow_threshold(job, durations)
            if rules.is_slow(run, threshold, now):
                payload = message.run_event(Kind.SLOW, run, job, rules.usual(durations), self.host, now,
                                            threshold=threshold)
                with self.store.transaction():
                    self.record(Kind.SLOW, payload, job, now, run_id=run.run_id)

    def daemon_alert(self, text: str, now: datetime, skip: str | None = None) -> None:
        payload = message.plain_event(Kind.DAEMON, text, self.host, now)
        with self.store.transaction():
            self.record(Kind.DAEMON, payload, None, now, skip=skip)

    def record(self, kind: Kind, payload: dict, job, now: datetime, run_id: int | None = None,
               event_id: int | None = None, skip: str | None = None) -> None:
        """One alert row per channel of the job: pending, or suppressed when merged."""
        names = [n for n in rules.channels_for(job, self.config.channels) if n != skip]
        if job is not None and job.notify_to:
            for name in set(job.notify_to) - set(self.config.channels):
                self.say_once(f"job {job.id}: --notify-to names channel {name!r}, which config.toml does not define")
        window = self.config.merge_window
        job_id = getattr(job, "id", None)
        for name in names:
            merged = rules.merged_into(self.store.recent(kind.value, job_id, name, now - timedelta(seconds=window)),
                                       now, window)
            status, error = (PENDING, None) if merged is None else (
                SUPPRESSED, f"merged: same as alert {merged} within {window:g}s")
            self.store.add(kind.value, name, payload, now, job_id=job_id, run_id=run_id, event_id=event_id,
                           status=status, error=error)

    def summaries(self, now: datetime) -> None:
        """One summary per channel of the alerts its rate limit suppressed."""
        for name in self.config.channels:
            held = self.store.unsummarized(name)
            if not held:
                continue
            due = rules.summary_due(parse_iso(held[0].created_at), self.store.last_summary(name),
                                    self.config.summary_delay)
            if now < due:
                continue
            counts: dict[tuple[str, str], int] = {}
            for alert in held:
                key = (alert.job_id or "", alert.kind)
                counts[key] = counts.get(key, 0) + 1
            text = (rules.summary_text(counts)
                    + f" (rate limit: {self.config.rate_limit} alerts an hour on channel {name})")
            with self.store.transaction():
                self.store.add(Kind.SUMMARY.value, name, message.plain_event(Kind.SUMMARY, text, self.host, now), now)
                self.store.mark_summarized([a.alert_id for a in held])

    # --- delivery ----------------------------------------------------------------------------

    def deliver(self, now: datetime) -> None:
        """Record the deliveries that ended, then start the next one of every idle channel (a
        wave's alerts as one digest, once the wave settled)."""
        self.collect()
        cursor = int(self.store.get("cursor") or 0)
        due = [a for a in self.store.due(now) if self.dispatcher.idle(a.channel)]
        started: set[str] = set()
        for alerts in rules.deliveries(due, lambda wave: self.store.wave_settled(wave, cursor), now,
                                       self.config.wave_wait):
            name = alerts[0].channel
            if name in started:
                continue
            channel = self.config.channels.get(name)
            if channel is None:
                self.finish_all(alerts, FAILED, now, "channel no longer in config.toml")
                continue
            if (alerts[0].kind not in (Kind.SUMMARY, Kind.TEST) and alerts[0].attempts == 0
                    and not self.rate_allows(name)):
                self.finish_all(alerts, SUPPRESSED, now,
                                f"rate limit: {self.config.rate_limit} alerts an hour on channel {name}")
                continue
            started.add(name)
            self.dispatcher.start(channel, alerts, message.digest([a.payload for a in alerts]))

    def collect(self) -> None:
        for done in self.dispatcher.finished():
            if done.error is None:
                self.sent(done)
            else:
                self.failed(done.alerts, done.error, done.at)

    def finish_all(self, alerts, status: str, now: datetime, error: str) -> None:
        with self.store.transaction():
            for alert in alerts:
                self.store.finish(alert.alert_id, status, alert.attempts, now, error)

    def sent(self, done) -> None:
        with self.store.transaction():
            for alert in done.alerts:
                self.store.finish(alert.alert_id, SENT, alert.attempts + 1, done.at)
        first = done.alerts[0]
        log.info("%s sent to channel %s, %.2fs after it was recorded%s", _what(done.alerts), done.channel,
                 (done.at - parse_iso(first.created_at)).total_seconds(), f"; stderr: {done.note}" if done.note else "")
        if self.failing.pop(done.channel, None) is not None:
            log.info("alert channel %s works again", done.channel)

    def rate_allows(self, channel: str) -> bool:
        now = utcnow()  # not the pass's start: sends of this pass happened after it
        return rules.rate_allows(self.store.sent_times(channel, now - timedelta(seconds=rules.HOUR)),
                                 self.config.rate_limit, now)

    def failed(self, alerts, error: str, now: datetime) -> None:
        with self.store.transaction():
            for alert in alerts:
                attempts = alert.attempts + 1
                retry = attempts <= self.config.retries
                later = now + timedelta(seconds=self.config.retry_delay * 2 ** (attempts - 1)) if retry else None
                self.store.finish(alert.alert_id, PENDING if retry else FAILED, attempts, now, error, later)
        channel = alerts[0].channel
        if channel not in self.failing:  # logged once per failing spell of the channel
            self.failing[channel] = error
            log.error("alert channel %s failing: %s (%s)", channel, error,
                      f"retrying {self.config.retries} times with backoff" if self.config.retries else "not retried")
            if alerts[0].kind != Kind.DAEMON:
                self.daemon_alert(f"alert channel {channel} failing: {error}", now, skip=channel)

    def say_once(self, text: str) -> None:
        if text not in self.said:
            self.said.add(text)
            log.warning("%s", text)

    # --- the loop --------------------------------------------------------------------------

    def serve(self, control) -> int:
        """Until the daemon says quit (drain, clean) or goes away (end of file)."""
        self.begin(utcnow())
        buffer = b""
        while True:
            try:
                self.tick(utcnow())
            except CronSchedulerError as exc:  # state.db refused a write: the next pass retries
                self.say_once(f"alerts paused: {exc}")
            readable, _, _ = select.select([control, self.dispatcher], [], [], POLL)
            if control not in readable:
                continue
            data = os.read(control, 65536)
            if not data:
                log.warning("the daemon went away; undelivered alerts wait for its next start")
                return 0
            buffer += data
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                text = line.decode(errors="replace")
                if text == "quit":
                    self.drain()
                    return 0
                if text.startswith("daemon "):
                    self.daemon_alert(text[len("daemon "):], utcnow())

    def drain(self) -> None:
        """A clean stop: what is due now is delivered (for up to DRAIN seconds); the rest, and
        deliveries still in flight then (their commands killed), stay pending in state.db for
        the next start."""
        from cron_scheduler.notify.channels import kill_running
        deadline = time.monotonic() + DRAIN
        try:
            self.reload()
            self.follow(utcnow())
            self.summaries(utcnow())
            while True:
                self.deliver(utcnow())
                left = deadline - time.monotonic()
                if not self.dispatcher.busy or left <= 0:
                    break
                select.select([self.dispatcher], [], [], min(left, POLL))
            self.end_clean()
        except CronSchedulerError as exc:
            log.error("alerts: stopping without delivering everything: %s", exc)
        finally:
            kill_running()


def _what(alerts) -> str:
    """"alert 7 (failure backup)", or for a digest "alerts 7, 8 (wave 3: failure backup, blocked etl)"."""
    kinds = ", ".join(f"{a.kind}{' ' + a.job_id if a.job_id else ''}" for a in alerts)
    if len(alerts) == 1:
        return f"alert {alerts[0].alert_id} ({kinds})"
    return f"alerts {', '.join(str(a.alert_id) for a in alerts)} (wave {alerts[0].wave}: {kinds})"


def _signature(path):
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class _LevelFormatter(logging.Formatter):
    def format(self, record):
        return f"{record.levelname} {record.getMessage()}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cron_scheduler.notify.sender")
    parser.add_argument("--home", required=True)
    parser.add_argument("--daemon-pid", type=int)
    parser.add_argument("--since", help="ISO instant: on a first start, events from then on alert")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # Ctrl-C reaches the daemon, which says quit
    signal.signal(signal.SIGHUP, signal.SIG_IGN)   # config.toml is re-read when it changes
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_LevelFormatter())
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    try:
        sender = Sender(Home.at(args.home), args.daemon_pid, args.since)
        return sender.serve(sys.stdin.fileno())
    except CronSchedulerError as exc:
        log.error("alerts stopped: %s", exc)
        return 1


if __name__ == "__main__":
    sys.exit(main())
