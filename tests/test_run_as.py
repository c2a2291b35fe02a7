"""Jobs that run as their user (--user, --group), under resource limits (--memory-max,
--cpu-max, --pids-max) and at a priority (--nice): issue 23. Real daemon, real accounts of
this host (nobody, www-data, list), real files.

Switching accounts needs root: those tests are skipped otherwise. Limits need the cgroup v2
memory/cpu/pids controllers: where the host lacks them (a cgroup v1 host) the refusal is what is
tested, and the OOM test is skipped with the reason.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest

from harness import child_env, temp_env
from cron_scheduler import cgroup, runas, runner
from cron_scheduler.cgroup import RunCgroups, limit_files
from cron_scheduler.runner import RunSpec

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="switching to another account needs root")
NOBODY = pwd.getpwnam("nobody")
LIMITS_PROBLEM = cgroup.host_problem(cgroup.CONTROLLERS)


@pytest.fixture
def env(tmp_path):
    with temp_env(tmp_path) as e:
        yield e


@pytest.fixture
def shared_dir():
    """A directory any account may write (tmp_path's parents are root's only)."""
    path = Path(tempfile.mkdtemp(prefix="cron-run-as-"))
    path.chmod(0o1777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def last_run(env, job_id: str) -> dict:
    env.cli("run", job_id, "--wait", "--timeout", "60", check=False)
    return env.history(job_id)[0]


def run_output(env, job_id: str) -> str:
    return env.cli("logs", job_id).stdout


# --- --user --------------------------------------------------------------------------------

@needs_root
def test_a_job_as_nobody_runs_as_nobody_with_crons_environment(env, shared_dir):
    env.create_cron("who", "--user", "nobody", "--shell", "@daily",
                    f"id -u > {shared_dir}/uid; id -G > {shared_dir}/groups; touch {shared_dir}/made; "
                    'echo "HOME=$HOME USER=$USER LOGNAME=$LOGNAME SHELL=$SHELL PWD=$(pwd)"; '
                    "echo to-stderr >/dev/stderr")
    env.start_daemon()
    run = last_run(env, "who")
    assert run["status"] == "succeeded", run
    assert (shared_dir / "uid").read_text().strip() == str(NOBODY.pw_uid)
    assert (shared_dir / "groups").read_text().split() == [str(g) for g in os.getgrouplist("nobody", NOBODY.pw_gid)]
    made = (shared_dir / "made").stat()
    assert (made.st_uid, made.st_gid) == (NOBODY.pw_uid, NOBODY.pw_gid)
    out = run_output(env, "who")
    # cron's: HOME/USER/LOGNAME of the account, SHELL=/bin/sh; its home is missing here: cwd /
    assert "HOME=/nonexistent USER=nobody LOGNAME=nobody SHELL=/bin/sh PWD=/" in out
    assert "to-stderr" in out  # it may reopen its output (its FIFO is its own)
    log = Path(run["output_path"]).stat()
    assert (log.st_uid, oct(log.st_mode & 0o777)) == (0, "0o600")  # the log stays the daemon's


@needs_root
def test_a_job_as_nobody_can_neither_read_nor_write_the_home(env, shared_dir):
    home = env.home
    env.create_cron("snoop", "--user", "nobody", "--shell", "@daily",
                    "; ".join(f"cat {home}/{name} >/dev/null 2>&1 && echo READ {name}"
                              for name in ("state.db", "jobs.json", "config.toml"))
                    + f"; touch {home}/planted 2>/dev/null && echo WROTE; "
                    f"ls {home}/runs >/dev/null 2>&1 && echo LISTED; echo done > {shared_dir}/done")
    assert (home / "config.toml").exists()
    env.start_daemon()
    run = last_run(env, "snoop")
    assert (shared_dir / "done").exists(), run
    out = run_output(env, "snoop")
    assert "READ" not in out and "WROTE" not in out and "LISTED" not in out, out
    assert not (home / "planted").exists()


@needs_root
def test_group_replaces_the_primary_group(env, shared_dir):
    env.create_cron("grp", "--user", "nobody", "--group", "www-data", "--shell", "@daily",
                    f"id -g > {shared_dir}/gid")
    env.start_daemon()
    assert last_run(env, "grp")["status"] == "succeeded"
    assert (shared_dir / "gid").read_text().strip() == str(pwd.getpwnam("www-data").pw_gid)


@needs_root
def test_nice_applies_before_the_drop_so_a_user_run_may_get_a_negative_one(env, shared_dir):
    env.create_cron("prio", "--user", "nobody", "--nice=-5", "--shell", "@daily", f"nice > {shared_dir}/nice")
    env.create_cron("low", "--nice", "7", "--shell", "@daily", f"nice > {shared_dir}/low")
    env.start_daemon()
    assert last_run(env, "prio")["status"] == "succeeded"
    assert last_run(env, "low")["status"] == "succeeded"
    assert (shared_dir / "nice").read_text().strip() == "-5"
    assert (shared_dir / "low").read_text().strip() == "7"


def test_an_account_this_host_lacks_is_refused_at_add_with_one_line(env):
    proc = env.create_cron("x", "--user", "no-such-user-xyz", "@daily", "/bin/true", check=False)
    assert (proc.returncode, proc.stderr.strip()) == (
        1, "create_cron: error: user 'no-such-user-xyz' does not exist on this host (--user/--group)")
    proc = env.create_cron("x", "--user", "nobody", "--group", "no-such-group-xyz", "@daily", "/bin/true",
                           check=False)
    assert proc.returncode == 1 and "group 'no-such-group-xyz' does not exist" in proc.stderr
    proc = env.create_cron("x", "--group", "nogroup", "@daily", "/bin/true", check=False)
    assert (proc.returncode, proc.stderr.strip()) == (2, "create_cron: error: group (--group) needs user (--user)")
    proc = env.create_cron("x", "--user", "bad name!", "@daily", "/bin/true", check=False)
    assert proc.returncode == 2 and "invalid user 'bad name!'" in proc.stderr
    assert not (env.home / "jobs.json").exists()


def test_an_account_gone_since_the_add_fails_the_run_with_the_reason(env):
    env.create_cron("gone", "--user", "nobody", "@daily", "/bin/true")
    data = json.loads((env.home / "jobs.json").read_text())
    data["jobs"]["gone"]["user"] = "no-such-user-xyz"  # as if userdel ran after the add
    (env.home / "jobs.json").write_text(json.dumps(data))
    env.start_daemon()
    run = last_run(env, "gone")
    assert run["status"] == "failed" and run["reason"] == "user 'no-such-user-xyz' does not exist on this host"


def spec(tmp_path: Path, argv=("/bin/true",), **kw) -> RunSpec:
    home = tmp_path / "home"
    (home / "runs" / "j").mkdir(parents=True, exist_ok=True)
    home.chmod(0o700)
    return RunSpec(run_id=1, job_id="j", argv=argv, env=dict(os.environ), cwd=None,
                   log_path=home / "runs" / "j" / "1.log", max_output=1024, timeout=None,
                   marker=uuid.uuid4().hex, **kw)


def test_a_daemon_that_is_not_root_refuses_another_account_but_runs_its_own(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 4321)
    with pytest.raises(ValueError, match=r"^cannot run as user 'nobody': the daemon is not root \(it runs as uid 4321\)$"):
        runner.prepare(spec(tmp_path, user="nobody"))
    monkeypatch.setattr(os, "geteuid", lambda: NOBODY.pw_uid)
    assert runas.for_run("nobody", None, tmp_path) is None  # its own account: nothing to switch


@needs_root
def test_a_run_as_nobody_keeps_none_of_the_daemons_supplementary_groups(tmp_path, shared_dir):
    before = os.getgroups()
    os.setgroups([4])  # as a daemon started from a login shell would have (adm)
    try:
        pid, out_fd = runner.spawn(spec(tmp_path, user="nobody", argv=("/bin/sh", "-c", f"id -G > {shared_dir}/g")))
        os.waitpid(pid, 0)
        os.close(out_fd)
    finally:
        os.setgroups(before)
    assert (shared_dir / "g").read_text().split() == [str(g) for g in os.getgrouplist("nobody", NOBODY.pw_gid)]


@needs_root
def test_a_home_open_to_other_users_refuses_runs_as_them(tmp_path):
    s = spec(tmp_path, user="nobody")
    (tmp_path / "home").chmod(0o755)
    with pytest.raises(ValueError, match=r"the home .* is open to other users \(mode 755; chmod 700 it\)"):
        runner.prepare(s)
    assert not runner.pipe_path(s.log_path).exists()  # nothing left behind


# --- resource limits -----------------------------------------------------------------------

def test_limits_are_cgroup_files():
    assert limit_files(50 * 1024**2, 0.5, 64) == {"memory.max": "52428800", "memory.swap.max": "0",
                                                   "cpu.max": "50000 100000", "pids.max": "64"}
    assert limit_files(None, 2, None) == {"cpu.max": "200000 100000"}


def test_oom_kills_and_peak_memory_are_read_from_the_runs_cgroup(tmp_path):
    cgroups = RunCgroups(tmp_path)
    run_dir = cgroups.create_dir("m1")
    (run_dir / "memory.events").write_text("low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\noom_group_kill 0\n")
    (run_dir / "memory.peak").write_text("52428800\n")
    assert cgroups.usage("m1") == (True, 52428800)
    (run_dir / "memory.events").write_text("low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n")
    assert cgroups.usage("m1") == (False, 52428800)
    assert cgroups.usage("none") == (False, None)


def test_an_oom_kill_in_the_runs_cgroup_is_recorded_as_its_own_reason_with_the_peak(tmp_path):
    """The pool reads the run's cgroup at its end and the record says why it died. A stand-in
    cgroup directory (this host may lack the memory controller): the run itself writes what the
    kernel would, then dies as the OOM killer kills (SIGKILL)."""
    from cron_scheduler.engine import Engine
    from cron_scheduler.engine.results import OOM_REASON
    from cron_scheduler.history import History
    from cron_scheduler.home import Config, Home
    from cron_scheduler.models import RunStatus
    from cron_scheduler.pool import LocalPool
    home = Home(tmp_path / "home").ensure()
    runner.use_cgroups(RunCgroups(tmp_path / "cg"))
    pool = LocalPool(kill_grace=1.0)
    try:
        history = History.open(home)
        now = datetime.now(timezone.utc)
        run_id = history.add_run(RunStatus.QUEUED, now.isoformat(), job_id="hog", scheduled_for=now.isoformat(),
                                 trigger="manual")
        history.transition(run_id, RunStatus.RUNNING, now.isoformat(), started_at=now.isoformat())
        marker = uuid.uuid4().hex
        cg = tmp_path / "cg" / f"run-{marker}"
        cg.mkdir(parents=True)
        (cg / "cgroup.procs").touch()
        script = f'printf "oom 1\\noom_kill 1\\n" > {cg}/memory.events; echo 52428800 > {cg}/memory.peak; kill -9 $$'
        pool.submit(RunSpec(run_id=run_id, job_id="hog", argv=("/bin/sh", "-c", script), env=dict(os.environ),
                            cwd=None, log_path=home.run_log("hog", run_id), max_output=1024, timeout=None,
                            marker=marker, limits=limit_files(None, None, 8)))
        results = []
        deadline = time.monotonic() + 30
        while not results and time.monotonic() < deadline:
            results = pool.wait(1.0)
        (result,) = results
        assert (cg / "pids.max").read_text() == "8"  # its limit, written before it started
        assert (result.signal, result.oom_killed, result.memory_peak) == (9, True, 52428800)
        Engine(home, Config(), pool, history).recorder.record(result, now)
        run = history.get_run(run_id)
        assert (run.status, run.reason, run.memory_peak_kb) == ("failed", OOM_REASON, 51200)
    finally:
        pool.shutdown(1.0)
        runner.use_cgroups(None)


def test_a_limit_the_run_cgroups_cannot_apply_is_refused_with_the_reason(tmp_path):
    cgroups = RunCgroups(tmp_path, {"memory": "cannot enable it under /x: Device or resource busy"})
    cgroups.create_dir("m2")
    with pytest.raises(ValueError, match=r"^--memory-max needs the cgroup v2 memory controller: cannot enable"):
        cgroups.limit("m2", limit_files(1 << 20, None, None))


def test_limits_without_cgroups_fail_the_run_never_run_it_uncapped(tmp_path):
    runner.use_cgroups(None, "no cgroup2 file system mounted")
    try:
        with pytest.raises(ValueError, match=r"^--pids-max needs cgroup v2: no cgroup2 file system mounted$"):
            runner.prepare(spec(tmp_path, limits=limit_files(None, None, 10)))
    finally:
        runner.use_cgroups(None)


@pytest.mark.skipif(LIMITS_PROBLEM is None, reason="this host has the cgroup v2 controllers")
def test_limits_on_a_host_without_cgroup_v2_controllers_are_refused(env):
    proc = env.create_cron("big", "--memory-max", "50M", "@daily", "/bin/true", check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"create_cron: error: --memory-max needs cgroup v2: {LIMITS_PROBLEM}"
    assert not (env.home / "jobs.json").exists()
    env.create_cron("big", "@daily", "/bin/true")  # a record written elsewhere: refused at its run
    data = json.loads((env.home / "jobs.json").read_text())
    data["jobs"]["big"]["memory_max"] = 50 * 1024**2
    (env.home / "jobs.json").write_text(json.dumps(data))
    env.start_daemon()
    run = last_run(env, "big")
    assert run["status"] == "failed" and run["reason"].startswith("--memory-max needs ")


@pytest.mark.skipif(not ROOT or LIMITS_PROBLEM is not None,
                    reason=f"needs root and the cgroup v2 memory controller: {LIMITS_PROBLEM}")
def test_a_run_over_its_memory_cap_is_recorded_as_an_oom_kill_with_its_peak(env):
    hog = env.script("hog.py", "x = bytearray(200 * 1024 * 1024)\nfor i in range(0, len(x), 4096):\n    x[i] = 1\n")
    env.create_cron("hog", "--memory-max", "50M", "--pids-max", "16", "--cpu-max", "1", "@daily", str(hog))
    env.start_daemon()
    run = last_run(env, "hog")
    assert run["status"] == "failed" and run["reason"] == "killed by the kernel: out of memory", run
    peak = env.query("SELECT memory_peak_kb FROM runs WHERE run_id = ?", (run["run_id"],))[0]["memory_peak_kb"]
    assert 40 * 1024 <= peak <= 51 * 1024


# --- import-crontab --system ----------------------------------------------------------------

CRON_D = {
    "certbot": "SHELL=/bin/sh\nPATH=/usr/local/sbin:/usr/local/bin:/sbin:/bin:/usr/sbin:/usr/bin\n\n"
               "0 */12 * * * root test -x /usr/bin/certbot && perl -e 'sleep int(rand(43200))' && certbot -q renew\n",
    "sysstat": "# Activity reports every 10 minutes everyday\n"
               "5-55/10 * * * * root command -v debian-sa1 > /dev/null && debian-sa1 1 1\n"
               "59 23 * * * root command -v debian-sa1 > /dev/null && debian-sa1 60 2\n",
    "php": "09,39 * * * * www-data [ -x /usr/lib/php/sessionclean ] && /usr/lib/php/sessionclean\n",
    "mailman": "0 8 * * * list [ -x /usr/lib/mailman/cron/checkdbs ] && /usr/lib/mailman/cron/checkdbs\n"
               "27 3 * * * list echo $(id -un) > {out}/mailman\n",
    "munin": "MAILTO=root\n*/5 * * * * munin if [ -x /usr/bin/munin-cron ]; then /usr/bin/munin-cron; fi\n",
}


def test_import_crontab_system_keeps_each_lines_user(env, shared_dir):
    jobs = {}
    for name, text in CRON_D.items():
        path = env.tmp / name
        path.write_text(text.replace("{out}", str(shared_dir)))
        proc = env.cli("import-crontab", "--system", "--prefix", f"{name}-", str(path), check=False)
        if name == "munin":  # no munin account on this host: refused, not turned into a root job
            assert proc.returncode == 2 and "user 'munin' does not exist on this host" in proc.stderr
            continue
        assert proc.returncode == 0, proc.stderr
    for job in env.json("list"):
        jobs[job["id"]] = env.json("show", job["id"])
    users = sorted((job["id"].split("-")[0], job["user"]) for job in jobs.values())
    me = None if ROOT else pwd.getpwuid(os.geteuid()).pw_name  # root's lines: the daemon's own
    assert users == [("certbot", me), ("mailman", "list"), ("mailman", "list"), ("php", "www-data"),
                     ("sysstat", me), ("sysstat", me)]
    if not ROOT:
        return
    echo = next(job_id for job_id, job in jobs.items() if "id -un" in job["command"][0])
    env.start_daemon()
    assert last_run(env, echo)["status"] == "succeeded"
    assert (shared_dir / "mailman").read_text().strip() == "list"
    assert (shared_dir / "mailman").stat().st_uid == pwd.getpwnam("list").pw_uid


def test_pipeline_files_take_user_and_limits(env):
    (env.tmp / "p.yaml").write_text("jobs:\n  web:\n    schedule: '@daily'\n    command: /bin/true\n"
                                    "    user: www-data\n    group: nogroup\n    nice: 5\n")
    env.cli("apply", "p.yaml")
    job = env.json("show", "web")
    assert (job["user"], job["group"], job["nice"]) == ("www-data", "nogroup", 5)
    exported = env.cli("export").stdout
    assert "user: www-data" in exported and "nice: 5" in exported
    (env.tmp / "bad.yaml").write_text("jobs:\n  web:\n    schedule: '@daily'\n    command: /bin/true\n"
                                      "    user: no-such-user-xyz\n")
    proc = env.cli("apply", "bad.yaml", check=False)
    assert proc.returncode == 2  # a pipeline file's errors name the line
    assert proc.stderr.strip() == ("cron-scheduler: error: bad.yaml:5: job 'web': user 'no-such-user-xyz' "
                                   "does not exist on this host (--user/--group)")
    assert env.json("show", "web")["user"] == "www-data"  # the store untouched
