"""Where a job's files live: a local directory or any pyarrow filesystem URI.

``storage`` in grid.yaml is a local path (relative to the working directory) or a URI
that ``pyarrow.fs.FileSystem.from_uri`` understands (``file://``, ``s3://``, ``gs://``,
``hdfs://``). Ray Tune writes its experiment state and checkpoints there itself; the job
driver writes the spec, the environment, the progress snapshot and the result tables
through the same filesystem, so a job on a cluster with shared object storage needs no
shared disk. The service reads the progress snapshot with :func:`read_progress` (no Ray here).
A job's lease (:func:`claim_lease`) says which attempt of it may write: only the newest driver.
"""

from __future__ import annotations

import json
import os
import posixpath
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

__all__ = [
    "LEASE_FILE", "PROGRESS_FILE", "Fenced", "JobStorage", "StorageError", "check_lease", "claim_lease",
    "lease_holder", "read_progress", "write_progress",
]

PROGRESS_FILE = "progress.json"  # the driver's live counts per stage (docs/results.md)
LEASE_FILE = "lease.json"  # which attempt of the job may write to it: the newest driver


class StorageError(ValueError):
    """A storage path or URI that pyarrow cannot open."""


def _split_query(uri: str) -> tuple[str, str]:
    """``("s3://b/runs", "?region=x")`` of ``s3://b/runs?region=x``; a local path has no query."""
    if "://" not in uri or "?" not in uri:
        return uri, ""
    where, _, query = uri.partition("?")
    return where, "?" + query


@dataclass(frozen=True)
class JobStorage:
    """One job's directory: ``<storage>/<job_id>`` on ``filesystem``.

    ``uri`` is what Ray Tune gets (an absolute path for local storage, else the URI);
    ``path`` is the same place as the filesystem sees it.
    """

    filesystem: pafs.FileSystem
    root_uri: str
    root_path: str
    job_id: str

    @classmethod
    def of(cls, storage: str, job_id: str) -> JobStorage:
        if "://" not in storage:
            root = str(Path(storage).expanduser().resolve())
            return cls(pafs.LocalFileSystem(), root, root, job_id)
        try:
            filesystem, root_path = pafs.FileSystem.from_uri(storage)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as exc:
            raise StorageError(f"storage {storage!r}: pyarrow cannot open it ({exc})") from None
        return cls(filesystem, storage.rstrip("/"), root_path.rstrip("/"), job_id)

    @classmethod
    def at(cls, job_uri: str | os.PathLike[str]) -> JobStorage:
        """A job's storage from its own directory (path or URI), e.g. what ``uri`` gave."""
        where, query = _split_query(str(job_uri))
        root, job_id = where.rstrip("/").rsplit("/", 1)
        return cls.of(root + query, job_id)

    @property
    def is_local(self) -> bool:
        return isinstance(self.filesystem, pafs.LocalFileSystem)

    @property
    def uri(self) -> str:
        """The job directory as Ray Tune and users see it."""
        return self.child_uri()

    def child_uri(self, *parts: str) -> str:
        """The URI of ``parts`` under the job directory; a URI's query (``s3://b/runs?region=…``, which
        pyarrow reads options from) stays at its end."""
        where, query = _split_query(self.root_uri)
        return posixpath.join(where, self.job_id, *parts) + query

    @property
    def path(self) -> str:
        return posixpath.join(self.root_path, self.job_id)

    @property
    def local_dir(self) -> Path | None:
        """The job directory as a local Path, when the storage is local."""
        return Path(self.path) if self.is_local else None

    def _file(self, *parts: str) -> str:
        return posixpath.join(self.path, *parts)

    def exists(self, *parts: str) -> bool:
        return self.filesystem.get_file_info(self._file(*parts)).type != pafs.FileType.NotFound

    def create(self, *, exist_ok: bool = False) -> None:
        """Make the job directory; a job of that name must not exist yet, unless ``exist_ok`` (a later
        attempt of a job whose earlier drivers died before Tune wrote its first state: it starts over)."""
        if self.exists() and not exist_ok:
            raise FileExistsError(f"{self.uri}: a job of that name exists (use --resume to continue it)")
        self.filesystem.create_dir(self.path, recursive=True)

    def write_text(self, name: str, text: str) -> None:
        """Write a small file whole (readers never see half of it)."""
        self._atomic(self._file(name), lambda path: self._put(path, text.encode()))

    def write_bytes(self, name: str, data: bytes) -> str:
        """Write a file whole at ``name`` (a relative path; its directories are made); its URI."""
        final = self._file(name)
        self.filesystem.create_dir(posixpath.dirname(final), recursive=True)
        self._atomic(final, lambda path: self._put(path, data))
        return self.child_uri(name)

    def read_bytes(self, name: str) -> bytes:
        with self.filesystem.open_input_stream(self._file(name)) as stream:
            return stream.read()

    def read_text(self, name: str) -> str:
        with self.filesystem.open_input_stream(self._file(name)) as stream:
            return stream.read().decode()

    def write_parquet(self, name: str, table: pa.Table) -> str:
        """Write ``results/<name>.parquet`` whole; returns its URI."""
        self.filesystem.create_dir(self._file("results"), recursive=True)
        final = self._file("results", f"{name}.parquet")
        self._atomic(final, lambda path: pq.write_table(table, path, filesystem=self.filesystem))
        return self.child_uri("results", f"{name}.parquet")

    def read_parquet(self, name: str) -> pa.Table:
        return pq.read_table(self._file("results", f"{name}.parquet"), filesystem=self.filesystem)

    def _put(self, path: str, data: bytes) -> None:
        with self.filesystem.open_output_stream(path) as out:
            out.write(data)

    def _atomic(self, final: str, write) -> None:
        # Local disks: a temporary name, then a rename. Object stores have no rename, but a
        # single put is atomic there already. A write that fails (a full disk) leaves the file as it
        # was and no temporary one, and its error names the file.
        head, tail = posixpath.split(final)
        tmp = posixpath.join(head, f".{tail}.tmp") if self.is_local else final
        try:
            write(tmp)
            if tmp != final:
                self.filesystem.move(tmp, final)
        except OSError as exc:
            if tmp != final and self.filesystem.get_file_info(tmp).type == pafs.FileType.File:
                self.filesystem.delete_file(tmp)
            raise OSError(exc.errno, f"{final}: cannot be written ({exc})") from exc


