"""hunyuan3d-local: the tiny Hunyuan3D-2 model through hy3dgen, alone and in the chain; its policies and texturing."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest
import trimesh
from alch3mist.chain import Chain, GenerationRequest
from alch3mist.config import Settings
from alch3mist.engines.base import EngineParams
from alch3mist.engines.hunyuan3d_local import (
    PROJECTION_WARNING,
    GiB,
    Hunyuan3DLocalEngine,
    decoding_defaults,
    fallback_attempts,
    project_front_view,
    with_object_alpha,
)
from alch3mist.engines.registry import build_engines
from alch3mist.errors import Cancelled, EngineUnavailable
from alch3mist.mesh.segment import segment_object
from alch3mist.models.registry import LoadedModels
from alch3mist.prompting.rewrite import PromptRewriter
from alch3mist.stages.progress import StageControl
from PIL import Image, ImageDraw

REPO_ROOT = Path(__file__).resolve().parents[3]
TINY_CACHE_DIR = REPO_ROOT / ".cache" / "alch3mist-tests"


def _settings(data_dir: Path, **values: object) -> Settings:
    base: dict[str, object] = {
        "preset": "tiny",
        "cache_dir": TINY_CACHE_DIR,
        "data_dir": data_dir,
        "hunyuan3d_local": True,
        "llm_url": None,
        "trellis_url": None,
        "hunyuan3d_url": None,
    }
    return Settings(_env_file=None, **{**base, **values})  # type: ignore[call-arg, arg-type]


def _vase(size: int = 128) -> Image.Image:
    """A two-colour object on a plain white background: left half red, right half blue."""
    image = Image.new("RGB", (size, size), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    draw.rectangle((32, 24, 63, 104), fill=(220, 30, 30))
    draw.rectangle((64, 24, 95, 104), fill=(30, 30, 220))
    return image


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Hunyuan3DLocalEngine:
    return Hunyuan3DLocalEngine(_settings(tmp_path_factory.mktemp("shape-data")))


def test_off_by_default_and_says_why(tmp_path: Path) -> None:
    settings = _settings(tmp_path, hunyuan3d_local=False)
    assert "hunyuan3d-local" not in build_engines(settings)
    engine = Hunyuan3DLocalEngine(settings)
    health = engine.health()
    assert not health.available and "ALCH3MIST_HUNYUAN3D_LOCAL=true" in health.detail and "EU" in health.detail
    with pytest.raises(EngineUnavailable, match="Licence"):
        engine.generate(_vase(), EngineParams(), tmp_path / "out.glb", StageControl())
    assert not (tmp_path / "out.glb").exists()


def test_generate_reports_progress_and_repeats_itself(engine: Hunyuan3DLocalEngine, tmp_path: Path) -> None:
    events: list[tuple[float, str]] = []
    control = StageControl(on_progress=lambda fraction, message: events.append((fraction, message)))
    first = engine.generate(_vase(), EngineParams(seed=11), tmp_path / "a.glb", control)
    second = engine.generate(_vase(), EngineParams(seed=11), tmp_path / "b.glb", StageControl())
    other = engine.generate(_vase(), EngineParams(seed=12), tmp_path / "c.glb", StageControl())
    assert (tmp_path / "a.glb").read_bytes() == (tmp_path / "b.glb").read_bytes()
    assert (tmp_path / "a.glb").read_bytes() != (tmp_path / "c.glb").read_bytes()
    fractions = [fraction for fraction, _ in events]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    messages = " | ".join(message for _, message in events)
    assert "step 3/3" in messages and "volume chunk 1/" in messages  # DiT steps, then decoding chunks
    assert first.details["closed"] and first.warnings == [PROJECTION_WARNING]
    assert first.texture == "placeholder" and first.needs_texture  # the chain's texture step repaints it
    sent = first.sent
    assert (sent["num_inference_steps"], sent["octree_resolution"], sent["num_chunks"]) == (3, 32, 8000)
    assert first.details["memory_plan"] == "resident" and first.applied == sent and first.url is None
    assert first.engine == "hunyuan3d-local" and not first.is_preview and second.details["faces"] > 500
    assert other.sent["seed"] == 12 and first.glb_bytes == len((tmp_path / "a.glb").read_bytes())


def test_settings_an_engine_cannot_use_are_named_in_the_warnings(engine: Hunyuan3DLocalEngine, tmp_path: Path) -> None:
    params = EngineParams(seed=1, ss_steps=5, options={"tex_slat_guidance_strength": 2.0})
    result = engine.generate(_vase(), params, tmp_path / "w.glb", StageControl())
    assert result.warnings[1] == "ignored (not Hunyuan3D-2 shape settings): ss_steps, tex_slat_guidance_strength"


def test_job_and_settings_override_the_defaults(tmp_path: Path) -> None:
    engine = Hunyuan3DLocalEngine(_settings(tmp_path, hunyuan3d_num_chunks=5000, hunyuan3d_octree_resolution=40))
    params = EngineParams(seed=1, num_inference_steps=2, octree_resolution=64)
    shape = engine.generate_shape(_vase(), params, StageControl())
    assert (shape.steps, shape.octree_resolution, shape.num_chunks) == (2, 64, 5000)  # the job's octree wins
    assert engine.generate_shape(_vase(), EngineParams(seed=1), StageControl()).octree_resolution == 40


@pytest.mark.parametrize("stop_at", ["step 2/3", "volume chunk 2/"])
def test_cancel_stops_at_the_next_step_or_chunk(engine: Hunyuan3DLocalEngine, tmp_path: Path, stop_at: str) -> None:
    cancel = threading.Event()
    seen: list[str] = []

    def on_progress(fraction: float, message: str) -> None:
        seen.append(message)
        if stop_at in message:
            cancel.set()

    with pytest.raises(Cancelled):
        engine.generate(_vase(), EngineParams(seed=3), tmp_path / "x.glb", StageControl(on_progress, cancel))
    assert stop_at in seen[-1] and not (tmp_path / "x.glb").exists()  # nothing ran past the boundary


def test_in_the_chain_the_glb_validates_and_repeats(tiny_models: LoadedModels, tmp_path: Path) -> None:
    settings = _settings(tmp_path / "data", engine_3d="preview")
    chain = Chain(settings, tiny_models, build_engines(settings), PromptRewriter(settings))
    info = {engine.name: engine for engine in chain.info().engines}
    assert info["hunyuan3d-local"].available and "Community Licence" in info["hunyuan3d-local"].detail
    request = GenerationRequest(
        base_image=_vase(), edit_prompt="Alch3mist make it glazed ceramic", seed=9, engine_3d="hunyuan3d-local", views=1
    )
    chain.validate(request)
    runs = [chain.run(request, tmp_path / f"run{i}") for i in range(2)]
    manifest = runs[0]
    assert manifest.status == "succeeded", manifest.error
    assert manifest.engine_3d == "hunyuan3d-local" and not manifest.engine_is_preview
    mesh = manifest.mesh
    assert mesh is not None and mesh.engine["details"]["closed"] and mesh.faces > 500
    if mesh.validation.get("validator"):  # the Khronos validator is installed by make test-deps
        assert mesh.validation["errors"] == 0
    assert any(PROJECTION_WARNING in warning for warning in manifest.warnings)
    glbs = [(tmp_path / f"run{i}" / "model.glb").read_bytes() for i in range(2)]
    assert glbs[0] == glbs[1]
    closed = trimesh.load(tmp_path / "run0" / "model.glb", force="mesh")
    closed.merge_vertices(merge_tex=True, merge_norm=True)
    assert closed.is_watertight


def test_single_view_projection_puts_each_colour_where_the_image_has_it() -> None:
    """Known answer: a box seen from the front gets red on its left (x < 0) and blue on its right (x > 0)."""
    image = _vase()
    box = trimesh.creation.box(extents=(1.0, 1.6, 0.5))
    box = box.subdivide().subdivide()
    textured = project_front_view(box, image, segment_object(image), texture_size=256)
    texture = np.asarray(textured.visual.material.baseColorTexture.convert("RGB"))
    side = texture.shape[0]
    uv = np.asarray(textured.visual.uv)
    colours = texture[((1 - uv[:, 1]) * (side - 1)).round().astype(int), (uv[:, 0] * (side - 1)).round().astype(int)]
    x = np.asarray(textured.vertices)[:, 0]
    left, right = colours[x < -0.1], colours[x > 0.1]
    assert (left[:, 0] > 150).all() and (left[:, 2] < 100).all()
    assert (right[:, 2] > 150).all() and (right[:, 0] < 100).all()
    assert not ((colours > 240).all(axis=1)).any()  # no background white anywhere on the object


def test_object_alpha_comes_from_our_segmentation() -> None:
    image = _vase()
    rgba = with_object_alpha(image, segment_object(image))
    alpha = np.asarray(rgba.getchannel("A"))
    assert alpha[64, 64] == 255 and alpha[5, 5] == 0 and alpha[64, 20] == 0
    assert abs(int((alpha > 0).sum()) - 64 * 81) < 0.1 * 64 * 81  # the 64x81 object, give or take its edge
    given = image.convert("RGBA")
    given.putalpha(Image.new("L", image.size, 0).point(lambda _: 0))
    ImageDraw.Draw(given).rectangle((10, 10, 50, 50), fill=(1, 2, 3, 255))
    assert with_object_alpha(given, segment_object(given)).getchannel("A").getextrema() == (0, 255)


def test_memory_fallbacks_and_decoding_defaults() -> None:
    assert fallback_attempts("cpu", None, 8000) == [("resident", 8000)]
    assert fallback_attempts("cuda", 40 * GiB, 200_000) == [
        ("resident", 200_000),
        ("model_offload", 200_000),
        ("model_offload", 50_000),
        ("model_offload", 12_500),
    ]
    assert fallback_attempts("cuda", 6 * GiB, 8000) == [("model_offload", 8000), ("model_offload", 2000)]
    assert decoding_defaults(None) == (256, 8000)
    assert decoding_defaults(80 * GiB) == (384, 200_000) and decoding_defaults(4 * GiB) == (256, 8000)
    chunks = [decoding_defaults(gib * GiB)[1] for gib in (4, 8, 12, 24, 80)]
    assert chunks == sorted(chunks)  # more free VRAM never means smaller chunks


def test_alch3mist_info_lists_the_engine_when_enabled(
    tiny_models: LoadedModels, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from alch3mist.cli import main

    for name, value in {"CACHE_DIR": TINY_CACHE_DIR, "DATA_DIR": tmp_path, "HUNYUAN3D_LOCAL": "true"}.items():
        monkeypatch.setenv(f"ALCH3MIST_{name}", str(value))
    monkeypatch.chdir(tmp_path)  # no developer .env
    assert main(["info", "--preset", "tiny"]) == 0
    engines = {engine["name"]: engine for engine in json.loads(capsys.readouterr().out)["engines"]}
    assert engines["hunyuan3d-local"]["available"]


def test_engines_check_smoke_runs_a_job_on_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from alch3mist.cli import main
    from alch3mist.config import get_settings

    values = {"CACHE_DIR": TINY_CACHE_DIR, "DATA_DIR": tmp_path, "HUNYUAN3D_LOCAL": "true", "PRESET": "tiny"}
    for name, value in values.items():
        monkeypatch.setenv(f"ALCH3MIST_{name}", str(value))
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()  # the command reads the (cached) process settings
    try:
        code = main(["engines", "check", "hunyuan3d-local", "--smoke", "--json", "--out", str(tmp_path / "smoke")])
    finally:
        get_settings.cache_clear()
    (report,) = json.loads(capsys.readouterr().out)
    assert code == 0 and report["usable"] and report["smoke"]["ok"], report
