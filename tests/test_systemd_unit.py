"""scripts/cron-scheduler.service: the documented install verifies with systemd-analyze, and
the unit is hardened (systemd-analyze security)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parent.parent / "scripts" / "cron-scheduler.service"
USER_UNIT = UNIT.parent / "cron-scheduler-user.service"
README = UNIT.parent.parent / "README.md"
DAEMON_DOC = UNIT.parent.parent / "docs" / "daemon.md"  # "Running under systemd"
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed (apt-get install systemd)")


def settings(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def documented_dropin() -> str:
    """The drop-in the unit's header documents (`systemctl edit` contents), uncommented."""
    header = [line[1:].strip() for line in UNIT.read_text().splitlines() if line.startswith("#")]
    start = header.index("[Service]")
    lines = []
    for line in header[start:]:
        if not re.match(r"\[\w+\]$|[A-Za-z]+=", line):
            break
        lines.append(line)
    return "\n".join(lines) + "\n"


def install(tmp_path: Path, dropin: str) -> Path:
    """The unit and a drop-in in a unit directory, as systemctl edit leaves them."""
    units = tmp_path / "units"
    (units / "cron-scheduler.service.d").mkdir(parents=True)
    shutil.copy(UNIT, units / "cron-scheduler.service")
    (units / "cron-scheduler.service.d" / "override.conf").write_text(dropin)
    return units


def analyze(units: Path, *args: str) -> subprocess.CompletedProcess:
    # the trailing ':' keeps the built-in unit path (for the targets the unit names)
    env = {"SYSTEMD_UNIT_PATH": f"{units}:", "PATH": "/usr/bin:/bin", "SYSTEMD_LOG_COLOR": "0"}
    return subprocess.run([ANALYZE, *args, str(units / "cron-scheduler.service")], capture_output=True,
                          text=True, env=env, timeout=60)


def test_unit_runs_as_a_created_user_in_its_state_directory():
    unit = settings(UNIT.read_text())
    assert unit["Type"] == ["simple"] and unit["KillMode"] == ["mixed"]
    assert unit["User"] == ["cron-scheduler"] and unit["StateDirectory"] == ["cron-scheduler"]
    assert unit["StateDirectoryMode"] == ["0700"]  # the daemon refuses a group/other-writable home
    assert unit["Environment"] == ["CRON_SCHEDULER_HOME=%S/cron-scheduler"]
    assert unit["Delegate"] == ["yes"]
    # the install steps create that user, in the unit's header and in the daemon's page
    for text in (UNIT.read_text(), DAEMON_DOC.read_text()):
        assert re.search(r"useradd --system .*\\?\s*(#\s*)?.*--shell /usr/sbin/nologin cron-scheduler", text)


def test_documented_dropin_clears_execstart_first():
    dropin = settings(documented_dropin())
    assert dropin["ExecStart"][0] == "" and len(dropin["ExecStart"]) == 2
    assert documented_dropin() in DAEMON_DOC.read_text()


@needs_analyze
def test_documented_install_verifies(tmp_path):
    dropin = documented_dropin().replace("/srv/venv/bin/python", sys.executable)
    result = analyze(install(tmp_path, dropin), "verify")
    assert result.returncode == 0 and result.stderr == "", result.stderr


@needs_analyze
def test_a_dropin_without_the_empty_execstart_is_refused(tmp_path):
    """What the documented drop-in avoids: systemd refuses a second ExecStart= for Type=simple."""
    result = analyze(install(tmp_path, f"[Service]\nExecStart={sys.executable} -m cron_scheduler.scheduler\n"),
                     "verify")
    assert result.returncode != 0 and "more than one ExecStart=" in result.stderr


@needs_analyze
def test_unit_is_hardened(tmp_path):
    dropin = documented_dropin().replace("/srv/venv/bin/python", sys.executable)
    result = analyze(install(tmp_path, dropin), "security", "--offline=yes", "--threshold=30")
    score = re.search(r"Overall exposure level for cron-scheduler.service: ([\d.]+)", result.stdout)
    assert score, result.stdout + result.stderr
    assert float(score.group(1)) <= 3.0 and result.returncode == 0, result.stdout


def test_user_unit_runs_the_quick_starts_venv_and_the_readme_installs_it():
    """README "Keep it running": the user unit starts the daemon of the quick start's venv at
    login (linger: at boot), and the README's steps copy exactly this file."""
    unit = settings(USER_UNIT.read_text())
    assert unit["ExecStart"] == ["%h/.local/cron-scheduler/bin/python -m cron_scheduler.scheduler"]
    assert unit["WantedBy"] == ["default.target"] and unit["KillMode"] == ["mixed"]
    assert "User" not in unit and "Environment" not in unit  # you, on your default home
    readme = README.read_text()
    assert "python3 -m venv ~/.local/cron-scheduler" in readme
    assert "cp scripts/cron-scheduler-user.service ~/.config/systemd/user/cron-scheduler.service" in readme
    assert "systemctl --user daemon-reload && systemctl --user enable --now cron-scheduler" in readme
    assert 'loginctl enable-linger "$USER"' in readme


@needs_analyze
def test_user_unit_verifies(tmp_path):
    units = tmp_path / "units"
    units.mkdir()
    (units / "cron-scheduler.service").write_text(
        USER_UNIT.read_text().replace("%h/.local/cron-scheduler/bin/python", sys.executable))
    result = analyze(units, "verify")
    assert result.returncode == 0 and result.stderr == "", result.stderr
