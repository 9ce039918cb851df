"""``S3Storage``: artifacts as objects ``<prefix>/<job id>/<name>`` in an S3-compatible bucket (AWS S3, MinIO, R2…).

Plain boto3: the endpoint is ``ALCH3MIST_S3_ENDPOINT_URL`` (unset: AWS), credentials and region come from boto3's
standard chain (``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` / ``AWS_DEFAULT_REGION``, ``~/.aws``, an instance
role) and never appear in a message. The bucket stays private: browsers get the objects through our signed routes.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ..errors import ArtifactNotFound, StorageConfigError, StorageError
from .base import CHUNK_BYTES, ArtifactBody, ByteRange, check_job_id, check_name, media_type

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import ObjectIdentifierTypeDef

__all__ = ["S3Location", "S3Storage", "parse_storage_url"]

# S3's bucket naming rules (MinIO and R2 follow them): 3–63 lowercase letters, digits, dots, hyphens.
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_NOT_FOUND = ("404", "NoSuchKey", "NotFound")
_DELETE_BATCH = 1000  # DeleteObjects takes at most 1000 keys
_NO_CREDENTIALS = (
    "no S3 credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or use ~/.aws/credentials, "
    "AWS_PROFILE or an instance role)"
)


@dataclass(frozen=True)
class S3Location:
    """Where ``ALCH3MIST_STORAGE_URL`` points: a bucket and a key prefix ('' for the bucket's root)."""

    bucket: str
    prefix: str

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"


def parse_storage_url(url: str) -> S3Location:
    """``s3://bucket[/prefix]``; anything else raises ``StorageConfigError`` saying what is wrong."""
    parts = urlsplit(url.strip())
    shown = parts._replace(netloc=f"***@{parts.hostname}") if "@" in parts.netloc else parts  # never echo a secret
    where = f"ALCH3MIST_STORAGE_URL={shown.geturl()!r}"
    if parts.scheme != "s3":
        raise StorageConfigError(f"{where}: the scheme must be s3:// (e.g. s3://my-bucket/alch3mist); unset it to "
                                 "keep artifacts in the local data folder")  # fmt: skip
    if "@" in parts.netloc or parts.query or parts.fragment:
        raise StorageConfigError(f"{where}: give only s3://bucket/prefix; credentials go in AWS_ACCESS_KEY_ID / "
                                 "AWS_SECRET_ACCESS_KEY, the endpoint in ALCH3MIST_S3_ENDPOINT_URL")  # fmt: skip
    if not parts.netloc:
        raise StorageConfigError(f"{where}: no bucket name (expected s3://bucket/prefix)")
    if not _BUCKET.fullmatch(parts.netloc) or ".." in parts.netloc:
        raise StorageConfigError(f"{where}: {parts.netloc!r} is not a valid bucket name (3-63 lowercase letters, "
                                 "digits, '.', '-')")  # fmt: skip
    prefix = parts.path.strip("/")
    if prefix and any(segment in ("", ".", "..") for segment in prefix.split("/")):
        raise StorageConfigError(f"{where}: the prefix {prefix!r} has an empty, '.' or '..' segment")
    return S3Location(parts.netloc, prefix)


class S3Storage:
    """Artifacts in one bucket under one prefix; one thread-safe boto3 client."""

    def __init__(self, location: S3Location, endpoint_url: str | None = None, client: S3Client | None = None) -> None:
        self.location = location
        self.endpoint_url = endpoint_url
        self._client = client or _client(endpoint_url)

    @property
    def description(self) -> str:
        at = f" at {self.endpoint_url}" if self.endpoint_url else ""
        return f"S3 storage {self.location.url}{at}"

    def check(self) -> None:
        try:
            self._client.head_bucket(Bucket=self.location.bucket)
        except Exception as exc:
            raise StorageConfigError(f"{self.description}: the bucket cannot be used: {_bucket_reason(exc)}") from exc

    def put(self, job_id: str, name: str, source: Path) -> None:
        key = self._key(job_id, name)
        try:
            self._client.upload_file(
                str(source), self.location.bucket, key, ExtraArgs={"ContentType": media_type(name)}
            )
        except Exception as exc:
            raise self._error("upload", job_id, name, exc) from exc

    def exists(self, job_id: str, name: str) -> bool:
        try:
            key = self._key(job_id, name)
        except ArtifactNotFound:
            return False
        try:
            self._client.head_object(Bucket=self.location.bucket, Key=key)
        except Exception as exc:
            if _is_not_found(exc):
                return False
            raise self._error("look up", job_id, name, exc) from exc
        return True

    def names(self, job_id: str) -> list[str]:
        folder = self._folder(job_id)
        return sorted(key[len(folder) :] for key in self._keys(folder, job_id))

    def open(self, job_id: str, name: str, byte_range: ByteRange | None = None) -> ArtifactBody:
        key = self._key(job_id, name)
        bucket = self.location.bucket
        try:
            if byte_range is None:
                response = self._client.get_object(Bucket=bucket, Key=key)
            else:
                response = self._client.get_object(Bucket=bucket, Key=key, Range=byte_range.header())
        except Exception as exc:
            if _error_code(exc) == "InvalidRange":  # starts past the end: HTTP 416 with the object's size
                return ArtifactBody.not_satisfiable(self._size(job_id, name), media_type(name))
            raise self._error("read", job_id, name, exc) from exc
        length = int(response["ContentLength"])
        start, size = 0, length
        content_range = response.get("ContentRange")  # "bytes 0-99/1234" when a range was served
        if content_range:
            span, _, total = content_range.removeprefix("bytes ").partition("/")
            start, size = int(span.partition("-")[0]), int(total)
        body = response["Body"]
        return ArtifactBody(
            size, media_type(name), start, start + length - 1, _chunks(body), partial=bool(content_range)
        )

    def read_bytes(self, job_id: str, name: str) -> bytes:
        body = self.open(job_id, name)
        return b"".join(body.chunks)

    def fetch(self, job_id: str, name: str, dest: Path) -> Path:
        key = self._key(job_id, name)
        dest.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
        os.close(handle)
        try:
            self._client.download_file(self.location.bucket, key, temporary)
            os.replace(temporary, dest)
        except Exception as exc:
            Path(temporary).unlink(missing_ok=True)
            raise self._error("download", job_id, name, exc) from exc
        return dest

    def local_path(self, job_id: str, name: str) -> Path | None:
        return None  # always served from the bucket: the object is the artifact, a local copy may be stale or gone

    def delete_job(self, job_id: str) -> None:
        keys = self._keys(self._folder(job_id), job_id)
        for first in range(0, len(keys), _DELETE_BATCH):
            batch: list[ObjectIdentifierTypeDef] = [{"Key": key} for key in keys[first : first + _DELETE_BATCH]]
            try:
                answer = self._client.delete_objects(
                    Bucket=self.location.bucket, Delete={"Objects": batch, "Quiet": True}
                )
            except Exception as exc:
                raise self._error("delete", job_id, "*", exc) from exc
            if answer.get("Errors"):
                failed = answer["Errors"][0]
                raise StorageError(f"{self.description}: could not delete {failed.get('Key')}: {failed.get('Code')}")

    # --- helpers ---

    def _folder(self, job_id: str) -> str:
        prefix = f"{self.location.prefix}/" if self.location.prefix else ""
        return f"{prefix}{check_job_id(job_id)}/"

    def _key(self, job_id: str, name: str) -> str:
        return self._folder(job_id) + check_name(name)

    def _keys(self, folder: str, job_id: str) -> list[str]:
        keys: list[str] = []
        try:
            for page in self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self.location.bucket, Prefix=folder
            ):
                keys.extend(item["Key"] for item in page.get("Contents", []))
        except Exception as exc:
            raise self._error("list", job_id, "*", exc) from exc
        return keys

    def _size(self, job_id: str, name: str) -> int:
        try:
            head = self._client.head_object(Bucket=self.location.bucket, Key=self._key(job_id, name))
        except Exception as exc:
            raise self._error("look up", job_id, name, exc) from exc
        return int(head["ContentLength"])

    def _error(self, action: str, job_id: str, name: str, exc: Exception) -> Exception:
        if _is_not_found(exc):
            return ArtifactNotFound(f"job {job_id} has no file {name!r}")
        if isinstance(exc, StorageError):
            return exc
        return StorageError(f"{self.description}: could not {action} {job_id}/{name}: {_reason(exc)}")


