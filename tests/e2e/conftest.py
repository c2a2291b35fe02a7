"""End-to-end fixtures over the shared harness (tests/harness.py)."""

from pathlib import Path
from typing import Callable

import pytest

from harness import Daemon, Env, temp_env


@pytest.fixture
def e2e(tmp_path: Path):
    """harness.temp_env: a temp home and its helpers; daemons and runs stopped at teardown."""
    with temp_env(tmp_path) as env:
        yield env


@pytest.fixture
def e2e_home(e2e: Env) -> Path:
    return e2e.home


@pytest.fixture
def daemon(e2e: Env) -> Callable[..., Daemon]:
    """Factory: daemon("--max-workers", "1") starts the real daemon on the e2e home."""
    return e2e.start_daemon
