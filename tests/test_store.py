"""The job store: atomic, locked, permission-tight writes; corrupt stores are never overwritten."""

from __future__ import annotations

import json
import os
import random
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from cron_scheduler import store as store_module
from cron_scheduler.errors import CorruptStore, OperationalError
from cron_scheduler.home import Home
from cron_scheduler.models import Job, Overlap
from cron_scheduler.store import Store

BIN = Path(sys.executable).parent


def make_job(job_id: str, **fields) -> Job:
    return Job(id=job_id, schedule="*/5 * * * *", command=("/bin/true",), **fields)


@pytest.fixture
def store(home) -> Store:
    return Store(Home(home))


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def assert_lock_free(store: Store, monkeypatch) -> dict[str, Job]:
    """A new transaction gets the lock promptly (a dead writer holds nothing)."""
    monkeypatch.setattr(store_module, "LOCK_TIMEOUT", 5.0)
    begin = time.monotonic()
    with store.transaction() as jobs:
        pass
    assert time.monotonic() - begin < 5.0
    return jobs


# --- basics ---------------------------------------------------------------------------------

def test_absent_store_is_empty_and_load_creates_nothing(store, home):
    assert store.load() == {}
    assert not home.exists()
    assert store.signature() is None


def test_round_trip(store, home):
    a = make_job("a", retries=2, overlap=Overlap.QUEUE, env={"K": "v"}, description="caf\u00e9")
    b = make_job("b", depends_on=("a",), timeout=90.0)
    with store.transaction() as jobs:
        assert jobs == {}
        jobs["b"] = b
        jobs["a"] = a
    assert store.load() == {"a": a, "b": b}
    data = json.loads(home.joinpath("jobs.json").read_text())
    assert data["version"] == 1 and list(data["jobs"]) == ["a", "b"]
    assert Job.from_dict(data["jobs"]["b"]) == b
    with store.transaction() as jobs:
        del jobs["a"]
        jobs["b"] = jobs["b"].replace(retries=5)
    assert store.load() == {"b": b.replace(retries=5)}


def test_signature_changes_on_write(store):
    with store.transaction() as jobs:
        jobs["a"] = make_job("a")
    first = store.signature()
    with store.transaction() as jobs:
        jobs["b"] = make_job("b")
    assert first is not None and store.signature() != first


def test_modes_home_0700_files_0600_even_with_umask_0(store, home):
    old = os.umask(0)
    try:
        with store.transaction() as jobs:
            jobs["a"] = make_job("a")
    finally:
        os.umask(old)
    assert mode(home) == 0o700
    assert mode(home / "jobs.json") == 0o600
    assert mode(home / "jobs.json.lock") == 0o600
    assert sorted(p.name for p in home.iterdir()) == ["jobs.json", "jobs.json.lock"]  # no temp file left


def test_exception_inside_transaction_writes_nothing(store, home, monkeypatch):
    with store.transaction() as jobs:
        jobs["a"] = make_job("a")
    before = (home / "jobs.json").read_bytes()
    with pytest.raises(RuntimeError, match="boom"):
        with store.transaction() as jobs:
            jobs["b"] = make_job("b")
            del jobs["a"]
            raise RuntimeError("boom")
    assert (home / "jobs.json").read_bytes() == before
    assert list(store.load()) == ["a"]
    assert_lock_free(store, monkeypatch)


def test_exception_in_first_transaction_creates_no_store(store, home):
    with pytest.raises(ValueError):
        with store.transaction() as jobs:
            jobs["a"] = make_job("a")
            raise ValueError("no")
    assert not (home / "jobs.json").exists()


# --- corrupt stores -------------------------------------------------------------------------

GOOD_RECORD = make_job("a").to_dict()

CORRUPT = {
    "garbage": b"garbage\n",
    "empty-file": b"",
    "truncated": b'{"version": 1, "jobs": {"a": {"id": "a", "sched',
    "not-utf8": b'{"version": 1, "jobs": {}}\xff\xfe',
    "a-list": b"[]",
    "null": b"null",
    "no-jobs": b'{"version": 1}',
    "jobs-a-list": b'{"version": 1, "jobs": []}',
    "wrong-version": b'{"version": 2, "jobs": {}}',
    "no-version": b'{"jobs": {}}',
    "nested-too-deep": b'{"version": 1, "jobs": {"a": ' + b"[" * 100000 + b"]" * 100000 + b"}}",
}

