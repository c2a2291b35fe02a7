"""scheduler.log: one line per event, ISO timestamps with offset, rotated by size."""

from datetime import datetime

from cron_scheduler.home import Config, Home
from cron_scheduler.scheduler import log, setup_logging


def test_scheduler_log_rotates_by_size_and_keeps_the_configured_backups(tmp_path):
    home = Home(tmp_path / "home").ensure()
    setup_logging(home, Config(log_max_bytes=2000, log_backups=2), "INFO")
    try:
        for i in range(200):
            log.info("event %03d %s", i, "x" * 40)
    finally:
        for handler in log.handlers:
            handler.close()
        log.handlers.clear()
    names = sorted(p.name for p in home.root.glob("scheduler.log*"))
    assert names == ["scheduler.log", "scheduler.log.1", "scheduler.log.2"]
    line_length = len(home.log.read_text().splitlines()[0]) + 1
    for name in names:  # a file rotates once it reached the limit: at most one line over
        assert (home.root / name).stat().st_size <= 2000 + line_length
    last = home.log.read_text().splitlines()[-1]
    assert last.endswith(f"INFO event 199 {'x' * 40}")
    stamp = datetime.fromisoformat(last.split()[0])
    assert stamp.utcoffset() is not None
    older = (home.root / "scheduler.log.1").read_text().splitlines()
    assert int(older[-1].split()[3]) + 1 == int(home.log.read_text().split()[3])  # nothing lost between files
