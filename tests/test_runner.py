"""runner.py: spawning one run, /proc helpers, killing a whole tree. Real processes."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from harness import pid_alive as alive
from cron_scheduler.runner import (MARKER_VAR, RunOutput, RunSpec, find_marked, kill_tree, open_log,
                                   pipe_path, process_running, process_start_time, spawn,
                                   spawn_error_message)


def make_spec(tmp_path: Path, argv, marker: str | None = None, **kw) -> RunSpec:
    return RunSpec(run_id=1, job_id="job", argv=tuple(argv), env=dict(os.environ),
                   cwd=kw.get("cwd", str(tmp_path)), log_path=tmp_path / "1.log",
                   max_output=1 << 20, timeout=None, marker=marker or uuid.uuid4().hex)


def read_all(fd: int) -> bytes:
    """Everything until end of file (the pool's read end is non-blocking: block here)."""
    os.set_blocking(fd, True)
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    os.close(fd)
    return b"".join(chunks)


def poll_until(predicate, deadline: float = 20.0, interval: float = 0.02) -> bool:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def test_spawn_runs_in_own_session_with_marker_and_devnull_stdin(tmp_path):
    code = ("import os, sys; print(os.environ['%s']); print(repr(sys.stdin.read()));"
            "print('err', file=sys.stderr, flush=True); print(os.getsid(0) == os.getpid(),"
            " os.getpgid(0) == os.getpid(), os.getcwd())" % MARKER_VAR)
    spec = make_spec(tmp_path, [sys.executable, "-c", code], marker="m-123")
    pid, fd = spawn(spec)
    out = read_all(fd).decode()
    _, status, _ = os.wait4(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert out.split("\n")[:4] == ["m-123", "''", "err", f"True True {tmp_path}"]


def test_spawn_does_not_leak_the_parent_environment(tmp_path):
    spec = RunSpec(run_id=1, job_id="j", argv=(sys.executable, "-c",
                   "import os; print(sorted(k for k in os.environ if k != 'LC_CTYPE'))"),
                   env={"ONLY": "1"}, cwd=None, log_path=tmp_path / "l", max_output=10,
                   timeout=None, marker="x")
    pid, fd = spawn(spec)
    out = read_all(fd).decode()
    os.waitpid(pid, 0)
    assert out.strip() == repr(sorted(["ONLY", MARKER_VAR]))


def test_spawn_failure_raises_with_readable_message(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        spawn(make_spec(tmp_path, ["no-such-program-xyz"]))
    assert spawn_error_message(info.value) == "No such file or directory: 'no-such-program-xyz'"
    with pytest.raises(ValueError):
        spawn(make_spec(tmp_path, []))


# A child that prints "before", waits for go-file, then prints 2,000 lines (> 64 KiB, more
# than a pipe holds) and exits 0; a write error (EPIPE) would make it exit non-zero.
WRITER = ("import os, sys, time\nprint('before', flush=True)\n"
          "while not os.path.exists(sys.argv[1]): time.sleep(0.01)\n"
          "for i in range(2000): print('after %04d' % i + '.' * 30, flush=True)\n")


def test_run_output_outlives_its_reader_and_resumes_into_the_log(tmp_path):
    """What a daemon crash does to a run: the reader of its output pipe disappears. The run
    must not die of EPIPE; a new reader (the restarted daemon) drains the FIFO and appends to
    the log from where it stood, within the cap."""
    go = tmp_path / "go"
    spec = make_spec(tmp_path, [sys.executable, "-c", WRITER, str(go)])
    pid, fd = spawn(spec)
    try:
        assert stat.S_ISFIFO(os.stat(pipe_path(spec.log_path)).st_mode)
        os.set_blocking(fd, True)
        seen = b""
        while len(seen) < 7:
            seen += os.read(fd, 7 - len(seen))
        assert seen == b"before\n"
        spec.log_path.write_bytes(b"before\n")  # what the old daemon kept
        os.close(fd)  # the daemon dies
        go.touch()
        # with no reader, the run fills the pipe and waits in pipe_write (Linux names the wait
        # channel) instead of dying
        assert poll_until(lambda: "pipe_write" in Path(f"/proc/{pid}/wchan").read_text())
        output = RunOutput.resume(spec.log_path, max_output=50_000)
        assert output.kept == output.total == 7
        while not output.pump():
            time.sleep(0.005)
        _, status, _ = os.wait4(pid, 0)
        output.close()
        assert os.waitstatus_to_exitcode(status) == 0, "the run died when its reader went away"
        data = spec.log_path.read_bytes()
        assert data.startswith(b"before\nafter 0000") and len(data) == 50_000
        assert output.total == 7 + 2000 * 41 and output.truncated
        assert not pipe_path(spec.log_path).exists()
    finally:  # never leave the writer behind (it waits for go-file forever)
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)


def test_open_log_permissions(tmp_path):
    path = tmp_path / "a" / "b" / "run.log"
    fd = open_log(path)
    os.write(fd, b"hello")
    os.close(fd)
    assert path.read_bytes() == b"hello"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    os.close(open_log(path))  # reopening truncates
    assert path.read_bytes() == b""


def test_process_start_time(tmp_path):
    mine = process_start_time(os.getpid())
    assert isinstance(mine, int) and mine > 0
    assert process_start_time(os.getpid()) == mine
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    assert process_start_time(proc.pid) is None


def test_find_marked_matches_the_exact_entry_only(tmp_path):
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    a = spawn(make_spec(tmp_path, sleeper, marker="abc"))
    b = spawn(make_spec(tmp_path, sleeper, marker="abcd"))
    try:
        assert poll_until(lambda: find_marked("abc") == {a[0]})
        assert find_marked("abcd") == {b[0]}
        assert find_marked("ab") == set() and find_marked("") == set()
    finally:
        for pid, fd in (a, b):
            kill_tree(pid, "unused", signal.SIGKILL)
            os.waitpid(pid, 0)
            os.close(fd)
    assert find_marked("abc") == set()


def test_kill_tree_reaches_descendants_that_left_the_group(tmp_path):
    marker = uuid.uuid4().hex
    pidfile = tmp_path / "escaper.pid"
    code = f"""
import os, signal, subprocess, sys, time
if len(sys.argv) == 1:
    subprocess.Popen([sys.executable, __file__, "escape"])
else:
    os.setsid()
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    open({str(pidfile)!r} + ".tmp", "w").write(str(os.getpid()))
    os.replace({str(pidfile)!r} + ".tmp", {str(pidfile)!r})
time.sleep(60)
"""
    script = tmp_path / "tree.py"
    script.write_text(code)
    pid, fd = spawn(make_spec(tmp_path, [sys.executable, str(script)], marker=marker))
    try:
        assert poll_until(pidfile.exists)
        escaper = int(pidfile.read_text())
        assert os.getpgid(escaper) != pid
        assert find_marked(marker) == {pid, escaper}
        kill_tree(pid, marker, signal.SIGTERM)
        _, status, _ = os.wait4(pid, 0)
        assert os.WTERMSIG(status) == signal.SIGTERM
        assert find_marked(marker) == {escaper}  # ignores SIGTERM
        kill_tree(pid, marker, signal.SIGKILL)
        assert poll_until(lambda: not alive(escaper) and not find_marked(marker))
    finally:
        kill_tree(pid, marker, signal.SIGKILL)
        os.close(fd)


def test_kill_tree_tolerates_vanished_processes():
    assert kill_tree(2 ** 22 + 1, uuid.uuid4().hex, signal.SIGTERM) == set()


def test_set_child_subreaper_in_a_separate_process():
    # Not in the test process itself: it would change who reaps orphans for every other test.
    code = "from cron_scheduler.runner import set_child_subreaper; print(set_child_subreaper())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=Path(__file__).parent.parent, check=True).stdout
    assert out.strip() == "True"


def test_process_running_rejects_zombies_and_other_start_times(tmp_path):
    me = process_start_time(os.getpid())
    assert process_running(os.getpid()) and process_running(os.getpid(), me)
    assert not process_running(os.getpid(), me + 1)
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    assert poll_until(lambda: not process_running(proc.pid))  # a zombie until reaped
    proc.wait()
    assert not process_running(proc.pid)