# One bad record does not make the store unusable: it is quarantined (see test_validate.py).
BAD_RECORDS = {
    "record-not-object": ("a", "x"),
    "id-mismatch": ("b", GOOD_RECORD),
    "missing-command": ("a", {"id": "a", "schedule": "@daily"}),
    "bad-overlap": ("a", dict(GOOD_RECORD, overlap="often")),
    "bad-timeout-type": ("a", dict(GOOD_RECORD, timeout="30m")),
}


@pytest.mark.parametrize("content", CORRUPT.values(), ids=CORRUPT.keys())
def test_corrupt_store_is_reported_and_left_byte_identical(store, home, content, monkeypatch):
    home.mkdir(mode=0o700)
    path = home / "jobs.json"
    path.write_bytes(content)
    before = path.stat()
    with pytest.raises(CorruptStore) as info:
        store.load()
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    assert info.value.exit_code == 1
    with pytest.raises(CorruptStore):
        with store.transaction() as jobs:
            jobs["new"] = make_job("new")
    assert path.read_bytes() == content
    assert path.stat().st_mtime_ns == before.st_mtime_ns and path.stat().st_ino == before.st_ino
    assert not [p for p in home.iterdir() if p.name.endswith(".tmp")]
    # the failed transaction released the lock: fixing the file makes writes work again
    path.write_bytes(b'{"version": 1, "jobs": {}}')
    assert_lock_free(store, monkeypatch)


def test_unreadable_store_is_reported(store, home):
    (home / "jobs.json").mkdir(parents=True)  # unreadable as a file, even for root
    with pytest.raises(CorruptStore, match="cannot read"):
        store.load()
    with pytest.raises(CorruptStore):
        with store.transaction():
            pass
    assert (home / "jobs.json").is_dir()


@pytest.mark.parametrize("key,record", BAD_RECORDS.values(), ids=BAD_RECORDS.keys())
def test_bad_record_is_quarantined_and_kept_as_it_was_by_other_writes(store, home, key, record):
    home.mkdir(mode=0o700)
    good = make_job("good").to_record()
    (home / "jobs.json").write_text(json.dumps({"version": 1, "jobs": {key: record, "good": good}}))
    jobs, errors = store.load().valid()
    assert list(jobs) == ["good"] and list(errors) == [key]
    assert key in errors[key] and "\n" not in errors[key]
    with pytest.raises(CorruptStore, match=rf"job '{key}' in .*jobs.json is invalid: .*remove it"):
        store.load()[key]
    with store.transaction() as stored:  # a write that does not touch it
        stored["new"] = make_job("new")
    data = json.loads((home / "jobs.json").read_text())
    assert data["jobs"][key] == record and set(data["jobs"]) == {key, "good", "new"}


def test_bad_record_in_a_large_store_is_reported_and_never_dropped(store, home):
    records = {f"j{i:05d}": make_job(f"j{i:05d}").to_dict() for i in range(1500)}
    records["bad"] = {"id": "bad", "schedule": "@daily", "command": "not a list"}
    home.mkdir(mode=0o700)
    (home / "jobs.json").write_text(json.dumps({"version": 1, "jobs": records}))
    with pytest.raises(CorruptStore, match=str(home / "jobs.json")):
        store.load().decode_all()
    with pytest.raises(CorruptStore):
        store.load()["bad"]
    jobs, errors = store.load().valid()
    assert len(jobs) == 1500 and list(errors) == ["bad"]
    # a write that does not touch it keeps the record as it was
    with store.transaction() as jobs:
        jobs["new"] = make_job("new")
    data = json.loads((home / "jobs.json").read_text())
    assert data["jobs"]["bad"] == records["bad"] and "new" in data["jobs"] and len(data["jobs"]) == 1502


