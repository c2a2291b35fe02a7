"""jobs.json under faults: CLI writers killed mid-write, and 200 concurrent writers
(DESIGN.md section 2: written under the lock, to a temp file, fsync, os.replace, dir fsync;
never half-written).
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import cron_scheduler.store as store_module
from cron_scheduler.home import Home
from cron_scheduler.models import Job, to_iso, utcnow
from cron_scheduler.store import Store

from harness import child_env, make_home

SEED = 4242
KILLS = 30
BIG = 3000


def _cli(home: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "cron_scheduler", "--home", str(home), *map(str, args)]


def _records(home: Path) -> dict[str, dict]:
    """jobs.json as parsed JSON records; it must also load (and decode) through the Store."""
    raw = json.loads((home / "jobs.json").read_text())
    jobs = Store(Home(home)).load()
    assert set(jobs) == set(raw["jobs"])
    jobs.decode_all()  # every record is a valid job
    return raw["jobs"]


def _temp_files(home: Path) -> list[str]:
    return sorted(p.name for p in home.glob(".jobs.*.tmp"))


def _seed_store(home: Path, ids: list[str]) -> None:
    created = to_iso(utcnow())
    with Store(Home(home)).transaction() as jobs:
        for job_id in ids:
            jobs[job_id] = Job(id=job_id, schedule="@after", command=("/bin/true",), created_at=created,
                               description=f"seed {job_id}")


def _probe_write(home: Path, value: str, monkeypatch) -> float:
    """A new write through the Store, with a 2 s lock timeout; returns how long it took."""
    monkeypatch.setattr(store_module, "LOCK_TIMEOUT", 2.0)
    start = time.monotonic()
    with Store(Home(home)).transaction() as jobs:
        jobs["j0000"] = jobs["j0000"].replace(description=value)
    return time.monotonic() - start


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_cli_writers_killed_mid_write_never_corrupt_the_store(tmp_path, monkeypatch):
    home = make_home(tmp_path)
    _seed_store(home, [f"j{i:04d}" for i in range(BIG)])
    # how long one unkilled write takes here: the kill moments cover all of it
    start = time.monotonic()
    subprocess.run(_cli(home, "add", "--no-check", "warmup", "@after", "/bin/true"), check=True,
                   capture_output=True, env=child_env(), cwd=tmp_path)
    span = max(0.15, (time.monotonic() - start) * 1.1)

    rng = random.Random(SEED)
    before = _records(home)
    outcomes = {"applied": 0, "not applied": 0}
    leftovers = 0
    for i in range(KILLS):
        op = rng.choice(["add", "update", "remove"])
        target = f"j{rng.randrange(1, BIG):04d}"
        if op == "add":
            args, new_id = ("add", "--no-check", "--description", f"kill {i}", f"k{i:02d}",
                            "* * * * *", "/bin/true"), f"k{i:02d}"
        elif op == "update":
            args = ("update", target, "--description", f"updated {i}")
        else:
            args = ("remove", target)
        if op != "add" and target not in before:
            continue
        proc = subprocess.Popen(_cli(home, *args), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env=child_env(), cwd=tmp_path)
        time.sleep(rng.uniform(0.0, span))  # the fault's moment
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

        after = _records(home)  # valid JSON, loads, every record decodes
        changed = {k for k in set(before) | set(after) if before.get(k) != after.get(k)}
        if op == "add":
            assert changed <= {new_id}, f"kill {i} ({op}) changed other jobs: {sorted(changed)[:5]}"
            if changed:
                assert after[new_id]["description"] == f"kill {i}"
        elif op == "update":
            assert changed <= {target}, f"kill {i} ({op}) changed other jobs: {sorted(changed)[:5]}"
            if changed:
                assert after[target] == {**before[target], "description": f"updated {i}"}
        else:
            assert changed <= {target} and (not changed or target not in after), sorted(changed)[:5]
        outcomes["applied" if changed else "not applied"] += 1
        if _temp_files(home):
            leftovers += 1

        # the lock is free: a new write succeeds within 2 s, and it sweeps stale temp files
        took = _probe_write(home, f"probe {i}", monkeypatch)
        assert took < 2.0, f"a write after kill {i} took {took:.1f}s"
        assert _temp_files(home) == [], "a write left (or did not clean) temp files"
        before = _records(home)
        assert before["j0000"]["description"] == f"probe {i}"
    print(f"store kills: {outcomes}, {leftovers} left a temp file behind")
    assert sum(outcomes.values()) >= KILLS // 2


# A writer that stops inside Store._write, after the temp file is written and fsynced and
# before os.replace: killing it there is the worst moment for the store.
PAUSED_WRITER = textwrap.dedent("""
    import os, sys, time
    from cron_scheduler.home import Home
    from cron_scheduler.models import Job, to_iso, utcnow
    from cron_scheduler.store import Store

    real_fsync = os.fsync
    def fsync(fd):
        real_fsync(fd)
        print("in write", flush=True)
        time.sleep(120)
    os.fsync = fsync
    with Store(Home.at(sys.argv[1])).transaction() as jobs:
        jobs["ghost"] = Job(id="ghost", schedule="@after", command=("/bin/true",), created_at=to_iso(utcnow()))
