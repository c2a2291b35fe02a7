"""Value parsers (durations, sizes, job ids) and the Job record's JSON form."""

from __future__ import annotations

import copy
import json
import pickle

import pytest

from cron_scheduler.errors import CorruptStore, InvalidDuration, InvalidJobId, InvalidOption
from cron_scheduler.models import (CatchUp, Job, Overlap, format_duration, parse_duration, parse_notify,
                                   parse_size, validate_job_id)


# --- durations ----------------------------------------------------------------------------

@pytest.mark.parametrize("text, seconds", [
    ("30", 1800), ("1", 60), ("1.5", 90), (" 30 ", 1800),
    ("90s", 90), ("0.5s", 0.5), ("15m", 900), ("2h", 7200), ("2H", 7200), ("1h30m", 5400), ("1d", 86400),
    ("1d2h3m4s", 93784),
])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["-5", "10x", "0", "0s", "0m", "", "   ", "s", "h30", "1h-30m", "30 m", "nan",
                                  "inf", "1e3", "1m1h"])
def test_parse_duration_refuses(text):
    with pytest.raises(InvalidDuration) as info:
        parse_duration(text)
    assert info.value.exit_code == 2
    assert repr(text) in str(info.value)


def test_parse_duration_error_names_what():
    with pytest.raises(InvalidDuration, match="retry delay"):
        parse_duration("soon", "retry delay")


@pytest.mark.parametrize("seconds, text", [(None, "-"), (90, "1m30s"), (5400, "1h30m"), (86400, "1d"), (0.5, "0.5s")])
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


@pytest.mark.parametrize("text", ["90s", "15m", "2h", "1h30m", "1d", "1d2h3m4s", "0.5s"])
def test_format_duration_reads_back_as_the_same_duration(text):
    assert parse_duration(format_duration(parse_duration(text))) == parse_duration(text)


# --- sizes, notify events -------------------------------------------------------------------

@pytest.mark.parametrize("text, size", [
    ("100", 100), ("100b", 100), ("512K", 512 * 1024), ("1kib", 1024), ("10MB", 10 * 1024**2),
    ("10 mb", 10 * 1024**2), ("1G", 1024**3), ("1gb", 1024**3),
])
def test_parse_size(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["0", "-1", "", "10XB", "1.5M", "MB", "ten"])
def test_parse_size_refuses(text):
    with pytest.raises(InvalidOption) as info:
        parse_size(text)
    assert info.value.exit_code == 2


def test_parse_notify():
    assert parse_notify("failure, slow,recovered") == ("failure", "slow", "recovered")
    assert parse_notify("") == ()
    with pytest.raises(InvalidOption, match="'sometimes'"):
        parse_notify("failure,sometimes")


# --- job ids --------------------------------------------------------------------------------

@pytest.mark.parametrize("job_id", ["a", "A1", "0", "backup", "a.b-c_d", "a.", "a-", "x" * 64])
def test_valid_job_ids(job_id):
    assert validate_job_id(job_id) == job_id


@pytest.mark.parametrize("job_id", [
    "", "x" * 65, "-a", ".a", "_a", "a/b", "/a", "a..b", "..", "a b", " a", "a\x01b", "a\n", "a\tb",
    "é", "aé", "caf\u00e9", "１", "a\u200bb",
])
def test_invalid_job_ids(job_id):
    with pytest.raises(InvalidJobId) as info:
        validate_job_id(job_id)
    assert info.value.exit_code == 2
    message = str(info.value)
    assert "\n" not in message and "\x01" not in message  # control characters are shown escaped


# --- the Job record -------------------------------------------------------------------------

def full_job() -> Job:
    """A job with every field set to a non-default value."""
    return Job(
        id="full", schedule="*/5 * * * *", command=("/bin/echo hi",), shell=True, timeout=60.0,
        depends_on=("a", "b"), retries=3, retry_delay=45.0, overlap=Overlap.QUEUE, catch_up=CatchUp.ALL,
        priority=7, timezone="Europe/Berlin", start_at="2026-01-01T00:00:00+00:00",
        end_at="2027-01-01T00:00:00+00:00", cwd="/tmp", env={"A": "1", "B": "x=y"}, enabled=False,
        notify=("failure", "slow"), notify_to=("ops",), alert_output=2048, expected_duration=30.0, max_output=1024,
        resources={"cpu": 2.0, "mem": 4294967296.0}, worker="tcp://10.0.0.5:40000", description="d\u00e9j\u00e0 vu",
        created_at="2025-12-01T08:00:00+00:00", source="/srv/pipelines/etl.yaml", user="www-data",
        group="adm", memory_max=512 * 1024**2, cpu_max=0.5, pids_max=64, nice=10)


def test_full_job_sets_every_field():
    defaults = Job(id="x", schedule="@daily", command=("x",))
    job = full_job()
    same = [name for name in Job.__dataclass_fields__ if name not in ("id", "schedule", "command")
            and getattr(job, name) == getattr(defaults, name)]
    assert same == []


def test_job_round_trips_through_json():
    job = full_job()
    data = json.loads(json.dumps(job.to_dict()))
    assert set(data) == set(Job.__dataclass_fields__)
    assert data["command"] == ["/bin/echo hi"] and data["overlap"] == "queue" and data["catch_up"] == "all"
    again = Job.from_dict(data)
    assert again == job
    assert isinstance(again.command, tuple) and isinstance(again.overlap, Overlap)