def test_a_held_lock_times_out_with_an_operational_error(store, home, monkeypatch):
    monkeypatch.setattr(store_module, "LOCK_TIMEOUT", 0.2)
    home.mkdir(mode=0o700)
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from filelock import FileLock
            with FileLock({str(home / 'jobs.json.lock')!r}):
                print("held", flush=True)
                sys.stdin.read()
        """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(OperationalError, match="locked"):
            with store.transaction() as jobs:
                jobs["a"] = make_job("a")
    finally:
        holder.stdin.close()
        holder.wait(timeout=10)
    assert not (home / "jobs.json").exists()


# --- concurrency ----------------------------------------------------------------------------

@pytest.mark.slow
def test_50_concurrent_create_cron_writers_all_land(home):
    env = dict(os.environ, CRON_SCHEDULER_HOME=str(home))
    procs = [subprocess.Popen([str(BIN / "create_cron"), f"job{i:02d}", "*/5 * * * *", "/bin/true"],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(50)]
    results = [(p.wait(timeout=60), p.stderr.read()) for p in procs]
    for p in procs:
        p.stdout.close()
        p.stderr.close()
    assert [r for r in results if r[0] != 0] == []
    jobs = Store(Home(home)).load()
    assert sorted(jobs) == [f"job{i:02d}" for i in range(50)]


WRITER = textwrap.dedent("""
    import sys
    from cron_scheduler.home import Home
    from cron_scheduler.store import Store
    store = Store(Home.at(sys.argv[1]))
    for i in range(int(sys.argv[2])):
        with store.transaction() as jobs:
            n = jobs["counter"].retries + 1
            jobs["counter"] = jobs["counter"].replace(retries=n)
""")


@pytest.mark.slow
def test_concurrent_read_modify_write_loses_no_update(store, home):
    with store.transaction() as jobs:
        jobs["counter"] = make_job("counter")
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(home), "10"]) for _ in range(10)]
    assert [p.wait(timeout=120) for p in procs] == [0] * 10
    assert store.load()["counter"].retries == 100


# --- writers killed mid-write ---------------------------------------------------------------

BLOCKING_WRITER = textwrap.dedent("""
    import os, sys, time
    from cron_scheduler.home import Home
    from cron_scheduler.models import Job
    from cron_scheduler.store import Store
    home, point = sys.argv[1], sys.argv[2]
    real = {"fsync": os.fsync, "replace": os.replace}
    calls = []

    def blocker(name):
        def wrapped(*args):
            calls.append(name)
            # point "fsync": the first fsync (temp file written, not renamed);
            # point "dir-fsync": the fsync after the rename (the directory's)
            hit = {"fsync": name == "fsync" and calls.count("fsync") == 1,
                   "replace": name == "replace",
                   "dir-fsync": name == "fsync" and calls.count("fsync") == 2}[point]
            if hit:
                if point == "dir-fsync":
                    real[name](*args)
                print("blocked", flush=True)
                while True:
                    time.sleep(60)
            return real[name](*args)
        return wrapped

    os.fsync = blocker("fsync")
    os.replace = blocker("replace")
    with Store(Home.at(home)).transaction() as jobs:
        jobs["new"] = Job(id="new", schedule="@daily", command=("/bin/true",), description="x" * 100000)
""")


@pytest.mark.parametrize("point, lands", [("fsync", False), ("replace", False), ("dir-fsync", True)])
def test_writer_killed_at_a_blocking_point_leaves_a_valid_store_and_no_lock(store, home, monkeypatch, point, lands):
    with store.transaction() as jobs:
        jobs["old"] = make_job("old")
    before = (home / "jobs.json").read_bytes()
    child = subprocess.Popen([sys.executable, "-c", BLOCKING_WRITER, str(home), point],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "blocked"
        # while the writer is stuck inside the lock, others wait for it
        monkeypatch.setattr(store_module, "LOCK_TIMEOUT", 0.2)
        with pytest.raises(OperationalError, match="locked"):
            with store.transaction():
                pass
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    jobs = store.load()
    if lands:
        assert sorted(jobs) == ["new", "old"]
    else:
        assert (home / "jobs.json").read_bytes() == before
        assert sorted(jobs) == ["old"]
    jobs = assert_lock_free(store, monkeypatch)
    assert sorted(jobs) == sorted(store.load())


CHURNING_WRITER = textwrap.dedent("""
    import sys
    from cron_scheduler.home import Home
    from cron_scheduler.store import Store
    store = Store(Home.at(sys.argv[1]))
    print("started", flush=True)
    i = 0
    while True:
        i += 1
        with store.transaction() as jobs:
            for job_id in list(jobs)[: 50]:
                jobs[job_id] = jobs[job_id].replace(priority=i, description=f"{i}" * 200)
