"""Shared fixtures: every test runs against its own home in tmp_path."""

from __future__ import annotations

import pytest

from dask_cluster import dask_cluster  # noqa: F401  (session fixture: a real Dask cluster)


@pytest.fixture
def home(tmp_path, monkeypatch):
    """Path of an isolated home (not created yet); CRON_SCHEDULER_HOME points at it."""
    path = tmp_path / "home"
    monkeypatch.setenv("CRON_SCHEDULER_HOME", str(path))
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    return path
