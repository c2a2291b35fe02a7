"""The job store, jobs.json: the only module that touches it.

Writes happen under a file lock, to a temp file that is fsynced and then renamed over the
store, and the directory is fsynced: a reader sees the old store or the new one, never half
of one, even when a writer is killed mid-write. A store that does not parse is reported and
never overwritten.

The store is written one job record per line. Each write leaves a token (CRC-32 and size of
what it wrote) in jobs.json.lock; a store whose bytes match it is known to be that canonical
text, so a command that touches a few jobs reads only their lines, and adding new jobs
writes the old bytes plus the new lines (still one fsynced temp file renamed over the store)
instead of decoding and re-encoding every record. Any other store (hand-edited, older
format) is parsed whole as before.
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
import time
import zlib
from collections.abc import MutableMapping
from contextlib import contextmanager
from typing import Any, Iterator

from cron_scheduler import safefs
from cron_scheduler.errors import CorruptStore, OperationalError
from cron_scheduler.home import Home, insecure
from cron_scheduler.models import Job
from cron_scheduler.validate import graph_errors

VERSION = 1
HEAD = b'{"version": %d, "jobs": {\n' % VERSION  # the canonical text: HEAD, lines joined by ",\n", TAIL
TAIL = b"\n}}\n"
_encode = json.JSONEncoder(ensure_ascii=False).encode  # the C encoder; no newline survives unescaped
_DECODER = json.JSONDecoder()
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
        if raw.startswith(HEAD) and raw.endswith(TAIL) and self._token() == _token(raw):
            return JobMap({}, path, self._known, lines=_Lines(raw))  # decoded line by line, on demand
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
        # Records nobody touched are written back as they were read: only new jobs added to a
        # canonical store -> its bytes plus their lines; else every record, sorted, one a line
        # (each through the C encoder: indent= would force the pure-Python one).
        data = jobs.appended_text()
        if data is None:
            data = [HEAD + ",\n".join(_line(k, v) for k, v in sorted(jobs.records().items())).encode() + TAIL]
        try:
            self._replace(data)
        except OSError as exc:
            raise OperationalError(f"cannot write {self.home.jobs}: {exc.strerror or exc}") from None
        try:
            _fsync_directory(self.home.root)
        except OSError as exc:  # the new store is in place, but a power loss may undo it
            raise OperationalError(f"wrote {self.home.jobs} but cannot sync its directory: "
                                   f"{exc.strerror or exc}; the change may not survive a crash") from None
        self._set_token(_token(*data))

    def _token(self) -> bytes:
        """The token of the last write (empty when unknown); read without the lock: it is only
        believed when it matches the bytes read."""
        try:
            fd = safefs.open_file(self.home.root, self.home.jobs_lock.name, os.O_RDONLY)
        except OSError:
            return b""
        try:
            return os.pread(fd, 64, 0)
        except OSError:
            return b""
        finally:
            os.close(fd)

    def _set_token(self, token: bytes) -> None:
        """Best effort (called under the lock): without it, the next command parses the whole store."""
        try:
            fd = safefs.open_file(self.home.root, self.home.jobs_lock.name, os.O_WRONLY)
        except OSError:
            return
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, token, 0)
        except OSError:
            pass
        finally:
            os.close(fd)

    def _replace(self, data: list[bytes | memoryview]) -> None:
        """Put the chunks of `data` in place of jobs.json through an fsynced temp file (removed on failure)."""
        # mkstemp opens O_CREAT | O_EXCL | O_NOFOLLOW: never an existing file or a planted link
        fd, tmp = tempfile.mkstemp(prefix=".jobs.", suffix=".tmp", dir=self.home.root)
        try:
            with os.fdopen(fd, "wb") as fh:
                for chunk in data:
                    fh.write(chunk)
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


def _token(*chunks: bytes | memoryview) -> bytes:
    crc = size = 0
    for chunk in chunks:
        crc, size = zlib.crc32(chunk, crc), size + len(chunk)
    return b"jobs.json %d %08x\n" % (size, crc)


def _line(job_id: str, record: dict[str, Any]) -> str:
    return f"{_encode(job_id)}: {_encode(record)}"


class _Lines:
    """The bytes of a canonical store: one record found by its key at a line start (a raw
    newline never occurs inside the JSON text of a line), or all of them decoded."""

    def __init__(self, data: bytes):
        self.data = data
        self._by_id: dict[str, bytes] | None = None

    def get(self, job_id: str) -> dict[str, Any] | None:
        """The record of `job_id`; KeyError if absent."""
        return json.loads(self.raw(job_id))

    def raw(self, job_id: str) -> bytes:
        """The JSON text of the record of `job_id`; KeyError if absent."""
        if self._by_id is not None:
            return self._by_id[job_id]
        key = b"\n" + _encode(job_id).encode() + b": "
        start = self.data.find(key, len(HEAD) - 1)
        if start < 0:
            raise KeyError(job_id)
        start += len(key)
        end = self.data.find(b"\n", start)
        return self.data[start:end].rstrip(b",")

    def split(self) -> dict[str, bytes]:
        """Every record's JSON text by id, none decoded (a record is one line)."""
        if self._by_id is None:
            # split the whole text, not a copy of its body: a 13 MB transient copy left as much
            # of the heap unused in a daemon holding 100,000 jobs
            lines = self.data.split(b",\n") if len(self.data) > len(HEAD) + len(TAIL) else []
            if lines:
                lines[0] = lines[0][len(HEAD):]
                lines[-1] = lines[-1][:-len(TAIL)]  # the same line when there is one
            self._by_id = {}
            for line in lines:
                key, _, text = line.partition(b"\": ")
                if b"\\" in key:  # an escape in the key, maybe of a quote: decode it properly
                    job_id, end = _DECODER.raw_decode(line.decode())
                    self._by_id[job_id] = line.decode()[end + 2:].encode()
                else:
                    self._by_id[key[1:].decode()] = text
        return self._by_id

    def all(self) -> dict[str, Any]:
        return json.loads(self.data)["jobs"]


