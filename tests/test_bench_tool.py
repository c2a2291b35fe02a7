"""scripts/bench.py names the file system its homes are on (file creation costs differ by
orders of magnitude between them) and refuses a --dir that is not a directory."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "scripts" / "bench.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _mountinfo(tmp_path: Path, *mounts: tuple[str, str, str]) -> Path:
    lines = [f"{20 + i} 1 8:{i} / {point} rw,relatime - {kind} {device} rw"
             for i, (point, kind, device) in enumerate(mounts)]
    path = tmp_path / "mountinfo"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("task, said", [("<none>", "ext4 without a journal"), ("4242", "ext4 with a journal")])
def test_an_ext4_home_says_whether_it_has_a_journal(bench, tmp_path, task, said):
    sysfs = tmp_path / "sysfs"
    (sysfs / "vdb").mkdir(parents=True)
    (sysfs / "vdb" / "journal_task").write_text(task + "\n")
    where = tmp_path / "homes"
    where.mkdir()
    info = _mountinfo(tmp_path, ("/", "ext4", "/dev/vda"), (str(where), "ext4", "/dev/vdb"))
    assert bench.filesystem(where / "x", str(info), str(sysfs)) == f"{said} (/dev/vdb at {where})"


def test_the_last_mount_over_the_directory_is_the_one_named(bench, tmp_path):
    info = _mountinfo(tmp_path, ("/", "ext4", "/dev/vda"), ("/dev/shm", "tmpfs", "tmpfs"),
                      ("/dev/shm", "tmpfs", "shm2"), ("/dev/shmx", "xfs", "/dev/vdc"))
    assert bench.filesystem(Path("/dev/shm/a/b"), str(info), str(tmp_path)) == "tmpfs (shm2 at /dev/shm)"
    assert bench.filesystem(Path("/srv"), str(info), str(tmp_path)) == "ext4 (/dev/vda at /)"


def test_a_dir_that_is_not_a_directory_is_refused_before_any_work(tmp_path):
    proc = subprocess.run([sys.executable, str(BENCH), "--dir", str(tmp_path / "missing"), "cli"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == f"bench.py: error: --dir {tmp_path / 'missing'}: not a directory"
    assert "Traceback" not in proc.stderr
