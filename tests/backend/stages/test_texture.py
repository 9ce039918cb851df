"""The texture stage on the tiny preset: the real Kontext pipeline (random toy weights) edits the grid of views.

The edit is noise here, so these tests check the stage's own work — the grid, the GLB, its validation, the maps,
progress, cancel and refusals; the projection's correctness is proven in tests/backend/texturing/test_projection.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import trimesh
from alch3mist.errors import Cancelled, InvalidRequest, UnknownLora
from alch3mist.mesh.glb import read_asset
from alch3mist.mesh.validate import validate_glb, validator_available
from alch3mist.models.registry import LoadedModels
from alch3mist.stages.progress import StageControl
from alch3mist.stages.texture import TextureOptions, TextureResult, TextureStage
from alch3mist.texturing.mesh_input import LoadedMesh, MeshLimits, load_mesh
from alch3mist.texturing.pbr import DEFAULT_FACTORS
from PIL import Image

from tests.backend.texturing.meshes import uv_box

EDIT = "Alch3mist turn its surface into polished gold, keep the shape"
SMALL = TextureOptions(views=4, view_size=64, texture_size=128, seed=5)


@pytest.fixture(scope="module")
def stage(tiny_models: LoadedModels) -> TextureStage:
    if not validator_available():
        pytest.fail("gltf-validator is not installed: run scripts/setup-engine-test-servers.sh")
    return TextureStage(tiny_models, require_validator=True)


def box_mesh() -> LoadedMesh:
    """A box with its own clean UV layout, 3 units across and off-centre (the loader normalises it)."""
    box = uv_box(size=3.0)
    mesh = trimesh.Trimesh(box.vertices + 10.0, box.faces, visual=trimesh.visual.TextureVisuals(uv=box.uv))
    return load_mesh(bytes(mesh.export(file_type="glb")), limits=MeshLimits(10_000_000, 10_000), filename="box.glb")


def torus_mesh() -> LoadedMesh:
    """No UVs at all: the stage unwraps it."""
    obj = trimesh.creation.torus(0.6, 0.25, major_sections=24, minor_sections=12).export(file_type="obj")
    return load_mesh(obj.encode(), limits=MeshLimits(10_000_000, 10_000), filename="torus.obj")


def run(stage: TextureStage, mesh: LoadedMesh, out: Path, **kwargs: object) -> TextureResult:
    options = kwargs.pop("options", SMALL)
    return stage.run(
        mesh,
        EDIT,
        materials=kwargs.pop("materials", ["polished gold"]),  # type: ignore[arg-type]
        options=options,  # type: ignore[arg-type]
        out_dir=out,
        control=kwargs.pop("control", StageControl()),  # type: ignore[arg-type]
        **kwargs,  # type: ignore[arg-type]
    )


def test_a_mesh_with_uvs_is_textured_into_a_valid_pbr_glb(stage: TextureStage, tmp_path: Path) -> None:
    progress: list[tuple[float, str]] = []
    result = run(stage, box_mesh(), tmp_path, control=StageControl(on_progress=lambda f, m: progress.append((f, m))))
    # the files, and the GLB passes the Khronos validator
    assert validate_glb(result.glb_path).errors == 0 and result.validation["errors"] == 0
    with Image.open(result.texture_path) as texture:
        assert texture.size == (128, 128)
    with Image.open(result.input_grid) as grid:
        assert grid.size == (4 * 64, 64)  # four views in one row
    assert result.edited_grid.is_file()
    # its own UVs were kept, the box was seen all round, gold is metal
    assert result.uv_source == "mesh" and result.uv_reason is None
    assert result.coverage > 0.95 and result.faces == 12
    assert (result.pbr.metallic, result.pbr.roughness) == (1.0, 0.08)
    glb = trimesh.load(result.glb_path, force="mesh")
    material = glb.visual.material
    assert material.metallicFactor == 1.0 and material.doubleSided
    assert np.allclose(glb.bounds, [[-0.5] * 3, [0.5] * 3])
    # the way back to the file's coordinates travels in the GLB
    to_source = np.array(read_asset(result.glb_path)["extras"]["alch3mist"]["to_source"])
    assert np.allclose(to_source[:3, :3], 3.0 * np.eye(3)) and np.allclose(to_source[:3, 3], 10.0)
    # progress: monotonic, ends at 1, passes through the Kontext steps
    fractions = [fraction for fraction, _ in progress]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert any("applying material" in message for _, message in progress)
    assert set(result.timings_s) == {"uv", "render", "edit", "project", "fill", "glb"}


def test_a_mesh_without_uvs_is_unwrapped_and_the_same_seed_repeats(stage: TextureStage, tmp_path: Path) -> None:
    first = run(stage, torus_mesh(), tmp_path / "a", materials=["flames"])
    second = run(stage, torus_mesh(), tmp_path / "b", materials=["flames"])
    assert first.uv_source == "xatlas" and first.uv_reason == "the mesh has no UVs"
    assert first.pbr == DEFAULT_FACTORS
    assert first.texture_path.read_bytes() == second.texture_path.read_bytes()
    # the texture is made of the edit's colours, not left grey: the tiny Kontext's noise is in it
    pixels = np.asarray(Image.open(first.texture_path), dtype=float)
    assert pixels.std() > 5


def test_a_reference_image_rides_in_the_grid(stage: TextureStage, tmp_path: Path) -> None:
    reference = Image.new("RGB", (40, 40), (200, 30, 30))
    result = run(stage, box_mesh(), tmp_path, reference=reference)
    with Image.open(result.input_grid) as grid:
        assert grid.size == (3 * 64, 2 * 64)  # 4 views + the reference: the contact sheet's 3 × 2 layout
        assert grid.getpixel((64 + 32, 64 + 32)) == (200, 30, 30)  # tile 5 (row 2, column 2) is the reference


def test_cancel_during_the_edit_stops_the_stage(stage: TextureStage, tmp_path: Path) -> None:
    control = StageControl()

    def on_progress(fraction: float, message: str) -> None:
        if "applying material" in message:
            control.cancel.set()

    control.on_progress = on_progress
    with pytest.raises(Cancelled):
        run(stage, box_mesh(), tmp_path, control=control)
    assert not (tmp_path / "model.glb").exists()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (TextureOptions(views=1), "views"),
        (TextureOptions(view_size=8), "view size"),
        (TextureOptions(texture_size=10_000), "texture size"),
        (TextureOptions(elevation=80), "elevation"),
    ],
)
def test_bad_options_are_refused_before_any_work(
    stage: TextureStage, tmp_path: Path, options: TextureOptions, message: str
) -> None:
    with pytest.raises(InvalidRequest, match=message):
        run(stage, box_mesh(), tmp_path, options=options)
    assert not (tmp_path / "texture_views").exists()


def test_an_unknown_lora_is_named(stage: TextureStage, tmp_path: Path) -> None:
    options = TextureOptions(views=2, view_size=64, texture_size=64, lora="no-such-lora")
    with pytest.raises(UnknownLora, match="available"):
        run(stage, box_mesh(), tmp_path, options=options)
