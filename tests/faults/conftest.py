"""Fault-injection fixtures over the shared harness (tests/harness.py).
Sleeps in the fault tests only choose *when* to inject a fault."""

from pathlib import Path

import pytest

from harness import temp_env


@pytest.fixture
def faults(tmp_path: Path):
    """harness.temp_env: a temp home and its helpers; daemons and runs stopped at teardown."""
    with temp_env(tmp_path) as env:
        yield env
