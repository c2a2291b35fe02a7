"""Runs on a Dask cluster (executors/dask.py): a real `dask scheduler` and two `dask worker`
processes on 127.0.0.1 (tests/dask_cluster.py) and the real daemon with --executor dask. The
workers run on this host, so /proc shows what is left of a run on "its worker"."""

from __future__ import annotations

import os
import signal
import subprocess
import uuid
from pathlib import Path

import pytest

from harness import DEADLINE, Env, marked_processes, temp_env, wait_until
from cron_scheduler.executors import dask_worker
from cron_scheduler.executors.dask_worker import SUPERVISOR_VAR
from cron_scheduler.runner import MARKER_VAR, process_running, process_start_time
from cron_scheduler.errors import InvalidOption
from cron_scheduler.home import Config, Home, load_config
from cron_scheduler.models import Job, parse_resources

COMPARED = ("job_id", "status", "trigger", "attempt", "exit_code", "signal", "output_bytes", "truncated", "reason")


@pytest.fixture
def env(tmp_path: Path):
    with temp_env(tmp_path) as e:
        yield e


def dask_args(cluster) -> tuple[str, ...]:
    return ("--executor", "dask", "--dask-scheduler", cluster.address)


def run_now(env: Env, job_id: str) -> int:
    return env.run_ids(env.cli("run", job_id))[0]


def ppid(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[1])


def _spawn_marked(marker: str, supervisor: str | None) -> subprocess.Popen:
    """A stand-in for a run's process on a worker's host: the run's marker, and the pid and
    start time of the worker process supervising it, as dask_worker._spawn writes them."""
    env = dict(os.environ, **{MARKER_VAR: marker})
    if supervisor is not None:
        env[SUPERVISOR_VAR] = supervisor
    return subprocess.Popen(["sleep", "60"], env=env, start_new_session=True)


PID_NS = os.readlink("/proc/self/ns/pid").strip("pid:[]")


def _gone_supervisor() -> str:
    """A supervisor as _spawn writes it, of a process that has exited."""
    gone = subprocess.Popen(["sleep", "60"])
    started = process_start_time(gone.pid)
    gone.kill()
    gone.wait()
    return f"{gone.pid}:{started}:{PID_NS}"


def test_kill_orphans_kills_only_runs_whose_supervising_worker_is_gone():
    me = os.getpid()
    names = ("orphan", "reused", "supervised", "local", "other namespace", "garbled")
    markers = {name: f"{name.replace(' ', '-')}-{uuid.uuid4().hex}" for name in names}
    procs = {"orphan": _spawn_marked(markers["orphan"], _gone_supervisor()),
             # its supervisor's pid is alive, but it is another process (started at another time)
             "reused": _spawn_marked(markers["reused"], f"{me}:1:{PID_NS}"),
             "supervised": _spawn_marked(markers["supervised"], f"{me}:{process_start_time(me)}:{PID_NS}"),
             "local": _spawn_marked(markers["local"], None),  # a local pool's run: no supervisor
             # spawned by a worker in a container: its pid means nothing here
             "other namespace": _spawn_marked(markers["other namespace"], f"{me}:1:1"),
             "garbled": _spawn_marked(markers["garbled"], f"9999999:not-a-time:{PID_NS}")}  # never a reason
    try:
        wait_until("the stand-ins exec'd sleep", lambda: all(
            Path(f"/proc/{p.pid}/cmdline").read_bytes().startswith(b"sleep") for p in procs.values()))
        killed = set(dask_worker.kill_orphans())  # (and any other orphan on this machine)
        assert {markers["orphan"], markers["reused"]} <= killed
        spared = ("supervised", "local", "other namespace", "garbled")
        assert not {markers[name] for name in spared} & killed
        assert procs["orphan"].wait(timeout=10) == -signal.SIGKILL
        assert procs["reused"].wait(timeout=10) == -signal.SIGKILL
        assert all(procs[name].poll() is None for name in spared)
        assert not set(markers.values()) & set(dask_worker.kill_orphans())
    finally:
        for proc in procs.values():
            proc.kill()
            proc.wait()


def test_resources_parse_to_dask_amounts():
    assert parse_resources("cpu=2,mem=4GB") == {"cpu": 2.0, "mem": 4 * 1024**3}
    assert parse_resources("none") == {}
    for bad in ("cpu", "cpu=", "=2", "cpu=0", "cpu=two"):
        with pytest.raises(InvalidOption):
            parse_resources(bad)


def test_executor_settings_in_config_toml_are_checked(tmp_path):
    home = Home(tmp_path)
    home.config_file.write_text('executor = "dask"\ndask_scheduler = "tcp://10.0.0.1:8786"\n')
    assert load_config(home) == Config(executor="dask", dask_scheduler="tcp://10.0.0.1:8786")
    for text, what in (('executor = "dask"\n', "needs dask_scheduler"), ('executor = "k8s"\n', "'local' or 'dask'")):
        home.config_file.write_text(text)
        with pytest.raises(InvalidOption, match=what):
            load_config(home)


