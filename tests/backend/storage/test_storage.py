"""The contract every artifact storage keeps, run against ``LocalStorage`` and ``S3Storage`` (moto's real S3 API)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from alch3mist.errors import ArtifactNotFound
from alch3mist.storage import ArtifactStorage, ByteRange, parse_range

JOB = "0123456789abcdef0123456789abcdef"
OTHER = "fedcba9876543210fedcba9876543210"
GLB = bytes(range(256)) * 40  # 10 240 bytes, every offset distinguishable


def _written(tmp_path: Path, name: str, data: bytes) -> Path:
    """A file as the chain leaves it: in the local job folder (the worker's scratch)."""
    path = tmp_path / "data" / "jobs" / JOB / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _kept(storage: ArtifactStorage, tmp_path: Path, name: str, data: bytes, job: str = JOB) -> None:
    storage.put(job, name, _written(tmp_path, name, data))


def test_a_kept_artifact_reads_back_whole(storage: ArtifactStorage, tmp_path: Path) -> None:
    _kept(storage, tmp_path, "model.glb", GLB)
    _kept(storage, tmp_path, "views/view_00.png", b"\x89PNG view")

    assert storage.exists(JOB, "model.glb") and storage.exists(JOB, "views/view_00.png")
    assert storage.names(JOB) == ["model.glb", "views/view_00.png"]
    assert storage.read_bytes(JOB, "model.glb") == GLB
    body = storage.open(JOB, "model.glb")
    assert (body.size, body.start, body.end, body.partial) == (len(GLB), 0, len(GLB) - 1, False)
    assert body.media_type == "model/gltf-binary" and body.length == len(GLB)
    assert b"".join(body.chunks) == GLB
    assert storage.open(JOB, "views/view_00.png").media_type == "image/png"


def test_put_again_replaces_the_artifact(storage: ArtifactStorage, tmp_path: Path) -> None:
    _kept(storage, tmp_path, "model.glb", b"untextured")
    _kept(storage, tmp_path, "model.glb", b"textured mesh")  # the texture stage rewrites model.glb
    assert storage.read_bytes(JOB, "model.glb") == b"textured mesh"


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [("bytes=0-99", 0, 99), ("bytes=10000-", 10000, 10239), ("bytes=-40", 10200, 10239),
     ("bytes=10230-99999", 10230, 10239)],
)  # fmt: skip
def test_a_byte_range_gives_exactly_those_bytes(
    storage: ArtifactStorage, tmp_path: Path, header: str, start: int, end: int
) -> None:
    _kept(storage, tmp_path, "model.glb", GLB)
    body = storage.open(JOB, "model.glb", parse_range(header))
    assert (body.size, body.start, body.end, body.partial, body.unsatisfiable) == (len(GLB), start, end, True, False)
    assert b"".join(body.chunks) == GLB[start : end + 1]


def test_a_range_past_the_end_is_unsatisfiable(storage: ArtifactStorage, tmp_path: Path) -> None:
    _kept(storage, tmp_path, "model.glb", GLB)
    body = storage.open(JOB, "model.glb", ByteRange(first=len(GLB)))
    assert body.unsatisfiable and body.size == len(GLB) and b"".join(body.chunks) == b""


def test_fetch_copies_to_a_local_path(storage: ArtifactStorage, tmp_path: Path) -> None:
    _kept(storage, tmp_path, "base.png", b"\x89PNG base")
    dest = storage.fetch(JOB, "base.png", tmp_path / "elsewhere" / "parent-base.png")
    assert dest.read_bytes() == b"\x89PNG base"
    assert [p.name for p in dest.parent.iterdir()] == ["parent-base.png"]  # no temporary left behind


def test_missing_artifacts_are_not_found(storage: ArtifactStorage, tmp_path: Path) -> None:
    _kept(storage, tmp_path, "base.png", b"png")
    assert not storage.exists(JOB, "model.glb") and not storage.exists(OTHER, "base.png")
    assert storage.names(OTHER) == []
    with pytest.raises(ArtifactNotFound):
        storage.open(JOB, "model.glb")
    with pytest.raises(ArtifactNotFound):
        storage.read_bytes(OTHER, "base.png")  # one job's file is not another's
    with pytest.raises(ArtifactNotFound):
        storage.fetch(JOB, "model.glb", tmp_path / "out.glb")
    assert not (tmp_path / "out.glb").exists()


@pytest.mark.parametrize("name", ["../base.png", "../../jobs.sqlite3", "/etc/passwd", "a//b", ".", "", "x\x00", "v\\x"])
def test_names_outside_the_job_folder_are_refused(storage: ArtifactStorage, tmp_path: Path, name: str) -> None:
    _kept(storage, tmp_path, "base.png", b"png")
    assert not storage.exists(JOB, name)
    with pytest.raises(ArtifactNotFound):
        storage.open(JOB, name)
    with pytest.raises(ArtifactNotFound):
        storage.put(JOB, name, tmp_path / "data" / "jobs" / JOB / "base.png")


def test_delete_job_removes_its_artifacts_only(storage: ArtifactStorage, tmp_path: Path) -> None:
    _kept(storage, tmp_path, "model.glb", GLB)
    _kept(storage, tmp_path, "views/view_01.png", b"v")
    storage.put(OTHER, "model.glb", _written(tmp_path, "other.glb", b"other"))

    storage.delete_job(JOB)
    storage.delete_job("0" * 32)  # a job without artifacts is not an error

    assert storage.names(JOB) == [] and not storage.exists(JOB, "model.glb")
    assert storage.read_bytes(OTHER, "model.glb") == b"other"


def test_parse_range_ignores_what_it_cannot_serve_as_one_range() -> None:
    assert parse_range("bytes=5-9") == ByteRange(first=5, last=9)
    assert parse_range("bytes=-3") == ByteRange(suffix=3)
    for header in (None, "", "bytes=-", "bytes=9-5", "bytes=0-1,4-5", "items=0-1", "bytes=a-b", "bytes=²-3"):
        assert parse_range(header) is None, header


def test_local_put_in_place_copies_nothing(tmp_path: Path) -> None:
    from alch3mist.storage import LocalStorage

    storage = LocalStorage(tmp_path / "data" / "jobs")
    path = _written(tmp_path, "model.glb", GLB)
    inode = path.stat().st_ino
    storage.put(JOB, "model.glb", path)
    assert path.stat().st_ino == inode and storage.local_path(JOB, "model.glb") == path.resolve()
    assert [p.name for p in path.parent.iterdir()] == ["model.glb"]


def test_local_storage_does_not_follow_a_symlink_out_of_the_job_folder(tmp_path: Path) -> None:
    from alch3mist.storage import LocalStorage

    storage = LocalStorage(tmp_path / "data" / "jobs")
    secret = tmp_path / "data" / "jobs.sqlite3"
    _written(tmp_path, "base.png", b"png")
    secret.write_bytes(b"secret")
    os.symlink(secret, tmp_path / "data" / "jobs" / JOB / "escape")
    assert not storage.exists(JOB, "escape") and storage.local_path(JOB, "escape") is None
    with pytest.raises(ArtifactNotFound):
        storage.read_bytes(JOB, "escape")