def test_from_dict_fills_defaults_and_ignores_unknown_keys():
    job = Job.from_dict({"id": "x", "schedule": "@daily", "command": ["x"], "added_later": 1})
    assert job == Job(id="x", schedule="@daily", command=("x",))


def test_a_job_has_no_per_instance_dict():
    """Memory of a daemon holding 100,000 jobs: fields in slots, no __dict__ per job."""
    for job in (full_job(), Job.from_dict({"id": "x", "schedule": "@daily", "command": ["x"]})):
        assert not hasattr(job, "__dict__")
        with pytest.raises((AttributeError, TypeError)):  # TypeError: Python 3.11's frozen slots
            job.extra = 1  # type: ignore[attr-defined]


def test_jobs_without_env_or_resources_share_one_read_only_empty_mapping():
    built = Job(id="a", schedule="@daily", command=("x",))
    read = Job.from_dict({"id": "b", "schedule": "@daily", "command": ["x"]})
    assert built.env is read.env is built.resources is read.resources
    assert built.env == {} and not read.resources
    with pytest.raises(TypeError, match="read-only"):
        read.env["PATH"] = "/tmp"  # type: ignore[index]
    with pytest.raises(TypeError, match="read-only"):
        read.resources.update(cpu=1.0)  # type: ignore[attr-defined]
    assert read.env == {} and Job(id="c", schedule="@daily", command=("x",)).env == {}
    # the JSON shapes and the copies are those of plain dicts
    data = read.to_dict()
    assert type(data["env"]) is dict and type(data["resources"]) is dict
    assert json.loads(json.dumps(data))["env"] == {} and "env" not in read.to_record()
    for again in (pickle.loads(pickle.dumps(read)), copy.deepcopy(read), read.replace(retries=1)):
        assert again.env == {} and again.resources == {} and type(again) is Job
    assert read.replace(env={"A": "1"}).env == {"A": "1"}


def test_from_dict_builds_the_same_job_as_the_constructor_for_every_field():
    job = full_job()
    again = Job.from_dict(job.to_dict())
    assert type(again) is Job and again == job
    assert [getattr(again, f) for f in Job.__dataclass_fields__] == [getattr(job, f) for f in Job.__dataclass_fields__]
    with pytest.raises(Exception, match="cannot assign"):
        again.retries = 4  # frozen as a constructed Job is
    assert hash(Job.from_dict(BASE)) == hash(Job(id="x", schedule="* * * * *", command=("/bin/true",)))


def test_from_dict_holds_repeated_values_of_one_load_once():
    strings: dict = {}
    records = [{"id": f"j{i}", "schedule": "0 " + "3 * * *", "command": ["/usr/bin/" + "backup", "--all"],
                "timezone": "Europe/" + "Paris", "depends_on": []} for i in range(3)]
    jobs = [Job.from_dict(r, strings) for r in records]
    assert jobs[0].schedule is jobs[1].schedule is jobs[2].schedule
    assert jobs[0].command is jobs[1].command and jobs[0].timezone is jobs[2].timezone
    assert [j.id for j in jobs] == ["j0", "j1", "j2"]
    bad = dict(records[0], command=["/bin/echo", {"not": "a string"}])  # judged by validate, as before
    with pytest.raises(CorruptStore, match="command must be a string"):
        Job.from_dict(bad, strings)


BASE = {"id": "x", "schedule": "* * * * *", "command": ["/bin/true"]}


@pytest.mark.parametrize("record", [
    {},
    {"id": "x"},
    {"id": "x", "schedule": "* * * * *"},
    dict(BASE, command="/bin/true"),
    dict(BASE, command=[]),
    dict(BASE, command=["/bin/echo", 1]),
    dict(BASE, id=5),
    dict(BASE, schedule=None),
    dict(BASE, depends_on="a"),
    dict(BASE, notify=[None]),
    dict(BASE, overlap="sometimes"),
    dict(BASE, catch_up="maybe"),
    dict(BASE, env=["A=1"]),
    dict(BASE, env={"A": 1}),
    dict(BASE, retries="many"),
    dict(BASE, retries=1.5),
    dict(BASE, priority=None),
    dict(BASE, timeout="30m"),
    dict(BASE, timeout=True),
    dict(BASE, retry_delay=None),
    dict(BASE, max_output="10MB"),
    dict(BASE, enabled="yes"),
    dict(BASE, shell=1),
    dict(BASE, timezone=1),
    dict(BASE, start_at="next tuesday"),
    dict(BASE, end_at=20260101),
    dict(BASE, created_at="yesterday"),
    dict(BASE, description=None),
], ids=lambda r: ",".join(f"{k}={v!r}" for k, v in r.items() if k not in BASE or BASE[k] != v) or "empty")
def test_from_dict_of_malformed_records_raises_corrupt_store(record):
    with pytest.raises(CorruptStore) as info:
        Job.from_dict(record)
    assert info.value.exit_code == 1


def test_duration_and_size_limits_are_inclusive_and_refusals_say_the_limit():
    assert parse_duration("36500d") == 36500 * 86400
    with pytest.raises(InvalidDuration, match=r"at most 100 years \(36500d\)"):
        parse_duration("36501d")
    assert parse_size("1024G") == 1024 ** 4
    with pytest.raises(InvalidOption, match=r"at most 1 TiB \(1024G\)"):
        parse_size("1025G")
