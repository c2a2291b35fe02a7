r"""Imported crontab lines run under the real daemon get, byte for byte, what crontab(5) says
cron gives them: the command with `\\` as `\` and `\%` as `%`, stdin from `%` ending with a
newline, the crontab's environment (SHELL, MAILTO, CRON_TZ, names such as `my-var`); and two
crontabs running the same command are two jobs."""

from __future__ import annotations

import json

OUT_LINES = r"""
my-var=1
A.B = 2
MAILTO=ops@example.com
CRON_TZ=UTC
# stdin: each further % a newline, and cron ends the text with one
@yearly while read l; do echo "got $l"; done > {out}/stdin.txt%first%second
# \\ is \ and \% is % in the command
@yearly printf '\%s|' 'a\\b' '50\%' > {out}/backslash.txt
# a % after \\ is not escaped: it ends the command
@yearly {{ cat; printf '\%s' 'x\\'; }} > {out}/split.txt%in
# the environment the shell receives
@yearly tr '\0' '\n' < /proc/$$/environ > {out}/sh-env.txt
# bash passes names such as my-var on to its commands (dash cannot hold them)
SHELL=/bin/bash
@yearly env > {out}/bash-env.txt
"""


def test_imported_lines_get_the_command_stdin_and_environment_crontab5_specifies(e2e, daemon):
    out = e2e.tmp / "out"
    out.mkdir()
    (e2e.tmp / "tab").write_text(OUT_LINES.format(out=out))
    proc = e2e.cli("import-crontab", "tab")
    assert proc.stdout.splitlines()[-1] == "applied: 5 added", proc.stderr
    daemon()
    e2e.cli("run", "echo", "printf", "cat", "tr", "env", "--wait", "--timeout", "60")
    assert (out / "stdin.txt").read_bytes() == b"got first\ngot second\n"
    assert (out / "backslash.txt").read_bytes() == b"a\\b|50%|"
    assert (out / "split.txt").read_bytes() == b"in\nx\\"
    for name, shell in (("sh-env.txt", "/bin/sh"), ("bash-env.txt", "/bin/bash")):
        env = dict(line.split("=", 1) for line in (out / name).read_text().splitlines())
        assert {k: env.get(k) for k in ("my-var", "A.B", "SHELL", "MAILTO", "CRON_TZ", "PATH")} == {
            "my-var": "1", "A.B": "2", "SHELL": shell, "MAILTO": "ops@example.com", "CRON_TZ": "UTC",
            "PATH": "/usr/bin:/bin"}, name


def test_two_crontabs_with_the_same_command_are_two_jobs_and_both_run(e2e, daemon):
    out = e2e.tmp / "ran.txt"
    for name in ("a", "b"):
        (e2e.tmp / name).mkdir()
        (e2e.tmp / name / "crontab").write_text(f"@yearly echo ran >> {out}\n")
        e2e.cli("import-crontab", f"{name}/crontab")
    again = e2e.cli("import-crontab", "a/crontab")
    assert again.stdout.splitlines()[-1] == "no change (1 job unchanged)"
    stored = json.loads((e2e.home / "jobs.json").read_text())["jobs"]
    assert {job_id: job["source"] for job_id, job in stored.items()} == {
        "echo": str(e2e.tmp / "a" / "crontab"), "echo-2": str(e2e.tmp / "b" / "crontab")}
    daemon()
    e2e.cli("run", "echo", "echo-2", "--wait", "--timeout", "60")
    assert out.read_text() == "ran\nran\n"
