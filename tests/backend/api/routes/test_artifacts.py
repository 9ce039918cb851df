"""The artifact routes over both storages, in-process (the real app, no models): local files are served as before
(FileResponse: ranges, ETag), S3 objects are streamed with the same answers, and a storage that fails is a JSON 503
naming it — never a traceback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alch3mist.api.main import create_app
from alch3mist.config import Settings
from alch3mist.jobs.store import JobRecord, JobStore, new_job_id
from alch3mist.storage import ArtifactStorage, LocalStorage, S3Location, S3Storage
from fastapi.testclient import TestClient
from pydantic import SecretStr

from tests.servers.s3_server import S3Server

KEY = "key-artifacts-0123"
GLB = b"glTF" + bytes(range(256)) * 8


def _client(tmp_path: Path, storage: ArtifactStorage | None) -> Iterator[tuple[TestClient, JobRecord]]:
    settings = Settings(_env_file=None, api_keys=SecretStr(f"webui:{KEY}"), data_dir=tmp_path / "data")  # type: ignore[call-arg]
    store = JobStore(settings.data_dir)
    record = store.insert(JobRecord(id=new_job_id(), status="succeeded", key_name="webui", artifacts=["model.glb"]))
    job_dir = store.job_dir(record.id)
    job_dir.mkdir(parents=True)
    (job_dir / "model.glb").write_bytes(GLB)
    app = create_app(settings)
    app.state.storage = storage or app.state.storage
    app.state.storage.put(record.id, "model.glb", job_dir / "model.glb")
    app.state.store = store  # no lifespan: the models are not needed to serve a finished job
    try:
        yield TestClient(app, headers={"Authorization": f"Bearer {KEY}"}), record
    finally:
        store.close()


@pytest.fixture(params=["local", "s3"])
def served(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[TestClient, JobRecord]]:
    storage = None
    if request.param == "s3":
        storage = request.getfixturevalue("s3_storage")
    yield from _client(tmp_path, storage)


@pytest.fixture
def s3_storage(s3_server: S3Server, s3_env: None) -> S3Storage:
    bucket = s3_server.create_bucket(f"routes-{new_job_id()[:12]}")
    return S3Storage(S3Location(bucket, "p"), endpoint_url=s3_server.endpoint_url)


def test_the_glb_whole_and_in_ranges(served: tuple[TestClient, JobRecord]) -> None:
    client, record = served
    url = f"/v1/jobs/{record.id}/artifacts/model.glb"
    whole = client.get(url)
    assert whole.status_code == 200 and whole.content == GLB
    assert whole.headers["content-type"] == "model/gltf-binary" and whole.headers["accept-ranges"] == "bytes"
    part = client.get(url, headers={"Range": "bytes=0-3"})
    assert part.status_code == 206 and part.content == b"glTF"
    assert part.headers["content-range"] == f"bytes 0-3/{len(GLB)}"
    tail = client.get(url, headers={"Range": "bytes=-2"})
    assert tail.status_code == 206 and tail.content == GLB[-2:]
    assert client.get(url, headers={"Range": f"bytes={len(GLB)}-"}).status_code == 416
    missing = client.get(f"/v1/jobs/{record.id}/artifacts/views/view_00.png")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "artifact_not_found"


def test_local_files_are_served_as_files(tmp_path: Path) -> None:
    for client, record in _client(tmp_path, None):
        response = client.get(f"/v1/jobs/{record.id}/artifacts/model.glb")
        assert isinstance(client.app.state.storage, LocalStorage)  # type: ignore[attr-defined]
        assert "etag" in response.headers and "last-modified" in response.headers  # FileResponse, as before


def test_a_storage_that_fails_is_a_json_503_naming_it(tmp_path: Path, s3_env: None) -> None:
    down = S3Storage(S3Location("artifacts", ""), endpoint_url="http://127.0.0.1:9")
    settings = Settings(_env_file=None, api_keys=SecretStr(f"webui:{KEY}"), data_dir=tmp_path / "data")  # type: ignore[call-arg]
    store = JobStore(settings.data_dir)
    record = store.insert(JobRecord(id=new_job_id(), status="succeeded", key_name="webui", artifacts=["model.glb"]))
    app = create_app(settings)
    app.state.storage, app.state.store = down, store
    client = TestClient(app, headers={"Authorization": f"Bearer {KEY}"}, raise_server_exceptions=False)
    response = client.get(f"/v1/jobs/{record.id}/artifacts/model.glb")
    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert error["code"] == "storage_error" and "S3 storage s3://artifacts at http://127.0.0.1:9" in error["message"]
    store.close()
