"""``alch3mist retexture`` as a person runs it: a real subprocess on the tiny preset."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
import trimesh
from PIL import Image

from tests.backend.test_cli import _alch3mist as run_cli


def alch3mist(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, tmp_path=tmp_path)  # the generate tests' runner: tiny preset, test cache, no LLM


def test_retexture_writes_what_generate_writes_and_a_manifest(tmp_path: Path) -> None:
    mesh = tmp_path / "chair.obj"
    mesh.write_text(trimesh.creation.torus(0.6, 0.25, major_sections=24, minor_sections=12).export(file_type="obj"))
    reference = tmp_path / "leather.png"
    Image.new("RGB", (80, 80), (90, 60, 30)).save(reference)
    out = tmp_path / "out"
    args = ["--views", "4", "--view-size", "64", "--texture-size", "128", "--render-views", "2", "--render-size", "96"]
    result = alch3mist(
        "retexture", str(mesh), "hazla de cuero de cocodrilo", "--image", str(reference), "--seed", "4",
        "--out", str(out), *args, tmp_path=tmp_path,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["status"] == "succeeded" and summary["seed"] == 4 and summary["coverage"] > 0.9
    for name in ["model.glb", "texture.png", "texture_views/input_grid.png", "texture_views/edited_grid.png",
                 "views/view_01.png", "contact_sheet.png", "viewer.html", "manifest.json"]:  # fmt: skip
        assert (out / name).is_file(), name
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["flow"] == "retexture" and manifest["status"] == "succeeded"
    assert manifest["prompt"]["language"] == "es" and manifest["preset"] == "tiny"
    assert manifest["parameters"]["reference_image"] is True and manifest["parameters"]["texture_views"] == 4
    assert manifest["input_mesh"]["format"] == "obj" and manifest["input_mesh"]["had_uv"] is False
    assert manifest["texture"]["uv_source"] == "xatlas" and manifest["texture"]["validation"]["errors"] == 0
    assert list(manifest["timings_s"]) == ["rewrite", "texture", "views", "viewer"]
    assert "texture" in result.stderr  # the per-stage progress bars


POINT_CLOUD_PLY = (
    "ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nproperty float y\nproperty float z\nend_header\n0 0 0\n"
)


@pytest.mark.parametrize(
    ("make", "args", "says"),
    [
        (lambda p: p.write_bytes(b"\x89PNG not a mesh"), [], "not a mesh we can read"),
        (lambda p: p.write_text(POINT_CLOUD_PLY), [], "point cloud"),
        (lambda p: p.write_text(trimesh.creation.box().export(file_type="obj")), ["--views", "1"], "views must be"),
    ],
    ids=["not-a-mesh", "point-cloud", "one-view"],
)
def test_bad_input_is_one_clear_line_and_exit_2(tmp_path: Path, make: object, args: list[str], says: str) -> None:
    mesh = tmp_path / ("input.ply" if "point" in says else "input.obj")
    make(mesh)  # type: ignore[operator]
    started = time.perf_counter()
    result = alch3mist("retexture", str(mesh), "gold", "--out", str(tmp_path / "out"), *args, tmp_path=tmp_path)
    assert result.returncode == 2, result.stderr
    assert says in result.stderr and "Traceback" not in result.stderr
    # refused before any model loads: quickly, and nothing written
    assert time.perf_counter() - started < 30
    assert not (tmp_path / "out").exists()
