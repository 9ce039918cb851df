"""Artifact storage: where a job's finished files are kept and served from.

``LocalStorage`` (the default) is the job folders under ``<data_dir>/jobs``; ``S3Storage`` is an S3-compatible bucket
(``ALCH3MIST_STORAGE_URL=s3://bucket/prefix``). ``storage_from_settings`` picks one; ``check()`` it at start.
"""

from __future__ import annotations

from ..config import Settings
from .base import ArtifactBody, ArtifactStorage, ByteRange, check_name, media_type, parse_range
from .local import LocalStorage
from .s3 import S3Location, S3Storage, parse_storage_url

__all__ = [
    "ArtifactBody",
    "ArtifactStorage",
    "ByteRange",
    "LocalStorage",
    "S3Location",
    "S3Storage",
    "check_name",
    "media_type",
    "parse_range",
    "parse_storage_url",
    "storage_from_settings",
]


def storage_from_settings(settings: Settings) -> ArtifactStorage:
    """The storage the settings ask for (no network yet); a malformed URL raises ``StorageConfigError``."""
    if not settings.storage_url:
        return LocalStorage(settings.data_dir / "jobs")
    return S3Storage(parse_storage_url(settings.storage_url), endpoint_url=settings.s3_endpoint_url)
