"""engine.recover with real processes: what a crashed daemon left behind."""

import os
import subprocess
import sys
import time
import uuid
from datetime import datetime, timezone

from harness import pid_alive

from cron_scheduler.engine import Engine, recover
from cron_scheduler.engine.launch import argv
from cron_scheduler.engine.results import status_of as _status_of
from cron_scheduler.history import History
from cron_scheduler.home import Config, Home
from cron_scheduler.models import RunStatus
from cron_scheduler.pool import LocalPool
from cron_scheduler.models import Job
from cron_scheduler.runner import MARKER_VAR, Outcome, RunResult, process_start_time


def test_recover_records_a_dead_run_interrupted_and_does_not_chase_what_it_left(tmp_path):
    # The run's main process ended while no daemon ran; a background process it started lives
    # on. Without the crash the pool would not have chased it (a run ends when its main
    # process does): recovery must not kill it either.
    home = Home(tmp_path / "home").ensure()
    marker = uuid.uuid4().hex
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    leftover = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                                env=dict(os.environ, **{MARKER_VAR: marker}), start_new_session=True)
    try:
        history = History.open(home)
        now = datetime.now(timezone.utc)
        run_id = history.add_run(RunStatus.QUEUED, now.isoformat(), job_id="gone",
                                 scheduled_for=now.isoformat(), trigger="manual")
        history.transition(run_id, RunStatus.RUNNING, now.isoformat(), started_at=now.isoformat(),
                           pid=int(dead), pid_start=1, marker=marker)
        engine = Engine(home, Config(), LocalPool(), history)
        recover(engine, now)
        assert history.get_run(run_id).status == "interrupted"
        time.sleep(0.5)  # a kill, had one been sent, lands well within this
        assert leftover.poll() is None and pid_alive(leftover.pid)
    finally:
        if leftover.poll() is None:
            leftover.kill()
        leftover.wait()


def test_run_status_comes_from_the_pools_outcome_not_from_error_text():
    def result(outcome, **kw):
        return RunResult(run_id=1, pid=None, started_at=0.0, finished_at=1.0, outcome=outcome, **kw)
    assert _status_of(result(Outcome.EXITED, exit_code=0)) == "succeeded"
    assert _status_of(result(Outcome.EXITED, exit_code=3)) == "failed"
    assert _status_of(result(Outcome.SIGNALED, signal=9)) == "failed"
    assert _status_of(result(Outcome.TIMED_OUT, signal=15)) == "timeout"
    assert _status_of(result(Outcome.CANCELLED, signal=15)) == "killed"
    assert _status_of(result(Outcome.UNKNOWN)) == "interrupted"
    assert _status_of(result(Outcome.LOST)) == "failed"
    assert _status_of(result(Outcome.SPAWN_FAILED, error="No such file")) == "failed"
    assert _status_of(result(Outcome.UNKNOWN, error="anything at all")) == "interrupted"


def test_the_engine_leaves_the_interpreter_of_a_py_script_to_the_pool():
    job = Job(id="p", schedule="@after", command=("tool.py", "--flag"))
    assert argv(job) == ("tool.py", "--flag")


def test_a_run_recorded_before_the_handle_column_is_re_supervised_from_its_pid_columns(tmp_path):
    # state.db files written before runs.handle spread the local pool's handle over pid,
    # pid_start and marker: such a row, left running by a crash, is found again from them.
    home = Home(tmp_path / "home").ensure()
    marker = uuid.uuid4().hex
    # not a session leader: found by its recorded pid only, not by its marker
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                            env=dict(os.environ, **{MARKER_VAR: marker}))
    pool = LocalPool()
    try:
        history = History.open(home)
        history.conn.execute("ALTER TABLE runs DROP COLUMN handle")  # the schema before it
        history.close()
        history = History.open(home)  # adds the column back, NULL in every row
        now = datetime.now(timezone.utc)
        run_id = history.add_run(RunStatus.QUEUED, now.isoformat(), job_id="gone",
                                 scheduled_for=now.isoformat(), trigger="manual")
        history.transition(run_id, RunStatus.RUNNING, now.isoformat(), started_at=now.isoformat(),
                           pid=proc.pid, pid_start=process_start_time(proc.pid), marker=marker)
        assert history.conn.execute("SELECT handle FROM runs").fetchone()[0] is None
        recover(Engine(home, Config(), pool, history), now)
        assert history.get_run(run_id).status == "running" and pool.running() == {run_id}
        pool.cancel(run_id, "stop")
        assert [r.run_id for r in pool.wait(30)] == [run_id]
    finally:
        proc.returncode = proc.returncode or 0  # reaped by the pool, not by Popen
        pool.shutdown(1.0)
        if proc.poll() is None:
            proc.kill()
