"""Warnings on odd but legal input, shell completion through the real console script, whole
command summaries, names next to run ids."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cron_scheduler.control import named_runs
from cron_scheduler.history import History
from cron_scheduler.home import Home
from cron_scheduler.models import RunStatus

BIN = Path(sys.executable).parent


def cli(home, *args, env=None, prog="cron-scheduler"):
    return subprocess.run([str(BIN / prog), "--home", str(home), *args], capture_output=True, text=True,
                          env=dict(os.environ, **(env or {})), timeout=60)


def odd_input_warnings(stderr: str) -> list[str]:
    """The lines of stderr but the warning that no daemon serves the home (these homes have none)."""
    return [line for line in stderr.splitlines() if "no daemon is running for" not in line]


@pytest.mark.parametrize("args, warning", [
    (["--end-at", "2020-01-01T00:00", "@daily", "/bin/true"], "is already past: the job will never run"),
    (["--interval", "", "@daily", "/bin/true"], "an empty --interval removes the run's time cap"),
    (["0 0 29 2 *", "/bin/true"], "next run is more than a year away"),
])
def test_odd_input_is_saved_with_a_warning_on_stderr(tmp_path, args, warning):
    result = cli(tmp_path / "h", "j", *args, prog="create_cron")
    assert result.returncode == 0, result.stderr
    assert "create_cron: warning: j: " in result.stderr and warning in result.stderr
    assert warning not in result.stdout and "j: saved" in result.stdout
    assert "j" in cli(tmp_path / "h", "list", "--json").stdout


def test_a_py_script_with_another_interpreters_shebang_warns(tmp_path):
    other, ours = tmp_path / "old.py", tmp_path / "ok.py"
    other.write_text("#!/usr/bin/env python2\nprint(1)\n")
    ours.write_text("#!/usr/bin/env python3\nprint(1)\n")
    result = cli(tmp_path / "h", "old", "@daily", str(other), prog="create_cron")
    assert result.returncode == 0 and "starts with '#!/usr/bin/env python2'" in result.stderr
    assert "daemon's Python" in result.stderr
    fine = cli(tmp_path / "h", "ok", "@daily", str(ours), prog="create_cron")
    assert fine.returncode == 0 and odd_input_warnings(fine.stderr) == []


def test_an_update_that_empties_the_cap_warns(tmp_path):
    assert odd_input_warnings(cli(tmp_path / "h", "j", "@daily", "/bin/true", prog="create_cron").stderr) == []
    result = cli(tmp_path / "h", "update", "j", "--interval", "")
    assert result.returncode == 0 and "cron-scheduler: warning: j: an empty --interval" in result.stderr


def complete(home, words: str, cword: int) -> list[str]:
    """Completion as bash asks for it: the real console script under the env-var protocol."""
    env = dict(os.environ, COMP_WORDS=words, COMP_CWORD=str(cword), _CRON_SCHEDULER_COMPLETE="bash_complete",
               CRON_SCHEDULER_HOME=str(home))
    result = subprocess.run([str(BIN / "cron-scheduler")], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    return [line.split(",", 1)[1] for line in result.stdout.splitlines() if line]


def test_bash_completion_script_and_job_and_run_ids(tmp_path):
    source = subprocess.run([str(BIN / "cron-scheduler")], capture_output=True, text=True, timeout=60,
                            env=dict(os.environ, _CRON_SCHEDULER_COMPLETE="bash_source"))
    assert "complete -o nosort -F _cron_scheduler_completion cron-scheduler" in source.stdout
    home = tmp_path / "h"
    assert complete(home, "cron-scheduler show ", 2) == []  # no store yet: nothing, quietly
    for job_id in ("backup", "build", "report"):
        assert cli(home, "add", job_id, "@daily", "/bin/true").returncode == 0
    assert complete(home, "cron-scheduler show b", 2) == ["backup", "build"]
    assert complete(home, "cron-scheduler run report ", 3) == ["backup", "build", "report"]
    assert "history" in complete(home, "cron-scheduler hi", 1)
    with History.opened(Home(home)) as history:
        for job_id in ("backup", "report"):
            history.add_run(RunStatus.QUEUED, "2026-01-01T00:00:00+00:00", job_id=job_id,
                            scheduled_for="2026-01-01T00:00:00+00:00", trigger="manual", priority=0)
    assert complete(home, "cron-scheduler rerun ", 2) == ["2", "1"]
    assert complete(home, "cron-scheduler logs report --run ", 4) == ["2", "1"]
    assert complete(home, "cron-scheduler stop --run ", 3) == ["2", "1"]
    if shutil.which("bash"):  # the generated script is valid bash
        check = subprocess.run(["bash", "-n"], input=source.stdout, capture_output=True, text=True)
        assert check.returncode == 0, check.stderr


def test_completion_of_a_damaged_store_offers_nothing_and_stays_quiet(tmp_path):
    home = tmp_path / "h"
    home.mkdir()
    (home / "jobs.json").write_text("{not json")
    (home / "state.db").write_bytes(b"garbage" * 100)
    assert complete(home, "cron-scheduler show ", 2) == []
    assert complete(home, "cron-scheduler rerun ", 2) == []


def test_command_summaries_are_whole_sentences(tmp_path):
    result = subprocess.run([str(BIN / "cron-scheduler"), "--help"], capture_output=True, text=True,
                            env=dict(os.environ, COLUMNS="80"), timeout=60)
    summaries = result.stdout.split("Commands:\n", 1)[1].splitlines()
    assert len(summaries) >= 19
    for line in summaries:
        assert line.rstrip().endswith(".") and not line.rstrip().endswith("..."), line


def test_run_ids_are_named_in_the_order_the_jobs_were_given():
    jobs = {2: "long3", 3: "long1", 4: "long2"}
    assert named_runs([2, 3, 4], jobs, ["long1", "long2", "long3"]) == "3 (long1), 4 (long2), 2 (long3)"
    assert named_runs([5, 2], {2: "a"}) == "2 (a), 5"


def test_notify_to_a_channel_config_toml_does_not_define_is_saved_with_a_warning(tmp_path):
    """--notify-to names are checked against config.toml when the job is saved: an unknown one
    (a typo, or a channel not added yet) is said on stderr; the job is saved as given."""
    home = tmp_path / "h"
    home.mkdir(mode=0o700)
    (home / "config.toml").write_text('[notify.channels.ops]\nurls = ["json://localhost:9/"]\n')
    result = cli(home, "j", "--notify-to", "ops,opps", "@daily", "/bin/true", prog="create_cron")
    assert result.returncode == 0, result.stderr
    assert ("create_cron: warning: j: --notify-to names 'opps', not a channel of config.toml (it has: ops)"
            in result.stderr)
    assert "'ops'" not in result.stderr
    assert json.loads(cli(home, "show", "j", "--json").stdout)["notify_to"] == ["ops", "opps"]
    quiet = cli(home, "k", "--notify-to", "ops", "@daily", "/bin/true", prog="create_cron")
    assert quiet.returncode == 0 and odd_input_warnings(quiet.stderr) == []
    pipeline = tmp_path / "jobs.yaml"
    pipeline.write_text("jobs:\n  p:\n    schedule: '@daily'\n    command: /bin/true\n    notify_to: [pager]\n")
    applied = cli(home, "apply", str(pipeline))
    assert applied.returncode == 0, applied.stderr
    assert "warning: p: --notify-to names 'pager', not a channel of config.toml (it has: ops)" in applied.stderr


def test_counts_are_proper_plurals(tmp_path):
    home, out = tmp_path / "h", tmp_path / "jobs.yaml"
    cli(home, "one", "@daily", "/bin/true", prog="create_cron")
    assert cli(home, "export", "--file", str(out)).stderr == f"exported 1 job to {out}\n"
    cli(home, "apply", str(out))  # the job now comes from the file (its `source`)
    assert cli(home, "apply", str(out)).stdout == "no change (1 job unchanged)\n"
    cli(home, "two", "@daily", "/bin/true", prog="create_cron")
    assert cli(home, "export", "--file", str(out)).stderr == f"exported 2 jobs to {out}\n"
