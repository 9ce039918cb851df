"""glTF validation through the Khronos validator (npm gltf-validator, run by node)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import trimesh
from alch3mist.errors import MeshError
from alch3mist.mesh import validate
from alch3mist.mesh.validate import run_validator, validate_glb, validator_available


@pytest.fixture(autouse=True)
def _validator_installed() -> None:
    if not validator_available():
        pytest.fail("gltf-validator is not installed: run scripts/setup-engine-test-servers.sh")


def _box_glb(path: Path) -> Path:
    path.write_bytes(trimesh.Scene(trimesh.creation.box()).export(file_type="glb"))
    return path


def _rewrite_json(path: Path, edit) -> None:  # type: ignore[no-untyped-def]
    data = path.read_bytes()
    (length,) = struct.unpack_from("<I", data, 12)
    tree = json.loads(data[20 : 20 + length])
    edit(tree)
    chunk = json.dumps(tree).encode()
    chunk += b" " * (-len(chunk) % 4)
    rest = data[20 + length :]
    body = struct.pack("<I", len(chunk)) + b"JSON" + chunk + rest
    path.write_bytes(b"glTF" + struct.pack("<II", 2, 12 + len(body)) + body)


def test_valid_glb_has_no_errors(tmp_path: Path) -> None:
    report = validate_glb(_box_glb(tmp_path / "box.glb"))
    assert report.errors == 0 and report.validator_version.startswith("2.")
    assert report.as_dict()["validator"].startswith("gltf-validator")


def test_invalid_glb_raises_mesh_error_with_the_validators_codes(tmp_path: Path) -> None:
    path = _box_glb(tmp_path / "broken.glb")
    _rewrite_json(path, lambda tree: tree["meshes"][0]["primitives"][0]["attributes"].update(POSITION=99))
    assert run_validator(path).errors > 0
    with pytest.raises(MeshError, match=r"fails glTF validation.*UNRESOLVED_REFERENCE"):
        validate_glb(path)


def test_not_a_glb_at_all(tmp_path: Path) -> None:
    path = tmp_path / "junk.glb"
    path.write_bytes(b"definitely not a model")
    with pytest.raises(MeshError):
        validate_glb(path)


def test_missing_validator_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(validate, "_REPO_CACHE", tmp_path / "nowhere")
    monkeypatch.delenv(validate.ENV_DIR, raising=False)
    with pytest.raises(MeshError, match=r"setup-engine-test-servers\.sh"):
        validate_glb(_box_glb(tmp_path / "box.glb"))
