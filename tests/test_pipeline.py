"""Pipeline files: apply (one transaction, all or nothing), --dry-run, --prune, errors naming
file/line/job, export round trip (property-tested), concurrent applies."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cron_scheduler import pipeline
from cron_scheduler.home import Home
from cron_scheduler.jobs import JobService
from cron_scheduler.models import CatchUp, Job, Overlap
from cron_scheduler.store import Store
from harness import child_env, temp_env

ETL = """\
defaults:
  timeout: 5m
  retries: 2
  env: {STAGE: etl}
jobs:
  extract:
    schedule: "*/5 * * * *"
    command: [/bin/echo, extract]
    retry_delay: 1h30m
  transform:
    schedule: "@after"
    depends_on: [extract]
    command: echo transform | tr a-z A-Z
    shell: true
    env: {LEVEL: 3}
  load:
    schedule: "@after"
    depends_on: extract, transform
    command: [/bin/echo, load]
    max_output: 20MB
    alert_output: 512K
    notify: [failure]
    enabled: false
    description: load into the warehouse
"""


@pytest.fixture
def env(tmp_path):
    with temp_env(tmp_path) as e:
        yield e


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def stored(env) -> dict:
    return json.loads((env.home / "jobs.json").read_text())["jobs"]


def test_apply_creates_every_job_with_defaults_durations_and_sizes(env):
    f = write(env.tmp / "pipelines" / "etl.yaml", ETL)
    out = env.cli("apply", f).stdout
    assert out.splitlines() == ["+ extract", "+ transform", "+ load", "applied: 3 added"]
    jobs = stored(env)
    assert jobs["extract"]["timeout"] == 300.0 and jobs["extract"]["retries"] == 2
    assert jobs["extract"]["retry_delay"] == 5400.0
    assert jobs["transform"]["shell"] is True and jobs["transform"]["command"] == ["echo transform | tr a-z A-Z"]
    assert jobs["transform"]["env"] == {"STAGE": "etl", "LEVEL": "3"}  # defaults' env merged under the job's
    assert jobs["load"]["depends_on"] == ["extract", "transform"]
    assert jobs["load"]["max_output"] == 20 * 1024**2 and jobs["load"]["alert_output"] == 512 * 1024
    assert jobs["load"]["enabled"] is False and jobs["load"]["notify"] == ["failure"]
    assert {j["source"] for j in jobs.values()} == {str(f)}
    show = env.json("show", "load")
    assert show["source"] == str(f)


def test_apply_then_export_round_trips_with_no_change(env):
    f = write(env.tmp / "etl.yaml", ETL)
    env.cli("apply", f)
    exported = env.cli("export").stdout
    again = subprocess.run([sys.executable, "-m", "cron_scheduler", "--home", str(env.home), "apply",
                            "--dry-run", "-"], input=exported, capture_output=True, text=True,
                           env=child_env(), timeout=60)
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines() == ["no change (3 jobs unchanged)"]
    # the exported file is itself a pipeline file: applied to a new home it gives the same jobs
    target = env.tmp / "other"
    (env.tmp / "export.yaml").write_text(exported)
    env.cli("--home", target, "apply", env.tmp / "export.yaml")
    strip = lambda jobs: {k: {f: v for f, v in r.items() if f not in ("created_at", "source")}
                          for k, r in jobs.items()}
    other = json.loads((target / "jobs.json").read_text())["jobs"]
    assert strip(other) == strip(stored(env))


def test_export_of_named_jobs_to_a_file(env):
    env.cli("apply", write(env.tmp / "etl.yaml", ETL))
    env.cli("export", "load", "extract", "--file", env.tmp / "two.yaml")
    text = (env.tmp / "two.yaml").read_text()
    assert list(__import__("yaml").safe_load(text)["jobs"]) == ["load", "extract"]
    assert "retry_delay: 1h30m" in text and "max_output: 20MB" in text


def test_dry_run_prints_the_diff_and_writes_nothing(env):
    f = write(env.tmp / "etl.yaml", ETL)
    env.cli("apply", f)
    env.create_cron("manual", "@daily", "/bin/true")
    before = (env.home / "jobs.json").read_bytes()
    stat = os.stat(env.home / "jobs.json")
    f.write_text(ETL.replace("retries: 2", "retries: 4").replace("    max_output: 20MB\n", "")
                 .replace("  load:", "  fresh:\n    schedule: '@hourly'\n    command: [/bin/true]\n  load:"))
    out = env.cli("apply", f, "--dry-run", "--prune").stdout.splitlines()
    assert out[0] == "~ extract" and "    retries: 2 -> 4" in out
    assert "+ fresh" in out
    assert out[out.index("~ load") + 1:] [:2] == ["    retries: 2 -> 4", "    max_output: 20971520 -> 10485760"]
    assert out[-1] == "dry run, nothing written: 1 added, 3 changed"
    assert (env.home / "jobs.json").read_bytes() == before
    assert os.stat(env.home / "jobs.json").st_mtime_ns == stat.st_mtime_ns
    # a removal shows too; the manual job is not the file's and is never listed
    f.write_text(ETL.split("  transform:")[0])
    out = env.cli("apply", f, "--dry-run", "--prune").stdout.splitlines()
    assert "- transform" in out and "- load" in out and "- manual" not in out
    assert (env.home / "jobs.json").read_bytes() == before


BAD = {
    "unknown-field": ("    retry: 3\n", 9, "job 'load': unknown field 'retry' (did you mean 'retries'?)"),
    "hint-paused": ("    paused: true\n", 9, "job 'load': unknown field 'paused' (use enabled: false)"),
    "bad-schedule": ("    schedule: '61 * * * *'\n", 9, "job 'load': "),
    "bad-duration": ("    timeout: soon\n", 9, "job 'load': invalid timeout 'soon'"),
    "bad-overlap": ("    overlap: often\n", 9, "job 'load': invalid overlap 'often'"),
    "bad-type": ("    retries: many\n", 9, "job 'load': retries must be an integer, not a string"),
    "unknown-dep": ("    depends_on: [ghost]\n", 9, "job 'load': job 'load' depends on unknown job 'ghost'"),
    "cycle": ("    depends_on: [load]\n", 9, "job 'load': job 'load' depends on itself"),
    "bad-zone": ("    timezone: Mars/Olympus\n", 9, "job 'load': "),
    "yaml-syntax": ("    command: [unclosed\n", 10, "not valid YAML"),
    "end-before-start": ("    start_at: '2030-01-02T00:00:00+00:00'\n    end_at: '2030-01-01T00:00:00+00:00'\n",
                         9, "job 'load': end_at"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_file_changes_nothing_and_names_file_line_and_job(env, case):
    env.create_cron("existing", "@daily", "/bin/true")
    before = (env.home / "jobs.json").read_bytes()
    extra, line, message = BAD[case]
    text = textwrap.dedent("""\
        jobs:
          first:
            schedule: '@hourly'
            command: [/bin/true]
          existing:
            schedule: '@hourly'
            command: [/bin/false]
          load:
        """) + extra  # the extra lines start at line 9
    text += "" if "schedule:" in extra else "    schedule: '@daily'\n"
    text += "" if "command:" in extra else "    command: [/bin/true]\n"
    write(env.tmp / "pipelines" / "etl.yaml", text)
    proc = env.cli("apply", "pipelines/etl.yaml", check=False)
    assert proc.returncode == 2, proc.stderr
    err = proc.stderr.strip()
    assert err.startswith(f"cron-scheduler: error: pipelines/etl.yaml:{line}: {message}"), err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert (env.home / "jobs.json").read_bytes() == before  # not even 'first' was added


def test_depends_on_may_name_existing_jobs_and_paths_are_relative_to_the_file(env):
    env.create_cron("upstream", "@daily", "/bin/true")
    script = write(env.tmp / "pipes" / "bin" / "step.sh", "#!/bin/sh\necho step\n")
    script.chmod(0o755)
    f = write(env.tmp / "pipes" / "p.yaml", """\
        defaults:
          cwd: .
        jobs:
          step:
            schedule: '@after'
            depends_on: [upstream]
            command: [bin/step.sh, data/in.csv]
        """)
    env.cli("apply", f)  # Env.cli runs in env.tmp, not in pipes/
    job = stored(env)["step"]
    assert job["command"] == [str(script), "data/in.csv"]
    assert job["cwd"] == str(env.tmp / "pipes")
    missing = write(env.tmp / "pipes" / "q.yaml", "jobs:\n  q:\n    schedule: '@daily'\n    command: [bin/nope.sh]\n")
    err = env.cli("apply", missing, check=False).stderr
    assert f"q.yaml:4: job 'q': script not found: {env.tmp / 'pipes' / 'bin' / 'nope.sh'}" in err


def test_prune_removes_only_the_jobs_that_file_applied(env):
    a = write(env.tmp / "a.yaml", """\
        jobs:
          a1: {schedule: '@daily', command: [/bin/true]}
          a2: {schedule: '@daily', command: [/bin/true]}
        """)
    b = write(env.tmp / "b.yaml", "jobs:\n  b1: {schedule: '@daily', command: [/bin/true]}\n")
    env.cli("apply", a)
    env.cli("apply", b)
    env.create_cron("manual", "@daily", "/bin/true")
    a.write_text("jobs:\n  a1: {schedule: '@daily', command: [/bin/true]}\n")
    assert "- a2" not in env.cli("apply", a).stdout  # without --prune nothing is removed
    assert "a2" in stored(env)
    out = env.cli("apply", a, "--prune").stdout.splitlines()
    assert out == ["- a2", "applied: 1 removed, 1 unchanged"]
    assert sorted(stored(env)) == ["a1", "b1", "manual"]


def test_prune_refuses_to_remove_a_job_another_depends_on(env):
    a = write(env.tmp / "a.yaml", "jobs:\n  a1: {schedule: '@daily', command: [/bin/true]}\n")
    env.cli("apply", a)
    env.create_cron("after", "--depends-on", "a1", "@after", "/bin/true")
    before = (env.home / "jobs.json").read_bytes()
    a.write_text("jobs: {}\n")
    proc = env.cli("apply", a, "--prune", check=False)
    assert proc.returncode == 2
    assert "--prune would remove 'a1', but job 'after' depends on it" in proc.stderr
    assert (env.home / "jobs.json").read_bytes() == before


def test_apply_from_stdin_keeps_the_source_and_refuses_prune(env):
    a = write(env.tmp / "a.yaml", "jobs:\n  a1: {schedule: '@daily', command: [/bin/true]}\n")
    env.cli("apply", a)
    cmd = [sys.executable, "-m", "cron_scheduler", "--home", str(env.home), "apply", "-"]
    proc = subprocess.run(cmd, input="jobs:\n  a1: {schedule: '@hourly', command: [/bin/true]}\n",
                          capture_output=True, text=True, env=child_env(), timeout=60)
    assert proc.returncode == 0 and "    schedule: @daily -> @hourly" in proc.stdout
    assert stored(env)["a1"]["source"] == str(a)
    proc = subprocess.run(cmd + ["--prune"], input="jobs: {}\n", capture_output=True, text=True,
                          env=child_env(), timeout=60)
    assert proc.returncode == 2 and "--prune needs a file" in proc.stderr


def test_fifty_concurrent_applies_give_the_serial_result(env):
    files = []
    for n in range(50):
        files.append(write(env.tmp / "many" / f"f{n}.yaml", f"""\
            jobs:
              j{n}a: {{schedule: '*/{n % 59 + 1} * * * *', command: [/bin/echo, '{n}']}}
              j{n}b: {{schedule: '@after', depends_on: [j{n}a], command: [/bin/true], retries: {n % 5}}}
            """))
    procs = [subprocess.Popen([sys.executable, "-m", "cron_scheduler", "--home", str(env.home), "apply", str(f)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=child_env())
             for f in files]
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    serial = env.tmp / "serial"
    for f in files:
        pipe = pipeline.read(str(f))
        pipeline.apply(Home.at(str(serial)), pipe)
    strip = lambda jobs: {k: {f: v for f, v in r.items() if f != "created_at"} for k, r in jobs.items()}
    concurrent = stored(env)
    assert len(concurrent) == 100
    assert strip(concurrent) == strip(json.loads((serial / "jobs.json").read_text())["jobs"])


# --- the round trip, property-tested -----------------------------------------------------------

IDS = st.from_regex(r"[a-z][a-z0-9_-]{0,10}", fullmatch=True)
TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=30)
DURATION = st.one_of(st.integers(1, 10**6).map(float), st.floats(0.001, 10**6, allow_nan=False))


@st.composite
def jobs(draw):
    ids = draw(st.lists(IDS, min_size=1, max_size=5, unique=True))
    out = {}
    for i, job_id in enumerate(ids):
        shell = draw(st.booleans())
        command = (draw(TEXT.filter(lambda s: s.strip() != "")),) if shell else \
            tuple(draw(st.lists(TEXT, min_size=1, max_size=3)).__iter__())
        if not command[0] or (not shell and ("/" in command[0] or command[0].endswith(".py"))
                              and not command[0].startswith("/")):
            # as the CLI stores a script: absolute (a relative one in a file is read against
            # the file's directory)
            command = ("/bin/true",) + command[1:]
        out[job_id] = Job(
            id=job_id,
            schedule=draw(st.sampled_from(["@daily", "*/5 * * * *", "0 9 * * mon-fri", "@every 90s",
                                           "@after", "@reboot", "30 2 1 * *"])),
            command=command, shell=shell,
            timeout=draw(st.none() | DURATION), retries=draw(st.integers(0, 100)),
            retry_delay=draw(DURATION), overlap=draw(st.sampled_from(list(Overlap))),
            catch_up=draw(st.sampled_from(list(CatchUp))), priority=draw(st.integers(-1000, 1000)),
            timezone=draw(st.none() | st.sampled_from(["UTC", "Europe/Berlin", "America/New_York"])),
            start_at=draw(st.none() | st.just("2026-03-01T08:00:00+00:00")),
            end_at=draw(st.none() | st.just("2031-03-01T08:00:00+00:00")),
            cwd=draw(st.none() | st.just("/tmp")),
            env=draw(st.dictionaries(st.from_regex(r"[A-Z_][A-Z0-9_]{0,6}", fullmatch=True), TEXT, max_size=3)),
            enabled=draw(st.booleans()),
            depends_on=tuple(draw(st.lists(st.sampled_from(ids[:i]), unique=True))) if i else (),
            notify=tuple(draw(st.lists(st.sampled_from(["failure", "slow", "recovered"]), unique=True))),
            notify_to=tuple(draw(st.lists(st.sampled_from(["ops", "pager"]), unique=True))),
            expected_duration=draw(st.none() | DURATION),
            max_output=draw(st.integers(1, 1024**4) | st.sampled_from([1024, 10 * 1024**2, 1024**3])),
            alert_output=draw(st.none() | st.integers(1, 10**9)),
            resources=draw(st.dictionaries(st.sampled_from(["cpu", "mem", "gpu"]),
                                           st.floats(0.5, 1e12, allow_nan=False) | st.sampled_from([2.0, 4096.0]),
                                           max_size=2)),
            worker=draw(st.none() | st.just("tcp://127.0.0.1:40000")),
            description=draw(TEXT),
        )
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(jobs())
def test_export_then_apply_is_a_no_op_for_any_valid_jobs(generated):
    with tempfile.TemporaryDirectory() as tmp:
        home = Home.at(str(Path(tmp) / "home"))
        with Store(home).transaction() as stored_jobs:
            for job_id, job in generated.items():
                stored_jobs[job_id] = job
        text = pipeline.export(JobService(home).all())
        pipe = pipeline.parse(text, "<export>", Path(tmp), None, check=False)
        changes = pipeline.apply(home, pipe, dry_run=True)
        assert [c for c in changes if c.kind != "unchanged"] == []
        # and applied to an empty home it rebuilds the very same jobs
        fresh = Home.at(str(Path(tmp) / "fresh"))
        pipeline.apply(fresh, pipe)
        rebuilt = JobService(fresh).all()
        assert {k: v.replace(created_at=None) for k, v in rebuilt.items()} == generated


def test_apply_warns_like_add_about_odd_but_legal_jobs(env):
    f = write(env.tmp / "w.yaml", """\
        jobs:
          late: {schedule: '@daily', command: [/bin/true], end_at: '2001-01-01T00:00:00+00:00'}
        """)
    proc = env.cli("apply", f)
    assert "cron-scheduler: warning: late: " in proc.stderr and "applied: 1 added" in proc.stdout


@pytest.mark.parametrize("text, message", [
    ("", "<stdin>:1: the file is empty"),
    ("- a\n- b\n", "<stdin>:1: the file must be a mapping"),
    ("jobs:\n  x: !!python/object:os.system {}\n", "<stdin>:2: job 'x': not valid YAML"),
    ("jobs:\n  x: {schedule: !!python/name:os.system '', command: [a]}\n", "<stdin>:2: not valid YAML"),
    ("jobs:\n  x: 3\n", "<stdin>:2: job 'x': its fields must be a mapping of keys to values, not a number"),
    ("jobz: {}\n", "<stdin>:1: unknown key 'jobz' (did you mean 'jobs'?)"),
    ("jobs:\n  x: {schedule: '@daily', command: [a]}\n  x: {schedule: '@daily', command: [a]}\n",
     "<stdin>:3: job 'x': defined twice"),
    ("jobs:\n  'a b': {schedule: '@daily', command: [/bin/true]}\n", "<stdin>:2: invalid job id 'a b'"),
    ("jobs:\n  x: {schedule: */5 * * * *, command: [/bin/true]}\n", "<stdin>:2: not valid YAML"),
])
def test_malformed_files_are_one_line_errors(env, text, message):
    cmd = [sys.executable, "-m", "cron_scheduler", "--home", str(env.home), "apply", "-"]
    proc = subprocess.run(cmd, input=text, capture_output=True, text=True, env=child_env(), timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"cron-scheduler: error: {message}"), proc.stderr
    assert len(proc.stderr.splitlines()) == 1
    assert not (env.home / "jobs.json").exists()


OK_JOB = "  a:\n    schedule: '@daily'\n    command: [/bin/true]\n"
CLUMSY = {
    "unknown-default": ("defaults:\n  retrys: 2\njobs:\n" + OK_JOB,
                        ":2: unknown field 'retrys' (did you mean 'retries'?)"),
    "defaults-number": ("defaults: 3\njobs:\n" + OK_JOB, ":1: defaults must be a mapping of keys to values, not a number"),
    "defaults-list": ("defaults: [retries]\njobs:\n" + OK_JOB, ":1: defaults must be a mapping of keys to values, not a list"),
    "defaults-null": ("defaults:\njobs:\n" + OK_JOB, ":1: defaults must be a mapping of keys to values, not null"),
    "null-job": ("defaults: {schedule: '@daily', command: [/bin/true]}\njobs:\n  a:\n",
                 ":3: job 'a': its fields must be a mapping of keys to values, not null"),
    "list-job": ("jobs:\n  a: [schedule, command]\n", ":2: job 'a': its fields must be a mapping of keys to values, not a list"),
    "jobs-list": ("jobs:\n  - a\n", ":2: jobs must be a mapping of keys to values, not a list"),
    "null-key": ("defaults:\n  ~: 2\njobs:\n" + OK_JOB, ":2: defaults: key '~' must be a name (quote it)"),
    "bool-job-id": ("jobs:\n" + OK_JOB + "  true: {schedule: '@daily', command: [/bin/true]}\n",
                    ":5: jobs: key 'true' must be a name (quote it)"),
    "unknown-top-level": ("x: 1\njobs:\n" + OK_JOB, ":1: unknown key 'x' (a file has 'jobs:' and optionally 'defaults:')"),
    "bad-job-env-under-defaults-env": ("defaults:\n  env: {A: b}\njobs:\n" + OK_JOB + "    env: 5\n",
                                       ":7: job 'a': env must be a mapping of names to strings, not a number"),
    "bad-defaults-env-value": ("defaults:\n  env: {A: [1]}\njobs:\n" + OK_JOB + "    env: {B: c}\n",
                               ":2: job 'a': env A must be a string, not a list (quote it)"),
}


@pytest.mark.parametrize("text, message", CLUMSY.values(), ids=CLUMSY.keys())
def test_a_clumsy_file_is_one_line_naming_file_line_and_key_and_applies_nothing(env, text, message):
    env.cli("add", "kept", "@daily", "/bin/true")
    before = (env.home / "jobs.json").read_bytes()
    f = env.tmp / "clumsy.yaml"
    f.write_text(text)
    proc = subprocess.run([sys.executable, "-m", "cron_scheduler", "--home", str(env.home), "apply", str(f)],
                          capture_output=True, text=True, env=child_env(), timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr == f"cron-scheduler: error: {f}{message}\n"
    assert (env.home / "jobs.json").read_bytes() == before
