"""Fault-injection fixtures over the shared harness (tests/harness.py).
Sleeps in the fault tests only choose *when* to inject a fault."""

from pathlib import Path

import pytest

from harness import Env, make_home


@pytest.fixture
def faults(tmp_path: Path):
    """A temp home (0700, short kill/shutdown grace in config.toml) and its helpers.

    Every daemon started through it is stopped at teardown (SIGTERM, wait; kill -9 last), and
    processes of its runs that are still alive are killed."""
    env = Env(home=make_home(tmp_path), tmp=tmp_path)
    yield env
    env.cleanup()