""")


@pytest.mark.slow
def test_writer_sigkilled_at_random_moments_never_corrupts_the_store(store, home, monkeypatch):
    count = 3000
    with store.transaction() as jobs:
        for i in range(count):
            jobs[f"job{i:05d}"] = make_job(f"job{i:05d}", description="y" * 1000)
    assert (home / "jobs.json").stat().st_size > 3_000_000
    rng = random.Random(9)
    priorities = set()
    for _ in range(12):
        child = subprocess.Popen([sys.executable, "-c", CHURNING_WRITER, str(home)], stdout=subprocess.PIPE,
                                 text=True)
        try:
            assert child.stdout.readline().strip() == "started"
            time.sleep(rng.uniform(0.05, 0.6))  # a random moment, not an assertion
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=10)
            child.stdout.close()
        jobs = dict(store.load())  # decodes every record: raises CorruptStore if half-written
        assert len(jobs) == count
        priorities.add(jobs["job00000"].priority)
        assert_lock_free(store, monkeypatch)
    assert len(priorities) > 1  # the killed writers did write, between kills


# --- canonical store: one record a line, read and appended without decoding the rest ---------

def test_the_store_is_one_record_a_line_and_the_lock_file_holds_the_token_of_the_write(store, home):
    with store.transaction() as jobs:
        jobs["b"] = make_job("b")
        jobs["a"] = make_job("a", description="two\nlines")  # a newline stays escaped
    lines = (home / "jobs.json").read_bytes().split(b"\n")
    assert lines[0] == b'{"version": 1, "jobs": {' and lines[-2:] == [b"}}", b""]
    assert [line.split(b":")[0] for line in lines[1:-2]] == [b'"a"', b'"b"']
    assert json.loads((home / "jobs.json").read_text())["jobs"]["a"]["description"] == "two\nlines"
    assert (home / "jobs.json.lock").read_bytes().startswith(b"jobs.json ")


def test_adding_to_a_store_it_wrote_decodes_only_the_touched_lines(store, home, monkeypatch):
    with store.transaction() as jobs:
        for i in range(50):
            jobs[f"j{i:02d}"] = make_job(f"j{i:02d}")
    before = (home / "jobs.json").read_bytes()

    def whole_store(*_):
        raise AssertionError("the whole store was decoded")
    monkeypatch.setattr(store_module._Lines, "all", whole_store)
    from cron_scheduler.jobs import JobService
    JobService(Home(home)).add(make_job("new", depends_on=("j07",)))
    after = (home / "jobs.json").read_bytes()
    assert after.startswith(before[:-len(store_module.TAIL)])  # the old bytes, then the new line
    monkeypatch.undo()
    loaded = store.load()
    assert len(loaded) == 51 and loaded["new"] == make_job("new", depends_on=("j07",))
    assert loaded["j07"] == make_job("j07")


def test_a_hand_edit_that_keeps_the_frame_is_parsed_whole_and_a_broken_one_never_appended_to(store, home):
    with store.transaction() as jobs:
        jobs["a"] = make_job("a")
        jobs["b"] = make_job("b")
    path = home / "jobs.json"
    text = path.read_text()
    path.write_text(text.replace('"b": {', '"b": {,', 1))  # head and tail as written, JSON broken
    broken = path.read_bytes()
    from cron_scheduler.jobs import JobService
    with pytest.raises(CorruptStore):
        JobService(Home(home)).add(make_job("c"))
    assert path.read_bytes() == broken
    # a valid hand edit (same frame, another record) is read whole: the edit is seen
    path.write_text(text.replace('"schedule": "*/5 * * * *"', '"schedule": "@daily"'))
    assert store.load()["b"].schedule == "@daily"
    JobService(Home(home)).add(make_job("c"))
    assert sorted(store.load()) == ["a", "b", "c"] and store.load()["a"].schedule == "@daily"


def test_adding_to_an_empty_canonical_store_and_replacing_a_job_rewrite_it_valid(store, home):
    with store.transaction():
        pass
    from cron_scheduler.jobs import JobService
    service = JobService(Home(home))
    service.add(make_job("a"))
    service.add(make_job("b"))
    service.add(make_job("a", retries=3), replace=True)
    data = json.loads((home / "jobs.json").read_text())
    assert list(data["jobs"]) == ["a", "b"] and data["jobs"]["a"]["retries"] == 3


def test_a_reload_of_a_canonical_store_decodes_only_the_changed_lines(store, home, monkeypatch):
    with store.transaction() as jobs:
        for i in range(30):
            jobs[f"j{i:02d}"] = make_job(f"j{i:02d}")
    assert len(store.load().valid()[0]) == 30
    decoded = []
    real = Job.from_dict.__func__
    monkeypatch.setattr(Job, "from_dict", classmethod(lambda cls, data, *rest: decoded.append(data["id"]) or real(cls, data, *rest)))
    monkeypatch.setattr(store_module.json, "loads", lambda text, _real=json.loads: decoded.append("json") or _real(text))

    class CountingDecoder(json.JSONDecoder):
        def decode(self, text, *args):
            decoded.append("json")
            return super().decode(text, *args)
    monkeypatch.setattr(store_module, "_DECODER", CountingDecoder())
    assert len(store.load().valid()[0]) == 30 and decoded == []  # nothing decoded, nothing validated
    with store.transaction() as jobs:
        jobs["j05"] = jobs["j05"].replace(retries=4)
        jobs["new"] = make_job("new")
    decoded.clear()
    valid, errors = store.load().valid()
    assert sorted(d for d in decoded if d != "json") == ["j05", "new"] and decoded.count("json") == 2
    assert valid["j05"].retries == 4 and len(valid) == 31 and errors == {}


def test_a_hand_written_key_with_quotes_and_newlines_survives_the_line_format(store, home):
    key = 'odd": {"x\n'
    home.mkdir(mode=0o700)
    (home / "jobs.json").write_text(json.dumps({"version": 1, "jobs": {key: {"id": "other"}, "a": make_job("a").to_dict()}}))
    with store.transaction() as jobs:  # rewritten in the line format, the odd record as it was
        jobs["b"] = make_job("b")
    loaded = store.load()
    assert loaded._lines is not None  # read line by line
    valid, errors = loaded.valid()
    assert sorted(valid) == ["a", "b"] and list(errors) == [key]
    from cron_scheduler.jobs import JobService
    JobService(Home(home)).add(make_job("c"))
    data = json.loads((home / "jobs.json").read_text())["jobs"]
    assert data[key] == {"id": "other"} and sorted(data) == sorted([key, "a", "b", "c"])


@pytest.mark.parametrize("canonical", [True, False])
def test_a_load_holds_each_id_and_repeated_value_once(store, home, canonical):
    """Memory of a daemon holding many jobs: a job's id is the very key string it is stored
    under, and equal schedules and commands of one load are one object."""
    with store.transaction() as jobs:
        for job_id in ("a", "b", "c"):
            jobs[job_id] = make_job(job_id, cwd="/srv")
    if not canonical:  # a hand-edited store is parsed whole
        (home / "jobs.json").write_text((home / "jobs.json").read_text().replace("\n", " \n"))
    jobs, errors = store.load().valid()
    assert errors == {} and list(jobs) == ["a", "b", "c"]
    for key, job in jobs.items():
        assert job.id is key
    a, b, c = jobs.values()
    assert a.schedule is b.schedule is c.schedule and a.command is b.command is c.command and a.cwd is c.cwd


@pytest.mark.parametrize("count", [0, 1, 2, 3])
def test_every_line_of_a_canonical_store_is_read_by_a_whole_load(store, count):
    """The first and last lines carry the store's head and tail: a store of one line has both."""
    with store.transaction() as jobs:
        for i in range(count):
            jobs[f"j{i}"] = make_job(f"j{i}", description=f"line {i}")
        if not count:
            jobs["gone"] = make_job("gone")
    if not count:
        with store.transaction() as jobs:
            del jobs["gone"]
    jobs, errors = store.load().valid()
    assert errors == {} and [(j.id, j.description) for j in jobs.values()] == [(f"j{i}", f"line {i}") for i in range(count)]
