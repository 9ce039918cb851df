"""The image-to-3D stage: checks the image, runs an engine, post-processes and validates the GLB."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import trimesh
from alch3mist.engines.base import PREVIEW_LABEL, EngineParams
from alch3mist.engines.hunyuan3d import Hunyuan3DEngine
from alch3mist.engines.preview import PreviewEngine
from alch3mist.engines.trellis import TrellisEngine
from alch3mist.errors import Cancelled, InvalidRequest
from alch3mist.mesh.compress import compressor_available
from alch3mist.mesh.glb import read_asset
from alch3mist.mesh.validate import validate_glb, validator_available
from alch3mist.stages.image_to_3d import WORK_SIDE, ImageTo3DStage, open_image
from alch3mist.stages.progress import StageControl
from PIL import Image, ImageDraw

from ..engines.servers import RunningServer, free_port, hunyuan_command, object_image, run_server, trellis_command


@pytest.fixture(scope="module")
def stage() -> ImageTo3DStage:
    if not validator_available():
        pytest.fail("gltf-validator is not installed: run scripts/setup-engine-test-servers.sh")
    return ImageTo3DStage({"preview": PreviewEngine()}, require_validator=True)


def test_preview_run_writes_a_validated_labelled_glb_and_its_texture_map(stage: ImageTo3DStage, tmp_path: Path) -> None:
    fractions: list[float] = []
    control = StageControl(on_progress=lambda f, m: fractions.append(f))
    result = stage.run(object_image(512), engine="preview", params=EngineParams(), out_dir=tmp_path, control=control)

    assert result.glb_path == tmp_path / "model.glb" and result.texture_map_path == tmp_path / "texture.png"
    assert result.engine == "preview" and result.is_preview and result.manifest().label == PREVIEW_LABEL
    assert result.warnings == [] and result.engine_result.method.startswith("silhouette inflation")
    assert result.validation["errors"] == 0 and validate_glb(result.glb_path).errors == 0
    assert result.faces > 1000 and result.vertices > 500
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.glb", "texture.png"]
    assert PREVIEW_LABEL in read_asset(result.glb_path)["generator"]
    assert read_asset(result.glb_path)["extras"]["alch3mist"]["label"] == PREVIEW_LABEL
    bounds = trimesh.load(result.glb_path, force="scene").bounds
    assert np.allclose(bounds.mean(axis=0), 0, atol=1e-5) and np.isclose(np.ptp(bounds, axis=0).max(), 1.0)
    assert fractions == sorted(fractions) and fractions[-1] == 1.0


def test_simplify_budget_from_params(stage: ImageTo3DStage, tmp_path: Path) -> None:
    params = EngineParams(target_faces=3000, texture_size=512)
    result = stage.run(object_image(256), engine="preview", params=params, out_dir=tmp_path, control=StageControl())
    assert result.faces <= 3000 and result.postprocess.texture_map == "baked"
    assert result.texture_map_path is not None and Image.open(result.texture_map_path).size == (512, 512)


def test_optional_meshopt_copy_for_the_viewer(tmp_path: Path) -> None:
    if not compressor_available():
        pytest.fail("gltfpack is not installed: run scripts/setup-engine-test-servers.sh")
    stage = ImageTo3DStage({"preview": PreviewEngine()}, require_validator=True, compress=True)
    result = stage.run(
        object_image(256), engine="preview", params=EngineParams(), out_dir=tmp_path, control=StageControl()
    )
    compression = result.manifest().compression
    assert compression is not None and result.compression is not None
    compressed = tmp_path / compression["path"]
    assert compressed.is_file() and result.compression.bytes_after < result.compression.bytes_before
    assert b"EXT_meshopt_compression" in compressed.read_bytes()[:4096]
    assert validate_glb(compressed).errors == 0  # the validator knows the extension only as "unsupported" (info)


def test_picture_without_plain_background_becomes_a_relief_with_a_warning(
    stage: ImageTo3DStage, tmp_path: Path
) -> None:
    noise = np.random.default_rng(0).integers(0, 256, size=(128, 128, 3), dtype=np.uint8)
    result = stage.run(
        Image.fromarray(noise), engine="preview", params=EngineParams(), out_dir=tmp_path, control=StageControl()
    )
    assert result.warnings and "whole picture" in result.warnings[0]
    assert result.validation["errors"] == 0


def test_all_background_image_is_refused(stage: ImageTo3DStage, tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest, match="background"):
        stage.run(
            Image.new("RGB", (512, 512), "white"),
            engine="preview",
            params=EngineParams(),
            out_dir=tmp_path,
            control=StageControl(),
        )


def test_tiny_image_is_refused(stage: ImageTo3DStage, tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest, match=r"too small \(8x8\)"):
        stage.run(
            Image.new("RGB", (8, 8)), engine="preview", params=EngineParams(), out_dir=tmp_path, control=StageControl()
        )


def test_huge_image_is_downscaled_and_works(stage: ImageTo3DStage, tmp_path: Path) -> None:
    huge = Image.new("RGB", (10_000, 10_000), (240, 240, 240))
    ImageDraw.Draw(huge).ellipse((3000, 2500, 7000, 7500), fill=(150, 40, 40))
    checked = stage.check_image(huge)
    assert checked.size == (WORK_SIDE, WORK_SIDE)
    result = stage.run(huge, engine="preview", params=EngineParams(), out_dir=tmp_path, control=StageControl())
    assert result.validation["errors"] == 0


def test_larger_than_the_limit_is_refused(stage: ImageTo3DStage) -> None:
    with pytest.raises(InvalidRequest, match="too large"):
        stage.check_image(Image.new("1", (10_001, 64)))


def test_non_image_bytes_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "not-an-image.png"
    path.write_bytes(b"%PDF-1.4 this is not a picture" * 10)
    for source in (path, path.read_bytes()):
        with pytest.raises(InvalidRequest, match="not a readable image"):
            open_image(source)
    assert open_image(_png_bytes(object_image(128))).size == (128, 128)


def test_unknown_engine_lists_the_available_ones(stage: ImageTo3DStage, tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest, match="unknown 3D engine 'trellis'; available: preview"):
        stage.run(object_image(128), engine="trellis", params=EngineParams(), out_dir=tmp_path, control=StageControl())


def test_cancelled_before_the_engine_runs(stage: ImageTo3DStage, tmp_path: Path) -> None:
    control = StageControl()
    control.cancel.set()
    with pytest.raises(Cancelled):
        stage.run(object_image(128), engine="preview", params=EngineParams(), out_dir=tmp_path, control=control)


@pytest.fixture(scope="module")
def hunyuan(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with run_server(hunyuan_command("2.1"), free_port(), "/health", tmp_path_factory.mktemp("hy")) as server:
        yield server


def test_remote_engine_output_is_normalised_and_validated(hunyuan: RunningServer, tmp_path: Path) -> None:
    stage = ImageTo3DStage({"hunyuan3d": Hunyuan3DEngine(hunyuan.url, poll_interval_s=0.05)}, require_validator=True)
    result = stage.run(
        object_image(256), engine="hunyuan3d", params=EngineParams(), out_dir=tmp_path, control=StageControl()
    )
    assert result.engine == "hunyuan3d" and not result.is_preview and result.manifest().label is None
    assert result.validation["errors"] == 0
    bounds = trimesh.load(result.glb_path, force="scene").bounds  # the stand-in's box is off-centre and 2 tall
    assert np.allclose(bounds.mean(axis=0), 0, atol=1e-5) and np.isclose(np.ptp(bounds, axis=0).max(), 1.0)
    assert read_asset(result.glb_path)["extras"]["alch3mist"] == {"engine": "hunyuan3d", "is_preview": False}


def test_engine_clamps_and_ignored_settings_reach_the_result_and_its_manifest(
    hunyuan: RunningServer, tmp_path: Path
) -> None:
    stage = ImageTo3DStage({"hunyuan3d": Hunyuan3DEngine(hunyuan.url, poll_interval_s=0.05)}, require_validator=True)
    params = EngineParams(num_inference_steps=50)
    result = stage.run(object_image(256), engine="hunyuan3d", params=params, out_dir=tmp_path, control=StageControl())
    assert any("num_inference_steps=50" in w and "sent 20" in w for w in result.warnings)
    assert any("ignores" in w and "seed" in w for w in result.warnings)
    engine = result.manifest().engine
    assert engine["variant"] == "Hunyuan3D-2.1" and engine["url"] == hunyuan.url
    assert engine["clamps"] == [{"name": "num_inference_steps", "requested": 50, "sent": 20, "allowed": "1–20"}]
    assert engine["sent"]["num_inference_steps"] == 20 and "num_inference_steps" not in engine["applied"]
    assert result.manifest().warnings == result.warnings


@pytest.fixture(scope="module")
def trellis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with run_server(trellis_command("trellis"), free_port(), "/config", tmp_path_factory.mktemp("trellis")) as server:
        yield server


def test_a_trellis_app_named_as_upstream_names_it_gives_a_validated_mesh(
    trellis: RunningServer, tmp_path: Path
) -> None:
    engine = TrellisEngine(trellis.url, timeout_s=120)
    assert engine.health().available
    stage = ImageTo3DStage({"trellis": engine}, require_validator=True)
    result = stage.run(
        object_image(256), engine="trellis", params=EngineParams(seed=4), out_dir=tmp_path, control=StageControl()
    )
    assert result.validation["errors"] == 0 and result.texture_map_path is not None and result.warnings == []
    assert result.manifest().engine["details"]["endpoints"][1] == "/preprocess_image_1"


def _png_bytes(image: Image.Image) -> bytes:
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
