"""`--json` on the read commands that lacked it: doctor (and doctor --repair). explain --json
is proved against the real daemon in tests/e2e/test_cli_daemon.py."""

from __future__ import annotations

import json
import subprocess
import sys

from cron_scheduler.home import Home


def cli(home, *args):
    return subprocess.run([sys.executable, "-m", "cron_scheduler", "--home", str(home), *args],
                          capture_output=True, text=True, timeout=60)


def test_doctor_json_reports_missing_damaged_repaired_and_sound(tmp_path):
    home = Home(tmp_path / "home").ensure()
    missing = cli(home.root, "doctor", "--json")
    assert missing.returncode == 0 and json.loads(missing.stdout) == {
        "state_db": str(home.state_db), "exists": False, "ok": True, "problems": []}
    home.state_db.write_bytes(b"not a database at all" * 100)
    damaged = cli(home.root, "doctor", "--json")
    view = json.loads(damaged.stdout)
    assert damaged.returncode == 1 and view["exists"] is True and view["ok"] is False and view["problems"]
    assert damaged.stderr.startswith("cron-scheduler: error: ") and "doctor --repair" in damaged.stderr
    repaired = cli(home.root, "doctor", "--repair", "--json")
    view = json.loads(repaired.stdout)
    assert repaired.returncode == 0 and view["repaired"] is True and view["ok"] is True
    assert view["aside"].startswith(str(home.state_db) + ".corrupt-") and view["tables"]
    assert {"table", "rows", "unreadable", "error"} == set(view["tables"][0])
    sound = cli(home.root, "doctor", "--json")
    assert sound.returncode == 0 and json.loads(sound.stdout)["ok"] is True
    again = json.loads(cli(home.root, "doctor", "--repair", "--json").stdout)
    assert again["repaired"] is False and again["aside"] is None and again["tables"] == []
