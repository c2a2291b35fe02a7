"""Runs on a Dask cluster (executors/dask.py): a real `dask scheduler` and two `dask worker`
processes on 127.0.0.1 (tests/dask_cluster.py) and the real daemon with --executor dask. The
workers run on this host, so /proc shows what is left of a run on "its worker"."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import DEADLINE, Env, marked_processes, temp_env, wait_until
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
            f.write(f"{{os.environ['CRON_SCHEDULER_RUN_ID']}} {{os.getppid()}}\\n")
        if not os.path.exists({str(flag)!r}):
            open({str(flag)!r}, "w").close()
            time.sleep(120)
    """)
    env.create_cron("w", "--retries", "1", "--retry-delay", "1s", "@daily", str(env.tmp / "once.py"))
    env.start_daemon(*dask_args(dask_cluster))
    first = run_now(env, "w")
    wait_until("the first attempt started", lambda: starts.exists() and starts.read_text().strip())
    worker_pid = int(starts.read_text().split()[1])
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
    finally:
        env.kill_leftovers()  # the first attempt's process lost its worker, not its life
        dask_cluster.start_worker(f"w{len(dask_cluster.workers) + 10}")
        dask_cluster.wait_workers()


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
