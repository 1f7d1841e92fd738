"""Where a job's files live: a local directory or any pyarrow filesystem URI.

``storage`` in grid.yaml is a local path (relative to the working directory) or a URI
that ``pyarrow.fs.FileSystem.from_uri`` understands (``file://``, ``s3://``, ``gs://``,
``hdfs://``). Ray Tune writes its experiment state and checkpoints there itself; the job
driver writes the spec, the environment, the progress snapshot and the result tables
through the same filesystem, so a job on a cluster with shared object storage needs no
shared disk.
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

__all__ = ["JobStorage", "StorageError"]


class StorageError(ValueError):
    """A storage path or URI that pyarrow cannot open."""


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
        root, job_id = str(job_uri).rstrip("/").rsplit("/", 1)
        return cls.of(root, job_id)

    @property
    def is_local(self) -> bool:
        return isinstance(self.filesystem, pafs.LocalFileSystem)

    @property
    def uri(self) -> str:
        """The job directory as Ray Tune and users see it."""
        return posixpath.join(self.root_uri, self.job_id)

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

    def create(self) -> None:
        """Make the job directory; a job of that name must not exist yet."""
        if self.exists():
            raise FileExistsError(f"{self.uri}: a job of that name exists (use --resume to continue it)")
        self.filesystem.create_dir(self.path, recursive=True)

    def write_text(self, name: str, text: str) -> None:
        """Write a small file whole (readers never see half of it)."""
        self._atomic(self._file(name), lambda path: self._put(path, text.encode()))

    def read_text(self, name: str) -> str:
        with self.filesystem.open_input_stream(self._file(name)) as stream:
            return stream.read().decode()

    def write_parquet(self, name: str, table: pa.Table) -> str:
        """Write ``results/<name>.parquet`` whole; returns its URI."""
        self.filesystem.create_dir(self._file("results"), recursive=True)
        final = self._file("results", f"{name}.parquet")
        self._atomic(final, lambda path: pq.write_table(table, path, filesystem=self.filesystem))
        return posixpath.join(self.uri, "results", f"{name}.parquet")

    def read_parquet(self, name: str) -> pa.Table:
        return pq.read_table(self._file("results", f"{name}.parquet"), filesystem=self.filesystem)

    def _put(self, path: str, data: bytes) -> None:
        with self.filesystem.open_output_stream(path) as out:
            out.write(data)

    def _atomic(self, final: str, write) -> None:
        # Local disks: a temporary name, then a rename. Object stores have no rename, but a
        # single put is atomic there already.
        if not self.is_local:
            write(final)
            return
        head, tail = posixpath.split(final)
        tmp = posixpath.join(head, f".{tail}.tmp")
        write(tmp)
        self.filesystem.move(tmp, final)
