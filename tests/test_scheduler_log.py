"""scheduler.log: one line per event, ISO timestamps with offset, rotated by size."""

import logging
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


def test_a_full_disk_under_the_log_costs_no_traceback_and_stderr_keeps_the_lines(tmp_path, capsys,
                                                                                 monkeypatch):
    monkeypatch.setattr(logging, "raiseExceptions", True)  # the default; restored afterwards
    home = Home(tmp_path / "home").ensure()
    setup_logging(home, Config(), "INFO")

    class Full:
        def write(self, data):
            raise OSError(28, "No space left on device")

        def flush(self):
            pass

        def tell(self):
            return 0

        def close(self):
            pass

    try:
        log.handlers[0].stream = Full()  # scheduler.log can no longer be written
        log.info("run 7 job backup finished: succeeded")
    finally:
        for handler in log.handlers:
            handler.close()
        log.handlers.clear()
    err = capsys.readouterr().err
    assert "run 7 job backup finished: succeeded" in err
    assert "Traceback" not in err and "Logging error" not in err


def test_lines_of_a_pass_are_written_together_at_its_end_and_others_at_once(tmp_path):
    """A busy daemon logs several lines per run: the lines of one pass of its loop reach
    scheduler.log in one write when the pass ends (held_lines), lines outside a pass at once."""
    from cron_scheduler.scheduler import held_lines
    home = Home(tmp_path / "home").ensure()
    setup_logging(home, Config(), "INFO")
    try:
        log.info("outside a pass")
        assert home.log.read_text().endswith("outside a pass\n")
        with held_lines():
            log.info("run 1 job a started")
            log.info("run 1 job a finished: succeeded")
            assert "run 1" not in home.log.read_text()
        assert home.log.read_text().endswith("run 1 job a finished: succeeded\n")
    finally:
        for handler in log.handlers:
            handler.close()
        log.handlers.clear()


def test_a_full_disk_at_the_end_of_a_pass_drops_its_lines_without_an_exception(tmp_path):
    from cron_scheduler.scheduler import held_lines
    home = Home(tmp_path / "home").ensure()
    setup_logging(home, Config(), "INFO")

    class Full:
        def write(self, data):
            return len(data)

        def flush(self):
            raise OSError(28, "No space left on device")

        def tell(self):
            return 0

        def close(self):
            pass

    try:
        log.handlers[0].stream = Full()
        with held_lines():
            log.info("run 7 job backup finished: succeeded")
    finally:
        log.handlers[0].stream = None
        for handler in log.handlers:
            handler.close()
        log.handlers.clear()
