from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from alch3mist.storage import ArtifactStorage, LocalStorage, S3Location, S3Storage

from tests.servers.s3_server import S3Server

_buckets = itertools.count()


@pytest.fixture
def s3_storage(s3_server: S3Server, s3_env: None) -> S3Storage:
    bucket = s3_server.create_bucket(f"artifacts-{next(_buckets)}")
    return S3Storage(S3Location(bucket, "team/alch3mist"), endpoint_url=s3_server.endpoint_url)


@pytest.fixture(params=["local", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> ArtifactStorage:
    """Each contract test runs against both storages."""
    if request.param == "local":
        return LocalStorage(tmp_path / "data" / "jobs")
    result: ArtifactStorage = request.getfixturevalue("s3_storage")
    return result
