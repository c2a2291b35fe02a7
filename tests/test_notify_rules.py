"""Pure rules of alerts (notify/rules.py), config validation and masking: `now` is a parameter."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pytest

from cron_scheduler.errors import InvalidOption
from cron_scheduler.models import Job, RunStatus, Trigger
from cron_scheduler.notify import rules
from cron_scheduler.notify.config import parse_notify
from cron_scheduler.notify.masking import mask_url, redact, secrets_of
from cron_scheduler.notify.rules import Kind, Streak

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)


@dataclass
class R:  # the fields of history.Run the rules read
    run_id: int
    status: RunStatus
    job_id: str = "backup"
    attempt: int = 1
    trigger: Trigger = Trigger.SCHEDULE
    scheduled_for: str = ""
    started_at: str | None = None
    finished_at: str | None = None
    output_bytes: int | None = 0
    truncated: int = 0


def job(**kw) -> Job:
    return Job(id="backup", schedule="* * * * *", command=("x",), notify=kw.pop("notify", ("failure", "recovered")), **kw)


def simulate(statuses: list[RunStatus], j: Job | None = None) -> list[Kind]:
    """Feed outcomes one by one as the sender does; alerted streak kinds are remembered the way
    the alerts table does (streak_alerted = an alert since the last success)."""
    j = j or job()
    runs: list[R] = []
    sent: list[tuple[int, Kind]] = []
    for i, status in enumerate(statuses, 1):
        run = R(i, status, scheduled_for=f"slot{i}")
        before = list(reversed(runs))
        retried = rules.retried_ids(runs + [run])
        last_ok = next((r.run_id for r in before if r.status is RunStatus.SUCCEEDED), 0)
        streak = Streak(rules.failed_since_success(before, retried),
                        any(rid > last_ok and k in rules.STREAK_KINDS for rid, k in sent))
        for kind in rules.outcome_alerts(status, run, j, streak, run.run_id in retried):
            sent.append((i, kind))
        runs.append(run)
    return [k for _, k in sent]


def test_five_failures_give_one_alert_and_the_success_one_recovered():
    F, S = RunStatus.FAILED, RunStatus.SUCCEEDED
    assert simulate([F] * 5 + [S]) == [Kind.FAILURE, Kind.RECOVERED]


def test_a_second_streak_alerts_again_and_successes_alone_are_silent():
    F, S = RunStatus.FAILED, RunStatus.SUCCEEDED
    assert simulate([S, S, F, F, S, S, F, S]) == [Kind.FAILURE, Kind.RECOVERED, Kind.FAILURE, Kind.RECOVERED]


def test_a_streak_of_mixed_bad_outcomes_alerts_once_with_its_first_kind():
    j = job(notify=("failure", "timeout", "recovered"))
    assert simulate([RunStatus.TIMEOUT, RunStatus.FAILED, RunStatus.TIMEOUT, RunStatus.SUCCEEDED], j) == [
        Kind.TIMEOUT, Kind.RECOVERED]


def test_an_unasked_first_kind_lets_the_next_asked_one_alert():
    j = job(notify=("failure",))
    assert simulate([RunStatus.MISSED, RunStatus.FAILED, RunStatus.FAILED], j) == [Kind.FAILURE]


def test_skipped_and_killed_runs_neither_end_nor_extend_a_streak():
    F, S = RunStatus.FAILED, RunStatus.SUCCEEDED
    assert simulate([F, RunStatus.SKIPPED, RunStatus.KILLED, F, S]) == [Kind.FAILURE, Kind.RECOVERED]


def test_a_failed_attempt_that_is_retried_is_not_an_outcome():
    j = job()
    first = R(1, RunStatus.FAILED, scheduled_for="s")
    retry = R(2, RunStatus.SUCCEEDED, attempt=2, trigger=Trigger.RETRY, scheduled_for="s")
    retried = rules.retried_ids([first, retry])
    assert retried == {1}
    assert rules.outcome_alerts(RunStatus.FAILED, first, j, Streak(), retried=True) == []
    # the retry's success is no recovery: the failed attempt was not the job's outcome
    assert not rules.failed_since_success([first], retried)


def test_recovered_needs_to_be_asked_for():
    j = job(notify=("failure",))
    assert simulate([RunStatus.FAILED, RunStatus.SUCCEEDED], j) == [Kind.FAILURE]


def test_output_alert_over_the_size_or_truncated():
    j = job(notify=("output",), alert_output=1000)
    assert rules.outcome_alerts(RunStatus.SUCCEEDED, R(1, RunStatus.SUCCEEDED, output_bytes=1001), j,
                                Streak(), False) == [Kind.OUTPUT]
    assert rules.outcome_alerts(RunStatus.SUCCEEDED, R(1, RunStatus.SUCCEEDED, output_bytes=1000), j,
                                Streak(), False) == []
    no_size = job(notify=("output",))
    assert rules.outcome_alerts(RunStatus.FAILED, R(1, RunStatus.FAILED, truncated=1), no_size,
                                Streak(), False) == [Kind.OUTPUT]


def test_usual_duration_and_slow_threshold():
    assert rules.usual([1, 2, 3, 4]) is None  # fewer than 5 successful runs: nothing learned
    assert rules.usual([1, 2, 3, 4, 5]) == (3, 5)
    durations = [10.0] * 19 + [20.0]
    assert rules.usual(durations) == (10.0, 10.0)
    assert rules.slow_threshold(job(), durations) == 20.0  # 2x p95
    assert rules.slow_threshold(job(expected_duration=5.0), durations) == 5.0  # --expect wins
    assert rules.slow_threshold(job(), [1.0]) is None


def test_slow_is_judged_while_running_with_now_as_a_parameter():
    run = R(1, RunStatus.RUNNING, started_at=T0.isoformat())
    assert not rules.is_slow(run, 60, T0 + timedelta(seconds=60))
    assert rules.is_slow(run, 60, T0 + timedelta(seconds=61))
    done = R(1, RunStatus.SUCCEEDED, started_at=T0.isoformat())
    assert not rules.is_slow(done, 60, T0 + timedelta(seconds=600))


def test_rate_limit_per_rolling_hour():
    sent = [T0 + timedelta(minutes=i) for i in range(30)]
    assert not rules.rate_allows(sent, 30, T0 + timedelta(minutes=30))
    assert rules.rate_allows(sent, 31, T0 + timedelta(minutes=30))
    # an hour after the first one, a place is free again
    assert rules.rate_allows(sent, 30, T0 + timedelta(minutes=60, seconds=1))
    assert rules.rate_allows(sent, 0, T0)  # 0 = no limit


def test_summary_once_per_hour_and_its_text():
    first = T0
    assert rules.summary_due(first, None, 60) == T0 + timedelta(seconds=60)
    assert rules.summary_due(first, T0 - timedelta(minutes=10), 60) == T0 + timedelta(minutes=50)
    text = rules.summary_text({("backup", "failure"): 5, ("sync", "slow"): 7})
    assert text == "12 more alerts suppressed: backup failure x5, sync slow x7"


def test_identical_alerts_within_the_window_merge():
    earlier = [(7, T0)]
    assert rules.merged_into(earlier, T0 + timedelta(seconds=299), 300) == 7
    assert rules.merged_into(earlier, T0 + timedelta(seconds=301), 300) is None


def test_channels_for_a_job():
    names = ["ops", "chat"]
    assert rules.channels_for(job(), names) == names
    assert rules.channels_for(job(notify_to=("chat",)), names) == ["chat"]
    assert rules.channels_for(None, names) == names


# --- config and masking ----------------------------------------------------------------------

def test_config_parses_channels_and_defaults():
    config = parse_notify({"channels": {"ops": {"urls": ["mailto://u:p@h"]},
                                        "pager": {"command": ["/bin/cat"], "timeout": "5s"}}})
    assert config.rate_limit == 30 and config.channels["pager"].timeout == 5.0
    assert config.channels["ops"].urls == ("mailto://u:p@h",)
    assert config.wave_wait == 60.0 and parse_notify({"wave_wait": "5s"}).wave_wait == 5.0


@pytest.mark.parametrize("raw, named", [
    ({"channel": {}}, "notify.channel"),
    ({"rate_limit": "many"}, "notify.rate_limit"),
    ({"channels": {"ops": {}}}, "notify.channels.ops needs exactly one"),
    ({"channels": {"ops": {"urls": "mailto://x"}}}, "notify.channels.ops.urls"),
    ({"channels": {"ops": {"command": "echo hi"}}}, "notify.channels.ops.command"),
    ({"channels": {"ops": {"command": ["x"], "timeout": "soon"}}}, "soon"),
    ({"wave_wait": "never"}, "notify.wave_wait"),
    ({"channels": {"ops": {"urls": ["x"], "tmeout": 3}}}, "notify.channels.ops.tmeout"),
])
def test_a_bad_notify_block_is_one_line_naming_the_key(raw, named):
    with pytest.raises(InvalidOption) as err:
        parse_notify(raw, "config.toml")
    assert named in str(err.value) and "\n" not in str(err.value) and err.value.exit_code == 2


def test_a_bad_url_in_config_is_named_masked():
    with pytest.raises(InvalidOption) as err:
        parse_notify({"channels": {"ops": {"urls": ["user:Hunter2Secret@host"]}}})
    assert "Hunter2Secret" not in str(err.value)


@pytest.mark.parametrize("url, secret, shown", [
    ("mailto://user:Hunter2@smtp.example.com?to=a@b", "Hunter2", "mailto://user:***@smtp.example.com?to=a@b"),
    ("slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ", "TIiajkdnlazkcOXrIdevi7FQ", None),
    ("json://host/hook?token=abc123", "abc123", "json://host/hook?token=***"),
])
def test_masking(url, secret, shown):
    assert secret in secrets_of(url)
    assert secret not in mask_url(url)
    if shown:
        assert mask_url(url) == shown
    assert redact(f"error talking to {url}: refused", secrets_of(url)).count(secret) == 0


@pytest.mark.parametrize("url, shown", [
    ("slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ/#ch", "slack://***/***/***/#ch"),
    ("slack://botname@xoxb-1234-5678-abcdef/#ops", "slack://***@***/#ops"),
    ("pushover://ukey12@tkey34/phone", "pushover://***@***/phone"),
    ("tgram://123:abc/-1001", "tgram://***/***"),
    ("mailtos://bob@gmail.com?pass=s3", "mailtos://bob@gmail.com?pass=***"),
    ("https://discord.com/api/webhooks/1234/AbCdEf-tok", "https://discord.com/api/webhooks/***/***"),
    ("ntfy://tk_abc@ntfy.example.com/backups?auth=zz", "ntfy://***@ntfy.example.com/backups?auth=***"),
    ("matrixs://mx:pw@matrix.example.com/#ops:example.com", "matrixs://mx:***@matrix.example.com/#ops:example.com"),
    ("json://[::1]:8080/hook?+Authorization=Bearer%20x&to=OpaqueTokenLikeValue123",
     "json://[::1]:8080/hook?+Authorization=***&to=***"),
])
def test_masking_goes_by_rule_whatever_the_scheme(url, shown):
    """Short tokens too: every part that is not a host, a word or a channel name is masked."""
    assert mask_url(url) == shown


# --- recovered and wave digests ---------------------------------------------------------------

def test_recovered_only_after_the_job_itself_failed():
    F, B, M, S, T = RunStatus.FAILED, RunStatus.BLOCKED, RunStatus.MISSED, RunStatus.SUCCEEDED, RunStatus.TIMEOUT
    j = job(notify=("failure", "blocked", "missed", "timeout", "recovered"))
    assert simulate([B, S], j) == [Kind.BLOCKED]  # only blocked by an upstream: nothing to recover from
    assert simulate([M, S], j) == [Kind.MISSED]
    assert simulate([F, B, S], j) == [Kind.FAILURE, Kind.RECOVERED]  # failed, then blocked: its failure ends
    assert simulate([T, S], j) == [Kind.TIMEOUT, Kind.RECOVERED]


@dataclass
class A:  # the fields of store.Alert the digest rule reads
    alert_id: int
    kind: str
    channel: str = "ops"
    wave: int | None = 1
    created_at: str = T0.isoformat()


def test_a_waves_alerts_go_together_once_it_settled_or_after_the_wait():
    due = [A(1, "failure"), A(2, "blocked"), A(3, "failure", channel="chat"), A(4, "slow"), A(5, "daemon", wave=None),
           A(6, "failure", wave=2)]
    ids = lambda groups: [[a.alert_id for a in g] for g in groups]  # noqa: E731
    settled = {1: False, 2: True}.__getitem__
    assert ids(rules.deliveries(due, settled, T0, 60)) == [[4], [5], [6]]  # wave 1 is still running
    assert ids(rules.deliveries(due, settled, T0 + timedelta(seconds=60), 60)) == [[1, 2], [3], [4], [5], [6]]
    assert ids(rules.deliveries(due, lambda wave: True, T0, 60)) == [[1, 2], [3], [4], [5], [6]]
