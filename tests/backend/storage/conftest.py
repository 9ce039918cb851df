from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
from alch3mist.storage import ArtifactStorage, LocalStorage, S3Location, S3Storage

from tests.servers.s3_server import CREDENTIALS, S3Server, running_s3_server

_buckets = itertools.count()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with running_s3_server(tmp_path_factory.mktemp("moto") / "moto.log") as server:
        yield server


@pytest.fixture
def s3_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """boto3's standard chain finds the test credentials, and nothing of the developer's (~/.aws)."""
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/config")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


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
