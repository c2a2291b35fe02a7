"""The job store, jobs.json: the only module that touches it.

Writes happen under a file lock, to a temp file that is fsynced and then renamed over the
store, and the directory is fsynced: a reader sees the old store or the new one, never half
of one, even when a writer is killed mid-write. A store that does not parse is reported and
never overwritten.
"""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from typing import Iterator

from filelock import FileLock, Timeout

from cron_scheduler.errors import CorruptStore, OperationalError
from cron_scheduler.home import Home
from cron_scheduler.models import Job

VERSION = 1
LOCK_TIMEOUT = 30.0


class Store:
    def __init__(self, home: Home):
        self.home = home

    def signature(self) -> tuple[int, int, int] | None:
        """(mtime_ns, size, inode) of jobs.json, or None: cheap change detection for the daemon."""
        try:
            st = os.stat(self.home.jobs)
        except FileNotFoundError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def load(self) -> dict[str, Job]:
        """All jobs by id; an absent store is empty; a corrupt one raises CorruptStore."""
        path = self.home.jobs
        try:
            with open(path, "rb") as fh:
                raw = fh.read()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise CorruptStore(f"cannot read {path}: {exc.strerror}") from None
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise CorruptStore(f"corrupt job store {path}: {exc}") from None
        if not isinstance(data, dict) or not isinstance(data.get("jobs"), dict):
            raise CorruptStore(f"corrupt job store {path}: expected an object with a 'jobs' object")
        if data.get("version") != VERSION:
            raise CorruptStore(f"job store {path} has version {data.get('version')!r}; this program reads {VERSION}")
        jobs = {}
        for job_id, record in data["jobs"].items():
            if not isinstance(record, dict) or record.get("id") != job_id:
                raise CorruptStore(f"corrupt job store {path}: bad record for {job_id!r}")
            try:
                jobs[job_id] = Job.from_dict(record)
            except CorruptStore as exc:
                raise CorruptStore(f"corrupt job store {path}: {exc}") from None
        return jobs

    @contextmanager
    def transaction(self) -> Iterator[dict[str, Job]]:
        """Lock, load, let the caller change the dict in place, then write it atomically.
        If the block raises, nothing is written."""
        self.home.ensure()
        lock = FileLock(str(self.home.jobs_lock), timeout=LOCK_TIMEOUT, mode=0o600)
        try:
            lock.acquire()
        except Timeout:
            raise OperationalError(f"job store {self.home.jobs} is locked by another writer; try again") from None
        try:
            jobs = self.load()
            yield jobs
            self._write(jobs)
        finally:
            lock.release()

    def _write(self, jobs: dict[str, Job]) -> None:
        payload = {"version": VERSION, "jobs": {job_id: job.to_dict() for job_id, job in sorted(jobs.items())}}
        data = json.dumps(payload, indent=1, ensure_ascii=False).encode() + b"\n"
        directory = self.home.root
        fd, tmp = tempfile.mkstemp(prefix=".jobs.", suffix=".tmp", dir=directory)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.home.jobs)
        except BaseException as exc:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            if isinstance(exc, OSError):
                raise OperationalError(f"cannot write {self.home.jobs}: {exc.strerror}") from None
            raise
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
