"""The interface every artifact storage implements, and the rules it shares: valid names, media types, byte ranges.

An artifact is one file of one job, named by its path relative to the job folder (``base.png``, ``model.glb``,
``views/view_00.png``). The chain always writes into the local job folder (``<data_dir>/jobs/<id>/``); a storage
keeps each finished file (``put``) and hands it back (``open``, ``read_bytes``, ``fetch``) to whoever needs it, on
this machine or another.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Protocol

from ..errors import ArtifactNotFound

__all__ = ["ArtifactBody", "ArtifactStorage", "ByteRange", "check_job_id", "check_name", "media_type", "parse_range"]

MAX_NAME_CHARS = 512
CHUNK_BYTES = 256 * 1024
MEDIA_TYPES = {
    ".png": "image/png",
    ".glb": "model/gltf-binary",
    ".json": "application/json",
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
}
_JOB_ID = re.compile(r"[0-9A-Za-z_-]{1,64}")
_UNSAFE = re.compile(r"[\x00-\x1f\x7f\\]")
_RANGE = re.compile(r"bytes=(\d*)-(\d*)", re.ASCII)


@dataclass(frozen=True)
class ByteRange:
    """One HTTP byte range: ``first``-``last`` inclusive (``last`` None: to the end), or the final ``suffix`` bytes."""

    first: int | None = None
    last: int | None = None
    suffix: int | None = None

    def resolve(self, size: int) -> tuple[int, int] | None:
        """(start, end inclusive) within an object of ``size`` bytes; None when unsatisfiable (HTTP 416)."""
        if self.suffix is not None:
            return (max(0, size - self.suffix), size - 1) if self.suffix > 0 and size > 0 else None
        first = self.first or 0
        if first >= size:
            return None
        last = size - 1 if self.last is None else min(self.last, size - 1)
        return first, last

    def header(self) -> str:
        """As an HTTP ``Range`` value (what S3's GetObject takes)."""
        if self.suffix is not None:
            return f"bytes=-{self.suffix}"
        return f"bytes={self.first or 0}-{'' if self.last is None else self.last}"


@dataclass
class ArtifactBody:
    """An opened artifact: ``size`` is the whole file's, ``start``..``end`` (inclusive) the bytes ``chunks`` yields
    (the whole file unless a range was asked). Call ``close`` if ``chunks`` is not read to its end."""

    size: int
    media_type: str
    start: int
    end: int
    chunks: Iterator[bytes]
    partial: bool = False  # a range was asked and is what ``chunks`` yields
    unsatisfiable: bool = False  # a range was asked that the file cannot give (HTTP 416); ``chunks`` is empty

    @property
    def length(self) -> int:
        return max(0, self.end - self.start + 1)

    @classmethod
    def not_satisfiable(cls, size: int, media: str) -> ArtifactBody:
        return cls(size, media, 0, -1, iter(()), partial=True, unsatisfiable=True)

    def close(self) -> None:
        close = getattr(self.chunks, "close", None)
        if close is not None:
            close()


class ArtifactStorage(Protocol):
    """Where finished artifacts are kept (``LocalStorage``, ``S3Storage``). Every method is blocking and safe to call
    from several threads. Names are checked with ``check_name``; a missing artifact raises ``ArtifactNotFound``, a
    storage that fails raises ``StorageError`` naming the storage and the artifact."""

    @property
    def description(self) -> str:
        """Where the artifacts go, for logs and messages (never a credential)."""
        ...

    def check(self) -> None:
        """Raise ``StorageConfigError`` unless the storage can be used now (run once at start)."""
        ...

    def put(self, job_id: str, name: str, source: Path) -> None:
        """Keep the finished file ``source`` as artifact ``name`` of ``job_id`` (replacing an earlier version)."""
        ...

    def exists(self, job_id: str, name: str) -> bool: ...

    def names(self, job_id: str) -> list[str]:
        """The job's artifact names, sorted."""
        ...

    def open(self, job_id: str, name: str, byte_range: ByteRange | None = None) -> ArtifactBody:
        """The artifact, or the part ``byte_range`` asks for, as a stream of chunks (``unsatisfiable`` set and no
        bytes when the range starts past the end)."""
        ...

    def read_bytes(self, job_id: str, name: str) -> bytes: ...

    def fetch(self, job_id: str, name: str, dest: Path) -> Path:
        """Copy the artifact to the local file ``dest`` (atomically: a reader never sees half a file); returns it."""
        ...

    def local_path(self, job_id: str, name: str) -> Path | None:
        """The artifact's own file on this machine when the storage keeps it there (served as is), else None."""
        ...

    def delete_job(self, job_id: str) -> None:
        """Delete every artifact of the job (retention); a job without any is not an error."""
        ...


def check_job_id(job_id: str) -> str:
    if not _JOB_ID.fullmatch(job_id):
        raise ArtifactNotFound(f"no job with id {job_id!r}")
    return job_id


def check_name(name: str) -> str:
    """``name`` if it is a relative path inside a job folder, else ``ArtifactNotFound`` (never a path outside)."""
    segments = name.split("/")  # a leading, trailing or doubled slash gives an empty segment
    if len(name) > MAX_NAME_CHARS or _UNSAFE.search(name) or any(s in ("", ".", "..") for s in segments):
        raise ArtifactNotFound(f"no artifact named {name[:80]!r}")
    return name


def media_type(name: str) -> str:
    return MEDIA_TYPES.get(PurePosixPath(name).suffix.lower(), "application/octet-stream")


def parse_range(header: str | None) -> ByteRange | None:
    """One ``bytes=a-b`` / ``bytes=a-`` / ``bytes=-n`` range; None for no header, several ranges or anything
    malformed — RFC 9110 §14.2 lets a server ignore such a Range and send the whole file."""
    match = _RANGE.fullmatch(header.strip()) if header else None
    if match is None:
        return None
    first, last = match.group(1), match.group(2)
    if not first and not last:
        return None
    if not first:
        return ByteRange(suffix=int(last))
    if last and int(last) < int(first):
        return None
    return ByteRange(first=int(first), last=int(last) if last else None)