def _fsync_directory(path: os.PathLike) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class JobMap(MutableMapping):
    """Jobs by id, decoded from their JSON records on first access: a command that touches
    one job of ten thousand does not build the other ones. Over a canonical store (`lines`),
    even the records are read one line at a time until something needs them all."""

    def __init__(self, records: dict[str, dict[str, Any]], path: os.PathLike,
                 known: dict[str, tuple[Any, Job]] | None = None, lines: _Lines | None = None):
        self._records = records  # with `lines`: only the records read or set so far
        self._lines = lines
        self._added: list[str] = []  # with `lines`: ids set that the lines do not hold
        self._absent: set[str] = set()  # with `lines`: ids looked up and not found
        self._rewrite = False  # with `lines`: a stored record was replaced
        self._known = {} if known is None else known
        self._jobs: dict[str, Job] = {}
        self._errors: dict[str, str] = {}
        self._strings: dict = {}  # values repeated between the jobs of this load, held once
        self._path = path

    def _record(self, job_id: str) -> dict[str, Any] | None:
        """The stored record (None: set in this map); KeyError if absent."""
        try:
            return self._records[job_id]
        except KeyError:
            if self._lines is None or job_id in self._absent:
                raise
        try:
            record = self._records[job_id] = self._lines.get(job_id)
        except KeyError:
            self._absent.add(job_id)
            raise
        return record

    def _all(self) -> dict[str, Any]:
        """Every record: the lines are decoded whole the first time something needs them all."""
        if self._lines is not None:
            records = self._lines.all()
            records.update(self._records)
            self._records, self._lines = records, None
        return self._records

    def appended_text(self) -> list[bytes | memoryview] | None:
        """The new store text, in chunks (no copy of the old bytes), when the only change to a
        canonical store is new jobs: its bytes plus their lines. None when the whole store has
        to be encoded."""
        if self._lines is None or self._rewrite:
            return None
        data = self._lines.data
        if not self._added:
            return [data]
        lines = ",\n".join(_line(job_id, self.raw(job_id)) for job_id in self._added).encode()
        body = memoryview(data)[:-len(TAIL)]
        return [body, b"" if len(body) == len(HEAD) else b",\n", lines, TAIL]

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
        if self._lines is not None and job_id not in self._records:
            # known by the 64-bit hash of its JSON text, not the decoded record: 32 bytes
            # instead of hundreds per job in a daemon's memory
            text = self._lines.raw(job_id)
            stored = hash(text)
        else:
            stored = self._record(job_id)
            text = None
        known = self._known.get(job_id)
        if known is not None and known[0] == stored:  # unchanged since the last load
            self._jobs[job_id] = known[1]
            return None
        try:
            record = stored if text is None else _DECODER.decode(text.decode())  # a line is UTF-8 (we wrote it)
            if type(record) is dict and "id" in record:
                if record["id"] != job_id:
                    raise CorruptStore(f"invalid job record {job_id!r}: its id {record['id']!r} differs from its key")
                record["id"] = job_id  # the equal key: one string per id held, not two
            job = self._jobs[job_id] = Job.from_dict(record, self._strings)
            if record is not None:  # None: set in this map, re-encoded on write
                self._known[job_id] = (stored, job)
            return None
        except CorruptStore as exc:
            self._errors[job_id] = str(exc)
            return str(exc)

    def valid(self) -> tuple[dict[str, Job], dict[str, str]]:
        """(the valid jobs by id, the quarantined ones: id -> why). A job is quarantined when
        its record fails `validate`, or when its dependencies do (unknown upstream, itself,
        a cycle, an upstream that is quarantined): it would otherwise wait forever."""
        if self._lines is not None:  # a canonical store: unchanged lines are not even decoded
            records: Any = dict.fromkeys(self._lines.split())
            records.update(dict.fromkeys(self._records))
        else:
            records = self._all()
        errors = {job_id: error for job_id in records if (error := self.error(job_id)) is not None}
        for job_id in [k for k in self._known if k not in records or k in errors]:
            del self._known[job_id]
        jobs = {job_id: self._jobs[job_id] for job_id in records if job_id not in errors}
        graph = graph_errors({job_id: job.depends_on for job_id, job in jobs.items()}, refused=errors)
        for job_id in list(jobs):
            if job_id in graph and job_id not in errors:
                errors[job_id] = graph[job_id]
                del jobs[job_id]
        return jobs, errors

    def __setitem__(self, job_id: str, job: Job) -> None:
        if self._lines is not None and job_id not in self._added:
            if job_id in self:
                self._rewrite = True
            else:
                self._added.append(job_id)
        self._jobs[job_id] = job
        self._errors.pop(job_id, None)
        self._records[job_id] = None  # re-encoded on write

    def __delitem__(self, job_id: str) -> None:
        del self._all()[job_id]
        self._jobs.pop(job_id, None)
        self._errors.pop(job_id, None)

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())

    def __contains__(self, job_id: object) -> bool:
        try:
            self._record(job_id)  # type: ignore[arg-type]
        except (KeyError, TypeError):
            return False
        return True

    def raw(self, job_id: str) -> dict[str, Any]:
        """The stored record, without building a Job (for whole-store checks)."""
        record = self._record(job_id)
        return record if record is not None else self._jobs[job_id].to_record()

    def depends_on(self, job_id: str) -> list[str]:
        """Upstream ids as stored, without building a Job (a malformed list counts as none)."""
        record = self._record(job_id)
        if record is None:
            return list(self._jobs[job_id].depends_on)
        deps = record.get("depends_on") if type(record) is dict else None
        return [d for d in deps if type(d) is str] if type(deps) is list else []

    def decode_all(self) -> dict[str, Job]:
        """Every job; CorruptStore for the first invalid one."""
        return {job_id: self[job_id] for job_id in self._all()}

    def records(self) -> dict[str, dict[str, Any]]:
        return {job_id: self.raw(job_id) for job_id in self._all()}
