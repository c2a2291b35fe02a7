"""engine.recover with real processes: what a crashed daemon left behind."""

import os
import subprocess
import sys
import uuid
from datetime import datetime, timezone

from harness import pid_alive, wait_until

from cron_scheduler.engine import Engine, recover
from cron_scheduler.history import History
from cron_scheduler.home import Config, Home
from cron_scheduler.models import RunStatus
from cron_scheduler.pool import LocalPool
from cron_scheduler.runner import MARKER_VAR


def test_recover_kills_descendants_of_a_dead_run_and_records_it_interrupted(tmp_path):
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
        wait_until("the leftover descendant to be killed", lambda: leftover.poll() is not None, 10,
                   interval=0.05)
        assert not pid_alive(leftover.pid)
    finally:
        if leftover.poll() is None:
            leftover.kill()
        leftover.wait()