""")


@pytest.mark.timeout(60)
def test_writer_killed_between_temp_file_and_rename(tmp_path, monkeypatch):
    home = make_home(tmp_path)
    _seed_store(home, [f"j{i:04d}" for i in range(50)])
    original = (home / "jobs.json").read_bytes()
    proc = subprocess.Popen([sys.executable, "-c", PAUSED_WRITER, str(home)], stdout=subprocess.PIPE,
                            env=child_env(), cwd=tmp_path, text=True)
    try:
        assert proc.stdout.readline().strip() == "in write"
        assert len(_temp_files(home)) == 1  # the temp file exists, fully written
        # the lock is held now: another writer waits (does not fail, does not write)
        monkeypatch.setattr(store_module, "LOCK_TIMEOUT", 0.3)
        with pytest.raises(store_module.OperationalError, match="locked by another writer"):
            with Store(Home(home)).transaction():
                pass
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    assert (home / "jobs.json").read_bytes() == original
    assert "ghost" not in _records(home)
    took = _probe_write(home, "after the kill", monkeypatch)
    assert took < 2.0
    assert _temp_files(home) == [], "the stale temp file of the killed writer is still there"
    assert _records(home)["j0000"]["description"] == "after the kill"
    assert "ghost" not in _records(home)
    # a CLI write works too
    subprocess.run(_cli(home, "add", "--no-check", "alive", "@after", "/bin/true"), check=True,
                   capture_output=True, env=child_env(), cwd=tmp_path)
    assert "alive" in _records(home)


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_200_concurrent_writers_equal_the_serial_result(tmp_path):
    home = make_home(tmp_path)
    keep = [f"keep{i:03d}" for i in range(20)]
    upd = [f"u{i:03d}" for i in range(50)]
    rem = [f"r{i:03d}" for i in range(50)]
    _seed_store(home, keep + upd + rem)
    seeded = _records(home)

    commands = [_cli(home, "add", "--no-check", "--priority", str(i), f"a{i:03d}", "*/5 * * * *", "/bin/true")
                for i in range(100)]
    commands += [_cli(home, "update", job_id, "--description", f"new {job_id}", "--retries", "2")
                 for job_id in upd]
    commands += [_cli(home, "remove", job_id) for job_id in rem]
    random.Random(SEED).shuffle(commands)
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=child_env(), cwd=tmp_path) for cmd in commands]
    failures = []
    for cmd, proc in zip(commands, procs):
        out, err = proc.communicate(timeout=150)
        if proc.returncode != 0:
            failures.append(f"{' '.join(cmd[4:])}: exit {proc.returncode}: {err.strip()[-300:]}")
    assert not failures, f"{len(failures)} writers failed:\n" + "\n".join(failures[:10])

    final = _records(home)
    assert set(final) == set(keep) | set(upd) | {f"a{i:03d}" for i in range(100)}
    for job_id in keep:
        assert final[job_id] == seeded[job_id]
    for job_id in upd:
        assert final[job_id] == {**seeded[job_id], "description": f"new {job_id}", "retries": 2}
    for i in range(100):
        record = final[f"a{i:03d}"]
        assert record.get("priority", 0) == i and record["schedule"] == "*/5 * * * *"
        assert record["command"] == ["/bin/true"]
    assert _temp_files(home) == []
    assert oct((home / "jobs.json").stat().st_mode & 0o777) == oct(0o600)