class Fenced(RuntimeError):
    """A newer attempt of the job has claimed its storage: this driver must stop writing there."""


def lease_holder(storage: JobStorage) -> int | None:
    """The attempt that last claimed the job (``lease.json``); None before any did."""
    try:
        return int(json.loads(storage.read_text(LEASE_FILE))["attempt"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def check_lease(storage: JobStorage, attempt: int | None) -> None:
    """Raise Fenced when an attempt newer than ``attempt`` holds the job (None: no lease kept)."""
    if attempt is None:
        return
    holder = lease_holder(storage)
    if holder is not None and holder > attempt:
        raise Fenced(f"{storage.uri}: attempt {holder} of job {storage.job_id} has started; "
                     f"this driver (attempt {attempt}) stops")


def claim_lease(storage: JobStorage, attempt: int) -> None:
    """Make ``attempt`` the one driver that writes the job; Fenced if a newer one got there first.

    The service numbers a job's attempts (its Ray submissions ``<job>-<attempt>``); an older
    driver that outlived its head checks the lease before every write and stops.
    """
    check_lease(storage, attempt)
    claim = {"attempt": attempt, "host": socket.gethostname(), "pid": os.getpid(), "claimed_at": time.time()}
    storage.write_text(LEASE_FILE, json.dumps(claim))


def write_progress(storage: JobStorage, snapshot: dict[str, Any]) -> None:
    """Replace the job's progress snapshot (``progress.json``) whole."""
    storage.write_text(PROGRESS_FILE, json.dumps(snapshot, indent=1))


def read_progress(storage: JobStorage) -> dict[str, Any] | None:
    """The last progress snapshot of a job, or None before its driver wrote one."""
    try:
        return json.loads(storage.read_text(PROGRESS_FILE))
    except (FileNotFoundError, json.JSONDecodeError):
        return None
