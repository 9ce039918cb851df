"""``LocalStorage``: the job folders themselves (``<data_dir>/jobs/<id>/``), the embedded default.

The chain writes each artifact straight into its job folder, so keeping it is nothing (``put`` only checks the file is
there: zero copies) and the artifact routes serve the very file (``local_path``), as before storage existed.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ..errors import ArtifactNotFound, StorageConfigError, StorageError
from .base import CHUNK_BYTES, ArtifactBody, ByteRange, check_job_id, check_name, media_type

__all__ = ["LocalStorage"]


class LocalStorage:
    """Artifacts as files under ``root/<job id>/``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def description(self) -> str:
        return f"local folder {self.root}"

    def check(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageConfigError(f"artifact folder {self.root} cannot be created: {exc.strerror}") from exc

    def job_dir(self, job_id: str) -> Path:
        return self.root / check_job_id(job_id)

    def put(self, job_id: str, name: str, source: Path) -> None:
        target = self.job_dir(job_id) / check_name(name)
        if not source.is_file():
            raise StorageError(f"{self.description}: cannot keep {job_id}/{name}: {source} is not a file")
        if target.exists() and os.path.samefile(source, target):
            return  # written in place by the chain: nothing to copy
        try:
            _copy_atomically(source, target)
        except OSError as exc:
            raise StorageError(f"{self.description}: cannot keep {job_id}/{name}: {exc.strerror}") from exc

    def exists(self, job_id: str, name: str) -> bool:
        try:
            return self._file(job_id, name) is not None
        except ArtifactNotFound:
            return False

    def names(self, job_id: str) -> list[str]:
        folder = self.job_dir(job_id)
        if not folder.is_dir():
            return []
        return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())

    def open(self, job_id: str, name: str, byte_range: ByteRange | None = None) -> ArtifactBody:
        path = self._existing(job_id, name)
        size = path.stat().st_size
        span = (0, size - 1) if byte_range is None else byte_range.resolve(size)
        if span is None:
            return ArtifactBody.not_satisfiable(size, media_type(name))
        return ArtifactBody(
            size, media_type(name), span[0], span[1], _read(path, span[0], span[1]), partial=byte_range is not None
        )

    def read_bytes(self, job_id: str, name: str) -> bytes:
        return self._existing(job_id, name).read_bytes()

    def fetch(self, job_id: str, name: str, dest: Path) -> Path:
        path = self._existing(job_id, name)
        if not (dest.exists() and os.path.samefile(path, dest)):
            _copy_atomically(path, dest)
        return dest

    def local_path(self, job_id: str, name: str) -> Path | None:
        return self._file(job_id, name)

    def delete_job(self, job_id: str) -> None:
        shutil.rmtree(self.job_dir(job_id), ignore_errors=True)

    def _file(self, job_id: str, name: str) -> Path | None:
        """The artifact resolved (symlinks, ``..``) and checked to stay inside its job folder; None if missing."""
        root = self.job_dir(job_id).resolve()
        path = (root / check_name(name)).resolve()
        if not path.is_relative_to(root) or path == root or not path.is_file():
            return None
        return path

    def _existing(self, job_id: str, name: str) -> Path:
        path = self._file(job_id, name)
        if path is None:
            raise ArtifactNotFound(f"job {job_id} has no file {name!r}")
        return path


def _read(path: Path, start: int, end: int) -> Iterator[bytes]:
    with path.open("rb") as file:
        file.seek(start)
        left = end - start + 1
        while left > 0:
            chunk = file.read(min(CHUNK_BYTES, left))
            if not chunk:
                return
            left -= len(chunk)
            yield chunk


def _copy_atomically(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    os.close(handle)
    try:
        shutil.copyfile(source, temporary)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
