"""The job store, jobs.json: the only module that touches it.

Writes happen under a file lock, to a temp file that is fsynced and then renamed over the
store, and the directory is fsynced: a reader sees the old store or the new one, never half
of one, even when a writer is killed mid-write. A store that does not parse is reported and
never overwritten.
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
import time
from collections.abc import MutableMapping
from contextlib import contextmanager
from typing import Any, Iterator

from cron_scheduler import safefs
from cron_scheduler.errors import CorruptStore, OperationalError
from cron_scheduler.home import Home, insecure
from cron_scheduler.models import Job
from cron_scheduler.validate import graph_errors

VERSION = 1
LOCK_TIMEOUT = 30.0
LOCK_POLL = 0.05


class Store:
    def __init__(self, home: Home):
        self.home = home
        # records that passed validation at the last load, with their Job: a daemon reloading
        # ten thousand jobs after one edit validates the one that changed
        self._known: dict[str, tuple[Any, Job]] = {}

    def signature(self) -> tuple[int, ...] | None:
        """(mtime_ns, size, inode, mode) of jobs.json and the mode of the home, or None when
        there is no jobs.json: cheap change detection for the daemon (two stat calls), which
        also sees a chmod of either."""
        try:
            st = os.lstat(self.home.jobs)  # a link is seen (and refused by load), not followed
        except FileNotFoundError:
            return None
        try:
            home_mode = os.stat(self.home.root).st_mode
        except OSError:
            home_mode = 0
        return (st.st_mtime_ns, st.st_size, st.st_ino, st.st_mode, home_mode)

    def check_secure(self, signature: tuple[int, ...] | None) -> None:
        """InsecureHome if the modes in `signature` let group or others write the store or home."""
        if signature is not None:
            insecure(self.home.jobs, signature[3])
            insecure(self.home.root, signature[4])

    def load(self) -> "JobMap":
        """All jobs by id; an absent store is empty; a corrupt one raises CorruptStore."""
        path = self.home.jobs
        try:
            with safefs.read_file(self.home.root, path.name) as fh:  # never through a link
                raw = fh.read()
        except FileNotFoundError:
            return JobMap({}, path)
        except OSError as exc:
            raise CorruptStore(f"cannot read {path}: {exc.strerror}") from None
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # RecursionError: nested too deep
            raise CorruptStore(f"corrupt job store {path}: {exc}") from None
        if not isinstance(data, dict) or not isinstance(data.get("jobs"), dict):
            raise CorruptStore(f"corrupt job store {path}: expected an object with a 'jobs' object")
        if data.get("version") != VERSION:
            raise CorruptStore(f"job store {path} has version {data.get('version')!r}; this program reads {VERSION}")
        # a bad record is quarantined (JobMap.error), not fatal: the other jobs stay usable
        return JobMap(data["jobs"], path, self._known)

    @contextmanager
    def transaction(self) -> Iterator[dict[str, Job]]:
        """Lock, load, let the caller change the dict in place, then write it atomically.
        If the block raises, nothing is written."""
        self.home.ensure()
        lock = _lock(self.home)
        try:
            self._remove_stale_temp_files()
            jobs = self.load()
            yield jobs
            self._write(jobs)
        finally:
            os.close(lock)  # releases the flock

    def _remove_stale_temp_files(self) -> None:
        """Temp files of writers killed mid-write (we hold the lock: nobody else is writing)."""
        for stale in self.home.root.glob(".jobs.*.tmp"):
            stale.unlink(missing_ok=True)

    def _write(self, jobs: "JobMap") -> None:
        # One dump through the C encoder (indent= would force the pure-Python one, ten times
        # slower on a large store); records nobody touched are written back as they were read.
        payload = {"version": VERSION, "jobs": dict(sorted(jobs.records().items()))}
        data = json.dumps(payload, ensure_ascii=False).encode() + b"\n"
        try:
            self._replace(data)
        except OSError as exc:
            raise OperationalError(f"cannot write {self.home.jobs}: {exc.strerror or exc}") from None
        try:
            _fsync_directory(self.home.root)
        except OSError as exc:  # the new store is in place, but a power loss may undo it
            raise OperationalError(f"wrote {self.home.jobs} but cannot sync its directory: "
                                   f"{exc.strerror or exc}; the change may not survive a crash") from None

    def _replace(self, data: bytes) -> None:
        """Put `data` in place of jobs.json through an fsynced temp file (removed on failure)."""
        # mkstemp opens O_CREAT | O_EXCL | O_NOFOLLOW: never an existing file or a planted link
        fd, tmp = tempfile.mkstemp(prefix=".jobs.", suffix=".tmp", dir=self.home.root)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
                os.fchmod(fh.fileno(), 0o600)
            os.replace(tmp, self.home.jobs)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise


def _lock(home: Home) -> int:
    """flock jobs.json.lock, opened without following a link there (a planted link is refused
    with one line; nothing is created, truncated or chmod-ed through it). The fd holds the lock."""
    try:
        fd = safefs.open_file(home.root, home.jobs_lock.name, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise OperationalError(f"cannot open {home.jobs_lock}: {exc.strerror or exc}") from None
    try:
        os.fchmod(fd, 0o600)
        deadline = time.monotonic() + LOCK_TIMEOUT
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise OperationalError(
                        f"job store {home.jobs} is locked by another writer; try again") from None
                time.sleep(LOCK_POLL)
    except BaseException:
        os.close(fd)
        raise


def _fsync_directory(path: os.PathLike) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class JobMap(MutableMapping):
    """Jobs by id, decoded from their JSON records on first access: a command that touches
    one job of ten thousand does not build the other ones."""

    def __init__(self, records: dict[str, dict[str, Any]], path: os.PathLike,
                 known: dict[str, tuple[Any, Job]] | None = None):
        self._records = records
        self._known = {} if known is None else known
        self._jobs: dict[str, Job] = {}
        self._errors: dict[str, str] = {}
        self._path = path

    def __getitem__(self, job_id: str) -> Job:
        job = self._jobs.get(job_id)
        if job is None:
            error = self.error(job_id)
            if error is not None:
                raise CorruptStore(f"job {job_id!r} in {self._path} is invalid: {error}; fix it there, "
                                   "replace it (add --replace) or remove it")
            job = self._jobs[job_id]
        return job

    def error(self, job_id: str) -> str | None:
        """Why the stored record of `job_id` is not a valid job (None if it is). KeyError if absent."""
        if job_id in self._errors:
            return self._errors[job_id]
        if job_id in self._jobs:
            return None
        record = self._records[job_id]
        known = self._known.get(job_id)
        if known is not None and known[0] == record:  # unchanged since the last load
            self._jobs[job_id] = known[1]
            return None
        try:
            if type(record) is dict and "id" in record and record["id"] != job_id:
                raise CorruptStore(f"invalid job record {job_id!r}: its id {record['id']!r} differs from its key")
            job = self._jobs[job_id] = Job.from_dict(record)
            if record is not None:  # None: set in this map, re-encoded on write
                self._known[job_id] = (record, job)
            return None
        except CorruptStore as exc:
            self._errors[job_id] = str(exc)
            return str(exc)

    def valid(self) -> tuple[dict[str, Job], dict[str, str]]:
        """(the valid jobs by id, the quarantined ones: id -> why). A job is quarantined when
        its record fails `validate`, or when its dependencies do (unknown upstream, itself,
        a cycle, an upstream that is quarantined): it would otherwise wait forever."""
        errors = {job_id: error for job_id in self._records if (error := self.error(job_id)) is not None}
        for job_id in [k for k in self._known if k not in self._records or k in errors]:
            del self._known[job_id]
        jobs = {job_id: self._jobs[job_id] for job_id in self._records if job_id not in errors}
        graph = graph_errors({job_id: job.depends_on for job_id, job in jobs.items()}, refused=errors)
        for job_id in list(jobs):
            if job_id in graph and job_id not in errors:
                errors[job_id] = graph[job_id]
                del jobs[job_id]
        return jobs, errors

    def __setitem__(self, job_id: str, job: Job) -> None:
        self._jobs[job_id] = job
        self._errors.pop(job_id, None)
        self._records[job_id] = None  # re-encoded on write

    def __delitem__(self, job_id: str) -> None:
        del self._records[job_id]
        self._jobs.pop(job_id, None)
        self._errors.pop(job_id, None)

    def __iter__(self) -> Iterator[str]:
        return iter(self._records)

    def __len__(self) -> int:
        return len(self._records)

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._records

    def raw(self, job_id: str) -> dict[str, Any]:
        """The stored record, without building a Job (for whole-store checks)."""
        record = self._records[job_id]
        return record if record is not None else self._jobs[job_id].to_record()

    def depends_on(self, job_id: str) -> list[str]:
        """Upstream ids as stored, without building a Job (a malformed list counts as none)."""
        record = self._records[job_id]
        if record is None:
            return list(self._jobs[job_id].depends_on)
        deps = record.get("depends_on") if type(record) is dict else None
        return [d for d in deps if type(d) is str] if type(deps) is list else []

    def decode_all(self) -> dict[str, Job]:
        """Every job; CorruptStore for the first invalid one."""
        return {job_id: self[job_id] for job_id in self._records}

    def records(self) -> dict[str, dict[str, Any]]:
        return {job_id: self.raw(job_id) for job_id in self._records}
