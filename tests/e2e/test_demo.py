"""scripts/demo.sh end to end (DEMO_SECONDS mode, the test's venv): a job fires on its own
schedule within seconds of the daemon's start, not only what the demo runs by hand."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_demo_fires_a_scheduled_run_within_seconds(tmp_path):
    env = dict(os.environ, DEMO_HOME=str(tmp_path / "demo"), DEMO_SECONDS="60",
               CRON_SCHEDULER_VENV=str(Path(sys.executable).parent.parent))
    env.pop("CRON_SCHEDULER_HOME", None)
    started = time.monotonic()
    result = subprocess.run([str(ROOT / "scripts" / "demo.sh")], capture_output=True, text=True, env=env,
                            stdin=subprocess.DEVNULL, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    history = result.stdout.split("RUN  JOB", 1)[1].splitlines()
    assert any(line.split()[1:4] == ["heartbeat", "succeeded", "schedule"] for line in history), result.stdout[-3000:]
    assert time.monotonic() - started < 120