def test_bad_executor_flags_are_one_line_and_exit_2(env):
    proc = env.cli("daemon", "--executor", "dask", check=False)
    assert proc.returncode == 2 and "needs dask_scheduler" in proc.stderr and "Traceback" not in proc.stderr
    proc = env.cli("daemon", "--executor", "dask", "--dask-scheduler", "tcp://127.0.0.1:1", check=False)
    assert proc.returncode == 1 and "cannot reach the Dask scheduler" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_placement_options_are_stored_on_the_job(env):
    env.cli("add", "p", "@daily", "/bin/true", "--resources", "cpu=2,mem=4GB", "--worker", "tcp://10.0.0.5:4000")
    job = Job.from_dict(env.json("show", "p"))
    assert job.resources == {"cpu": 2.0, "mem": 4 * 1024**3} and job.worker == "tcp://10.0.0.5:4000"
    env.cli("update", "p", "--resources", "none", "--worker", "none")
    job = Job.from_dict(env.json("show", "p"))
    assert job.resources == {} and job.worker is None


def test_runs_on_workers_and_history_looks_like_local_runs(env, dask_cluster):
    side = env.tmp / "parents"
    env.script("job.py", f"""
        import os, sys
        with open({str(side)!r}, "a") as f:
            f.write(f"{{os.getppid()}}\\n")
        print("to stdout"); print("to stderr", file=sys.stderr)
        sys.exit(int(sys.argv[1]))
    """)
    env.create_cron("ok", "@daily", str(env.tmp / "job.py"), "0")
    env.create_cron("bad", "@daily", str(env.tmp / "job.py"), "3")
    env.cli("update", "ok", "--resources", "cpu=1")  # placement: workers declare cpu=4

    def both() -> dict[str, dict]:
        ids = {job: run_now(env, job) for job in ("ok", "bad")}
        env.wait_runs("both runs finished", lambda runs: all(
            r["status"] not in ("queued", "running") for r in runs if r["run_id"] in ids.values()))
        rows = {r["run_id"]: r for r in env.runs()}
        return {job: {**{k: rows[i][k] for k in COMPARED}, "log": env.cli("logs", job).stdout} for job, i in ids.items()}

    local = env.start_daemon()
    on_local = both()
    local.terminate()
    local_parents = set(side.read_text().split())
    side.unlink()
    env.start_daemon(*dask_args(dask_cluster))
    on_dask = both()
    assert on_dask == on_local
    assert on_dask["ok"]["status"] == "succeeded" and on_dask["bad"]["exit_code"] == 3
    assert "to stdout" in on_dask["ok"]["log"] and "to stderr" in on_dask["ok"]["log"]
    worker_pids = {str(p.pid) for p in dask_cluster.workers.values()}
    assert set(side.read_text().split()) <= worker_pids and not local_parents & worker_pids


@pytest.mark.slow
def test_timeout_kills_the_whole_tree_on_the_worker(env, dask_cluster):
    pidfile = env.tmp / "pids"
    env.script("tree.py", f"""
        import os, signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if os.fork() == 0:
            os.setsid()  # leaves the process group: only the marker finds it
            if os.fork() == 0:
                with open({str(pidfile)!r}, "a") as f:
                    f.write(f"{{os.getpid()}}\\n")
                time.sleep(120)
            os._exit(0)
        with open({str(pidfile)!r}, "a") as f:
            f.write(f"{{os.getpid()}}\\n")
        time.sleep(120)
    """)
    env.create_cron("tree", "--timeout", "2s", "@daily", str(env.tmp / "tree.py"))
    env.start_daemon(*dask_args(dask_cluster))
    run_id = run_now(env, "tree")
    wait_until("both processes started", lambda: pidfile.exists() and len(pidfile.read_text().split()) == 2)
    run = env.wait_runs("the run timed out", lambda runs: next(
        (r for r in runs if r["run_id"] == run_id and r["status"] == "timeout"), None))
    assert run["signal"] == "SIGKILL"  # it ignored SIGTERM: killed after the 2s grace
    assert run["marker"] not in marked_processes()  # no survivor on the worker
    assert not any(Path(f"/proc/{pid}").exists() and (Path(f"/proc/{pid}/stat").read_bytes().split(b") ")[1][:1]
                   not in b"ZX") for pid in pidfile.read_text().split())


@pytest.mark.slow
def test_stop_kills_the_run_on_its_worker(env, dask_cluster):
    env.create_cron("long", "@daily", "/bin/sleep", "120")
    env.start_daemon(*dask_args(dask_cluster))
    run_id = run_now(env, "long")
    marker = env.wait_runs("running on a worker", lambda runs: next(
        (r["marker"] for r in runs if r["run_id"] == run_id and r["status"] == "running"), None))
    wait_until("its process started", lambda: marker in marked_processes())
    env.cli("stop", "long")
    run = env.wait_runs("the run was killed", lambda runs: next(
        (r for r in runs if r["run_id"] == run_id and r["status"] == "killed"), None))
    assert run["signal"] == "SIGTERM" and "stop" in (run["reason"] or "")
    assert marker not in marked_processes()


