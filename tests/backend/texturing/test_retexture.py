"""``alch3mist retexture`` as a person runs it: a real subprocess on the tiny preset — the chain's retexture flow, with
the built-in texture engine and with Hunyuan3D-2.0's (its api_server stand-in started with --enable_tex)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
import trimesh
from PIL import Image

from tests.backend.engines.servers import free_port, hunyuan_command, run_server
from tests.backend.test_cli import _alch3mist as run_cli


def alch3mist(*args: str, tmp_path: Path, **settings: str) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, tmp_path=tmp_path, **settings)  # the generate tests' runner: tiny preset, test cache, no LLM


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
    assert summary["texture_engine"] == "alch3mist"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["flow"] == "retexture" and manifest["status"] == "succeeded"
    assert manifest["prompt"]["language"] == "es" and manifest["preset"] == "tiny"
    texture_parameters = manifest["parameters"]["texture"]
    assert texture_parameters["reference_image"] == "given" and texture_parameters["views"] == 4
    assert manifest["parameters"]["texture_size"] == 128 and manifest["parameters"]["views"] == 2
    assert manifest["input_mesh"]["format"] == "obj" and manifest["input_mesh"]["had_uv"] is False
    assert manifest["texture"]["uv_source"] == "xatlas" and manifest["texture"]["validation"]["errors"] == 0
    assert list(manifest["timings_s"]) == ["rewrite", "texture", "views", "viewer"]
    assert manifest["engine_3d"] is None and manifest["mesh"] is None
    assert "texture" in result.stderr  # the per-stage progress bars


def test_retexture_with_hunyuan3d_as_the_texture_engine(tmp_path: Path) -> None:
    mesh = tmp_path / "vase.glb"
    mesh.write_bytes(trimesh.creation.cylinder(radius=0.3, height=1.0, sections=24).export(file_type="glb"))
    out = tmp_path / "out"
    command = hunyuan_command("2.0", delay_s=0.0, enable_tex=True)
    (tmp_path / "hy").mkdir()
    with run_server(command, free_port(), "/docs", tmp_path / "hy") as server:
        result = alch3mist(
            "retexture", str(mesh), "--edit-prompt", "make it green jade", "--texture-engine", "hunyuan3d",
            "--view-size", "64", "--texture-size", "256", "--render-views", "0", "--seed", "5", "--out", str(out),
            tmp_path=tmp_path, hunyuan3d_url=server.url,
        )  # fmt: skip
        calls = server.calls()

    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["status"] == "succeeded" and summary["texture_engine"] == "hunyuan3d"
    assert summary["coverage"] is None  # a remote engine does not say what it saw
    assert [(call["route"], call["has_mesh"]) for call in calls][-1] == ("/generate", True)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["texture"]["painter"]["variant"] == "Hunyuan3D-2.0"
    assert manifest["texture"]["validation"]["errors"] == 0
    assert {"model.glb", "texture.png", "texture_views/picture.png", "viewer.html"} <= set(manifest["artifacts"])


POINT_CLOUD_PLY = (
    "ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nproperty float y\nproperty float z\nend_header\n0 0 0\n"
)


@pytest.mark.parametrize(
    ("make", "args", "says"),
    [
        (lambda p: p.write_bytes(b"\x89PNG not a mesh"), [], "not a mesh we can read"),
        (lambda p: p.write_text(POINT_CLOUD_PLY), [], "point cloud"),
        (lambda p: p.write_text(trimesh.creation.box().export(file_type="obj")), ["--views", "1"], "--views: input"),
        (
            lambda p: p.write_text(trimesh.creation.box().export(file_type="obj")),
            ["--texture-engine", "trellis2"],
            "texture engine 'trellis2' is not configured here",
        ),
    ],
    ids=["not-a-mesh", "point-cloud", "one-view", "unconfigured-engine"],
)
def test_bad_input_is_one_clear_line_and_exit_2(tmp_path: Path, make: object, args: list[str], says: str) -> None:
    mesh = tmp_path / ("input.ply" if "point" in says else "input.obj")
    make(mesh)  # type: ignore[operator]
    started = time.perf_counter()
    result = alch3mist("retexture", str(mesh), "gold", "--out", str(tmp_path / "out"), *args, tmp_path=tmp_path)
    assert result.returncode == 2, result.stderr
    assert says in result.stderr and "Traceback" not in result.stderr
    # refused before any work (the mesh and options before any model loads): quickly, and nothing written
    assert time.perf_counter() - started < 30
    assert not (tmp_path / "out").exists()
