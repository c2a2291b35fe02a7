"""The README's quick start, as written: its commands after the install (the test's venv is
that install) run in bash on a fresh HOME, and the job they add has run and printed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
INSTALL = ("python3 -m venv ", "export PATH=")


def quick_start() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"(?ms)^## Quick start\n.*?^```\n(.*?)^```", readme)[1]
    return [line.split("  #")[0].strip() for line in block.splitlines() if line.strip()]


def test_the_quick_start_runs_a_job_and_shows_its_output(tmp_path):
    lines = quick_start()
    assert [line for line in lines if line.startswith(INSTALL)] == lines[:2]  # only the install is left out
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CRON_SCHEDULER_", "XDG_"))}
    env.update(HOME=str(tmp_path), PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    result = subprocess.run(["bash", "-c", "set -m\n" + "\n".join(lines[2:]) + "\nwait"], cwd=tmp_path,
                            env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120)
    assert result.returncode == 0, result.stderr
    history = [line.split() for line in result.stdout.splitlines()]
    assert any(row[1:3] == ["hello", "succeeded"] for row in history if len(row) > 3), result.stdout
    assert "\nhello\n" in f"\n{result.stdout}", result.stdout
    assert (tmp_path / ".local" / "state" / "cron-scheduler" / "jobs.json").exists()  # the home it names