@pytest.mark.slow
def test_worker_killed_mid_run_is_interrupted_retried_and_never_started_twice(env, dask_cluster):
    starts, flag = env.tmp / "starts", env.tmp / "flag"
    env.script("once.py", f"""
        import os, time
        with open({str(starts)!r}, "a") as f:
            f.write(f"{{os.environ['CRON_SCHEDULER_RUN_ID']}} {{os.getppid()}} {{os.getpid()}}\\n")
        if not os.path.exists({str(flag)!r}):
            open({str(flag)!r}, "w").close()
            time.sleep(120)
    """)
    env.create_cron("w", "--retries", "1", "--retry-delay", "1s", "@daily", str(env.tmp / "once.py"))
    env.start_daemon(*dask_args(dask_cluster))
    first = run_now(env, "w")
    wait_until("the first attempt started", lambda: starts.exists() and starts.read_text().strip())
    worker_pid, orphan = map(int, starts.read_text().split()[1:3])
    address = next(a for a, p in dask_cluster.workers.items() if p.pid == worker_pid)
    try:
        dask_cluster.kill_worker(address)
        runs = env.wait_runs("interrupted, then retried to success", lambda runs: runs if len(runs) == 2 and
                             runs[1]["status"] == "succeeded" else None, "w", timeout=DEADLINE)
        assert runs[0]["run_id"] == first and runs[0]["status"] == "interrupted"
        assert "worker" in runs[0]["reason"] and runs[1]["trigger"] == "retry"
        # Dask re-ran the lost task on the other worker at once: its claim stopped it
        lines = starts.read_text().split("\n")
        assert [line.split()[0] for line in lines if line] == [str(first), str(runs[1]["run_id"])]
        # what the dead worker left running was killed by the other worker of this host
        wait_until("the lost run's process was killed", lambda: not process_running(orphan))
    finally:
        env.kill_leftovers()  # only if the assertion above failed
        dask_cluster.start_worker(f"w{len(dask_cluster.workers) + 10}")
        dask_cluster.wait_workers()


@pytest.mark.slow
def test_a_worker_joining_kills_what_a_dead_worker_left_on_its_host(env, dask_cluster):
    env.create_cron("j", "@daily", "true")
    env.start_daemon(*dask_args(dask_cluster))  # its Dask pool registers the sweep with the cluster
    orphan = _spawn_marked(f"left-{uuid.uuid4().hex}", _gone_supervisor())  # no other worker was asked to look
    address = None
    try:
        address = dask_cluster.start_worker(f"joiner{len(dask_cluster.workers)}")
        dask_cluster.wait_workers()
        assert orphan.wait(timeout=DEADLINE) == -signal.SIGKILL
    finally:
        orphan.kill()
        orphan.wait()
        if address is not None:
            dask_cluster.kill_worker(address)


@pytest.mark.slow
def test_daemon_killed_mid_run_reattaches_after_restart(env, dask_cluster):
    starts, go = env.tmp / "starts", env.tmp / "go"
    env.script("slow.py", f"""
        import os, time
        with open({str(starts)!r}, "a") as f:
            f.write("start\\n")
        print("before", flush=True)
        while not os.path.exists({str(go)!r}):
            time.sleep(0.05)
        print("after", flush=True)
    """)
    env.create_cron("s", "@daily", str(env.tmp / "slow.py"))
    first = env.start_daemon(*dask_args(dask_cluster))
    run_id = run_now(env, "s")
    log = env.home / "runs" / "s" / f"{run_id}.log"
    wait_until("its first line reached the daemon's log", lambda: log.exists() and "before" in log.read_text())
    first.kill9()
    go.touch()  # it finishes while no daemon watches: the next one takes its end from the cluster
    env.start_daemon(*dask_args(dask_cluster))
    run = env.wait_runs("the re-attached run succeeded", lambda runs: next(
        (r for r in runs if r["run_id"] == run_id and r["status"] == "succeeded"), None))
    assert "re-supervised" in env.log_text()
    assert log.read_text() == "before\nafter\n" and run["output_bytes"] == len("before\nafter\n")
    assert starts.read_text() == "start\n" and len(env.runs("s")) == 1


@pytest.mark.slow
def test_daemon_restart_reattaches_to_a_run_still_executing_and_can_stop_it(env, dask_cluster):
    env.script("up.py", """
        import time
        print("up", flush=True)
        time.sleep(120)
    """)
    env.create_cron("long", "@daily", str(env.tmp / "up.py"))
    first = env.start_daemon(*dask_args(dask_cluster))
    run_id = run_now(env, "long")
    log = env.home / "runs" / "long" / f"{run_id}.log"
    wait_until("it runs", lambda: log.exists() and "up" in log.read_text())
    marker = env.runs("long")[0]["marker"]
    first.kill9()
    env.start_daemon(*dask_args(dask_cluster))
    wait_until("re-supervised", lambda: "re-supervised" in env.log_text())
    assert env.runs("long")[0]["status"] == "running" and marker in marked_processes()
    env.cli("stop", "long")
    env.wait_runs("killed", lambda runs: next(
        (r for r in runs if r["run_id"] == run_id and r["status"] == "killed"), None))
    assert marker not in marked_processes() and log.read_text() == "up\n"
