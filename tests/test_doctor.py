"""doctor against real state.db files: a sound database is left alone, a repair is refused
while a daemon holds the home."""

import fcntl
import os
from datetime import datetime, timezone

import pytest

from cron_scheduler import doctor
from cron_scheduler.errors import DaemonAlreadyRunning
from cron_scheduler.history import History
from cron_scheduler.home import Home
from cron_scheduler.models import RunStatus

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=timezone.utc)


def test_sound_state_db_is_reported_ok_and_not_touched(tmp_path):
    home = Home(tmp_path / "home")
    assert doctor.check(home) is None  # no state.db yet
    with History.opened(home) as history, history.transaction():
        history.add_run(RunStatus.QUEUED, NOW.isoformat(), job_id="a", scheduled_for=NOW.isoformat(),
                        trigger="manual")
    before = home.state_db.read_bytes()
    assert doctor.check(home) == []
    assert doctor.repair(home, NOW) is None
    assert home.state_db.read_bytes() == before
    assert not list(home.root.glob("state.db.corrupt-*"))


def test_repair_is_refused_while_a_daemon_holds_the_home(tmp_path):
    home = Home(tmp_path / "home").ensure()
    home.state_db.write_bytes(b"not a database at all" * 100)
    fd = os.open(home.daemon_lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with pytest.raises(DaemonAlreadyRunning, match="stop it before"):
            doctor.repair(home, NOW)
    finally:
        os.close(fd)
    assert home.state_db.read_bytes() == b"not a database at all" * 100
    assert doctor.check(home)  # damaged: "file is not a database"
    result = doctor.repair(home, NOW)
    assert result is not None and result.aside.read_bytes() == b"not a database at all" * 100
    assert doctor.check(home) == []
