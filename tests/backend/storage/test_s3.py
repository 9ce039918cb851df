"""What is particular to ``S3Storage``: the bucket layout, serving without the local copy, the start check and the
errors it names — against moto's standalone server, a real S3 HTTP API."""

from __future__ import annotations

from pathlib import Path

import pytest
from alch3mist.config import Settings
from alch3mist.errors import StorageConfigError, StorageError
from alch3mist.storage import LocalStorage, S3Location, S3Storage, parse_storage_url, s3, storage_from_settings

from tests.servers.s3_server import S3Server

JOB = "0123456789abcdef0123456789abcdef"


def _file(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_objects_are_laid_out_under_the_prefix_with_their_media_type(
    s3_storage: S3Storage, s3_server: S3Server, tmp_path: Path
) -> None:
    s3_storage.put(JOB, "model.glb", _file(tmp_path, "model.glb", b"glTF"))
    s3_storage.put(JOB, "views/view_00.png", _file(tmp_path, "v.png", b"png"))
    client = s3_server.client()
    listed = client.list_objects_v2(Bucket=s3_storage.location.bucket)["Contents"]
    assert sorted(item["Key"] for item in listed) == [
        f"team/alch3mist/{JOB}/model.glb",
        f"team/alch3mist/{JOB}/views/view_00.png",
    ]
    head = client.head_object(Bucket=s3_storage.location.bucket, Key=f"team/alch3mist/{JOB}/model.glb")
    assert head["ContentType"] == "model/gltf-binary"


def test_an_artifact_outlives_its_local_file(s3_storage: S3Storage, tmp_path: Path) -> None:
    source = _file(tmp_path, "base.png", b"base")
    s3_storage.put(JOB, "base.png", source)
    source.unlink()  # the worker's scratch folder is gone (another machine, retention, a crash)
    assert s3_storage.local_path(JOB, "base.png") is None
    assert s3_storage.read_bytes(JOB, "base.png") == b"base"


def test_delete_job_works_in_batches(s3_storage: S3Storage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(s3, "_DELETE_BATCH", 2)
    for index in range(5):
        s3_storage.put(JOB, f"views/view_{index:02d}.png", _file(tmp_path, f"{index}.png", b"v"))
    s3_storage.delete_job(JOB)
    assert s3_storage.names(JOB) == []


def test_an_upload_that_fails_names_the_storage_and_the_artifact(
    s3_storage: S3Storage, s3_server: S3Server, tmp_path: Path
) -> None:
    s3_server.client().delete_bucket(Bucket=s3_storage.location.bucket)
    with pytest.raises(StorageError) as failure:
        s3_storage.put(JOB, "model.glb", _file(tmp_path, "model.glb", b"glTF"))
    message = failure.value.message
    assert f"{JOB}/model.glb" in message and s3_storage.location.url in message and "NoSuchBucket" in message


def test_check_passes_for_a_reachable_bucket(s3_storage: S3Storage) -> None:
    s3_storage.check()


def test_check_refuses_a_missing_bucket(s3_server: S3Server, s3_env: None) -> None:
    storage = S3Storage(S3Location("no-such-bucket", ""), endpoint_url=s3_server.endpoint_url)
    with pytest.raises(StorageConfigError, match=r"s3://no-such-bucket.*no such bucket"):
        storage.check()


def test_check_refuses_an_unreachable_endpoint(s3_env: None) -> None:
    storage = S3Storage(S3Location("artifacts", ""), endpoint_url="http://127.0.0.1:9")
    with pytest.raises(StorageConfigError, match=r"127\.0\.0\.1:9.*Could not connect"):
        storage.check()


def test_check_without_credentials_says_where_they_go(
    s3_server: S3Server, s3_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    storage = S3Storage(S3Location("artifacts", ""), endpoint_url=s3_server.endpoint_url)
    with pytest.raises(StorageConfigError, match="no S3 credentials found: set AWS_ACCESS_KEY_ID"):
        storage.check()


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("https://bucket/x", "scheme must be s3://"),
        ("minio://bucket", "scheme must be s3://"),
        ("/srv/artifacts", "scheme must be s3://"),
        ("s3://", "no bucket name"),
        ("s3:///prefix", "no bucket name"),
        ("s3://Bad_Bucket", "not a valid bucket name"),
        ("s3://key:secret@bucket", "credentials go in AWS_ACCESS_KEY_ID"),
        ("s3://bucket/a//b", "empty, '.' or '..' segment"),
        ("s3://bucket/../x", "empty, '.' or '..' segment"),
    ],
)
def test_a_malformed_url_is_refused_with_the_reason(url: str, reason: str) -> None:
    with pytest.raises(StorageConfigError, match=reason) as failure:
        parse_storage_url(url)
    assert "secret" not in failure.value.message


def test_a_good_url_parses() -> None:
    assert parse_storage_url("s3://my-bucket") == S3Location("my-bucket", "")
    assert parse_storage_url("s3://my-bucket/team/alch3mist/") == S3Location("my-bucket", "team/alch3mist")


def test_settings_pick_the_storage(tmp_path: Path) -> None:
    local = storage_from_settings(Settings(_env_file=None, data_dir=tmp_path))  # type: ignore[call-arg]
    assert isinstance(local, LocalStorage) and local.root == tmp_path / "jobs"
    remote = storage_from_settings(
        Settings(_env_file=None, data_dir=tmp_path, storage_url="s3://b-1/p", s3_endpoint_url="http://127.0.0.1:1")  # type: ignore[call-arg]
    )
    assert isinstance(remote, S3Storage) and remote.location == S3Location("b-1", "p")
    assert remote.description == "S3 storage s3://b-1/p at http://127.0.0.1:1"