def _client(endpoint_url: str | None) -> S3Client:
    import boto3  # only when S3 storage is configured
    from botocore.config import Config

    config = Config(
        connect_timeout=5,
        read_timeout=60,
        retries={"mode": "standard", "max_attempts": 4},
        # MinIO / R2 / Ceph behind a custom endpoint: path-style keys, and no checksum headers they may not know
        s3={"addressing_style": "path" if endpoint_url else "auto"},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    client: S3Client = boto3.session.Session().client("s3", endpoint_url=endpoint_url, config=config)
    return client


def _chunks(body: Any) -> Iterator[bytes]:
    try:
        yield from body.iter_chunks(CHUNK_BYTES)
    finally:
        body.close()


def _error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    return str(response.get("Error", {}).get("Code", "")) if isinstance(response, dict) else ""


def _is_not_found(exc: Exception) -> bool:
    return _error_code(exc) in _NOT_FOUND


def _reason(exc: Exception) -> str:
    """What went wrong, from botocore's exception (its messages carry no credentials)."""
    from botocore.exceptions import NoCredentialsError

    if isinstance(exc, NoCredentialsError):
        return _NO_CREDENTIALS
    response = getattr(exc, "response", None)
    if isinstance(response, dict) and response.get("Error"):
        error = response["Error"]
        return f"{error.get('Code', '?')}: {error.get('Message') or 'no message'}"
    return str(exc) or type(exc).__name__


def _bucket_reason(exc: Exception) -> str:
    code = _error_code(exc)
    if code in ("404", "NoSuchBucket"):
        return "no such bucket (create it first)"
    if code in ("403", "AccessDenied"):
        return "access denied (check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY and the bucket's policy)"
    return _reason(exc)
