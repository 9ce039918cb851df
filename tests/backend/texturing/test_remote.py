"""Remote texture engines behind the ``TextureEngine`` interface (``texturing/remote.py``), on the tiny preset,
against the stand-ins of Hunyuan3D-2.0's api_server (``--enable_tex``) and TRELLIS.2's ``app_texturing.py``.

What is proven: the picture a painter gets (one neutral front view edited by the real tiny Kontext, cut out by its
exact silhouette — or the caller's picture, untouched by Kontext), what the painter is sent (one welded mesh in our
frame), that what comes back keeps that frame (every vertex on the sent surface), that WebP textures come out as PNG
and the GLB passes the Khronos validator, and that what the painter changed is said.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import trimesh
from alch3mist.engines.hunyuan3d import Hunyuan3DEngine, Hunyuan3DPainter
from alch3mist.engines.trellis2_texturing import Trellis2Painter
from alch3mist.mesh.validate import validator_available
from alch3mist.models.registry import LoadedModels
from alch3mist.stages.progress import StageControl
from alch3mist.stages.texture import TextureJob, TextureOptions, TextureResult, TextureStage
from alch3mist.texturing.mesh_input import LoadedMesh, MeshLimits, load_mesh
from alch3mist.texturing.remote import RemoteTexture, bare_glb
from PIL import Image
from scipy.spatial import cKDTree

from tests.backend.engines.servers import RunningServer, free_port, hunyuan_command, run_server, trellis_command

EDIT = "Alch3mist turn its surface into green jade, keep the shape"
OPTIONS = TextureOptions(view_size=64, texture_size=256, seed=2)


@pytest.fixture(scope="module")
def stage(tiny_models: LoadedModels) -> TextureStage:
    if not validator_available():
        pytest.fail("gltf-validator is not installed: run scripts/setup-engine-test-servers.sh")
    return TextureStage(tiny_models, require_validator=True)


@pytest.fixture(scope="module")
def hunyuan20(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    command = hunyuan_command("2.0", delay_s=0.0, enable_tex=True)
    with run_server(command, free_port(), "/docs", tmp_path_factory.mktemp("hy20tex")) as server:
        yield server


@pytest.fixture(scope="module")
def trellis2_texturing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    command = trellis_command("trellis2-texturing")
    with run_server(command, free_port(), "/config", tmp_path_factory.mktemp("t2tex")) as server:
        yield server


def torus_with_a_speck() -> LoadedMesh:
    """A torus, 3 units across and off-centre, with a 4-face speck in its hole (under 0.5 % of its faces)."""
    torus = trimesh.creation.torus(1.0, 0.5, major_sections=48, minor_sections=12)
    corners = [[0.0, 0.0, 0.0], [0.05, 0.0, 0.0], [0.0, 0.05, 0.0], [0.0, 0.0, 0.05]]
    speck = trimesh.Trimesh(corners, [[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])
    both = trimesh.util.concatenate([torus, speck])
    both.apply_translation((4.0, -2.0, 1.0))
    return load_mesh(bytes(both.export(file_type="glb")), limits=MeshLimits(10**8, 10**6), filename="torus.glb")


def on_the_sent_surface(result: TextureResult, mesh: LoadedMesh) -> float:
    """Largest distance from a delivered vertex to the nearest vertex of the mesh as it was sent (our frame)."""
    delivered = trimesh.load(result.glb_path, force="mesh")
    distances, _ = cKDTree(np.asarray(mesh.mesh.vertices)).query(np.asarray(delivered.vertices))
    return float(distances.max())


def gltf_document(glb: Path) -> dict[str, object]:
    data = glb.read_bytes()
    (length,) = struct.unpack_from("<I", data, 12)
    document: dict[str, object] = json.loads(data[20 : 20 + length])
    return document


def test_hunyuan3d_paints_from_one_edited_front_view(
    stage: TextureStage, hunyuan20: RunningServer, tmp_path: Path
) -> None:
    mesh = torus_with_a_speck()
    engine = RemoteTexture(Hunyuan3DPainter(Hunyuan3DEngine(hunyuan20.url, timeout_s=60)), stage)
    progress: list[float] = []
    control = StageControl(on_progress=lambda fraction, message: progress.append(fraction))
    result = engine.texture(TextureJob(mesh=mesh, edit_prompt=EDIT, options=OPTIONS), tmp_path, control)

    # the picture: one 64² view edited by the tiny Kontext, the object cut out by its exact silhouette
    assert result.input_grid is not None and result.edited_grid is not None and result.picture is not None
    with Image.open(result.input_grid) as grid:
        assert grid.size == (64, 64)
    with Image.open(result.picture) as picture:
        alpha = np.asarray(picture.convert("RGBA"))[:, :, 3]
        assert picture.mode == "RGBA" and alpha[0, 0] == 0 and alpha[32, 10] == 255  # background, torus ring
    # what was sent: one welded mesh, face_count = all its faces; what came back: the speck deleted, and said so
    call = hunyuan20.calls()[-1]
    sent_faces = len(trimesh.load(trimesh.util.wrap_as_stream(bare_glb(mesh)), file_type="glb", force="mesh").faces)
    assert call["has_mesh"] and call["face_count"] == sent_faces == len(mesh.mesh.faces)
    assert result.faces == sent_faces - 4
    assert any(f"of the {sent_faces:,} faces it was sent" in warning for warning in result.warnings)
    # the delivered mesh is where ours was: every vertex on the sent surface, unit size, centred
    assert on_the_sent_surface(result, mesh) < 1e-5
    delivered = trimesh.load(result.glb_path, force="mesh")
    assert np.allclose(delivered.bounds, mesh.mesh.bounds, atol=1e-5)
    # a valid GLB, its texture capped to the job's size, the engine's record in the manifest section
    assert result.validation["errors"] == 0 and result.texture_path is not None
    with Image.open(result.texture_path) as texture:
        assert texture.size == (256, 256)
    section = result.manifest()
    assert section.engine == "hunyuan3d" and section.coverage is None and section.uv_source == "engine"
    assert section.painter is not None and section.painter["variant"] == "Hunyuan3D-2.0"
    assert progress == sorted(progress) and progress[-1] == 1.0


def test_trellis2_paints_from_the_chains_picture_and_its_webp_comes_out_png(
    stage: TextureStage, trellis2_texturing: RunningServer, tmp_path: Path
) -> None:
    mesh = torus_with_a_speck()
    picture = Image.new("RGB", (160, 128), (244, 244, 240))
    picture.paste((30, 160, 40), (40, 30, 120, 100))
    engine = RemoteTexture(Trellis2Painter(trellis2_texturing.url, timeout_s=60), stage)
    job = TextureJob(mesh=mesh, edit_prompt=EDIT, picture=picture, options=OPTIONS)
    result = engine.texture(job, tmp_path, StageControl())

    # the chain's picture goes as it is: no Kontext call, no grids
    assert result.input_grid is None and result.edited_grid is None and "edit" not in result.timings_s
    with Image.open(result.picture or "") as sent:
        assert np.array_equal(np.asarray(sent), np.asarray(picture))
    # the app's WebP textures (base colour and metallic-roughness) are PNG in what we hand out, and it validates
    document = gltf_document(result.glb_path)
    assert "EXT_texture_webp" not in json.dumps(document)
    assert {image["mimeType"] for image in document["images"]} == {"image/png"}  # type: ignore[attr-defined]
    assert result.validation["errors"] == 0
    assert result.texture_path is not None
    with Image.open(result.texture_path) as texture:
        assert texture.format == "PNG" and texture.size == (256, 256)
        colour = np.asarray(texture.convert("RGB")).reshape(-1, 3).mean(axis=0)
    assert np.allclose(colour, (30, 160, 40), atol=3)  # the picture's object colour reached the texture
    # the app normalised the mesh into its own cube; the post-processing brought it back into ours
    assert on_the_sent_surface(result, mesh) < 1e-4
    assert result.engine_result is not None and result.engine_result.clamps[0].name == "texture_size"
