"""End-to-end fixtures over the shared harness (tests/harness.py)."""

from pathlib import Path
from typing import Callable

import pytest

from harness import Daemon, Env, make_home


@pytest.fixture
def e2e(tmp_path: Path):
    """A temp home (0700, short kill/shutdown grace in config.toml) and its helpers.

    Every daemon started through it is stopped at teardown (SIGTERM, wait; kill -9 last), and
    processes of its runs that are still alive are killed."""
    env = Env(home=make_home(tmp_path), tmp=tmp_path)
    yield env
    env.cleanup()


@pytest.fixture
def e2e_home(e2e: Env) -> Path:
    return e2e.home


@pytest.fixture
def daemon(e2e: Env) -> Callable[..., Daemon]:
    """Factory: daemon("--max-workers", "1") starts the real daemon on the e2e home."""
    return e2e.start_daemon
