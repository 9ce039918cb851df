"""The whole chain on the tiny preset with the preview engine: artifacts, manifest, events, failures, cancel; and
its texture step: a given mesh (the retexture flow), an untextured engine mesh (the Hunyuan3D-2.0 stand-in without
--enable_tex) painted with the job's prompt, textured image and seed."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import trimesh
from alch3mist.chain import Chain, ChainEvent, GenerationRequest, TextureRequest
from alch3mist.domain import STAGES, LoraChoice
from alch3mist.engines.base import glb_has_texture
from alch3mist.engines.registry import build_engines
from alch3mist.errors import InvalidRequest, UnknownLora
from alch3mist.prompting.rewrite import PromptRewriter
from alch3mist.texturing.mesh_input import LoadedMesh, MeshLimits, load_mesh
from PIL import Image

from tests.backend.engines.servers import RunningServer, free_port, hunyuan_command, run_server

REQUEST = "Material Alch3mist, genérame una vaca con piel de cocodrilo y con una melena en llamas"


def _run(chain: Chain, out: Path, **fields: object) -> tuple[object, list[ChainEvent]]:
    events: list[ChainEvent] = []
    req = GenerationRequest(**{"request": REQUEST, "seed": 7, "views": 4, "view_size": 128, **fields})
    chain.validate(req)
    return chain.run(req, out, on_event=events.append), events


def test_chain_writes_every_artifact_and_a_complete_manifest(tiny_chain: Chain, tmp_path: Path) -> None:
    manifest, events = _run(tiny_chain, tmp_path)

    assert manifest.status == "succeeded", manifest.error
    for name in ["base.png", "textured.png", "model.glb", "contact_sheet.png", "viewer.html", "manifest.json"]:
        assert (tmp_path / name).stat().st_size > 0, name
    assert sorted(p.name for p in (tmp_path / "views").iterdir()) == [f"view_{i:02d}.png" for i in range(4)]
    assert manifest.prompt is not None and manifest.prompt.edit_prompt.startswith("Alch3mist")
    assert manifest.prompt.language == "es"
    assert (manifest.preset, manifest.engine_3d, manifest.seed) == ("tiny", "preview", 7)
    assert manifest.engine_is_preview and manifest.flow == "generate"
    # the preview engine textures its own mesh: the texture step is planned (retexture auto) but skipped
    ran = [stage for stage in STAGES if stage != "texture"]
    assert list(manifest.timings_s) == ran
    assert manifest.mesh is not None and manifest.mesh.engine["texture"] == "engine" and manifest.texture is None
    assert 0 < manifest.model_seconds <= manifest.total_seconds
    assert {"torch", "diffusers", "alch3mist"} <= set(manifest.versions)
    assert any("preview engine" in w for w in manifest.warnings)
    assert "preview engine" in (tmp_path / "viewer.html").read_text(encoding="utf-8")

    stage_starts = [e.stage for e in events if e.type == "stage"]
    assert stage_starts == ran
    artifacts = [e.artifact for e in events if e.type == "artifact"]
    assert artifacts[:2] == ["base.png", "textured.png"] and artifacts[-1] == "viewer.html"
    assert artifacts == manifest.artifacts
    overall = [e.progress for e in events]
    assert overall == sorted(overall) and overall[-1] <= 1.0


def test_same_request_and_seed_give_the_same_image_bytes(tiny_chain: Chain, tmp_path: Path) -> None:
    _run(tiny_chain, tmp_path / "a", views=0)
    _run(tiny_chain, tmp_path / "b", views=0)
    for name in ["base.png", "textured.png"]:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_cancel_stops_the_chain_and_keeps_what_was_made(tiny_chain: Chain, tmp_path: Path) -> None:
    cancel = threading.Event()

    def cancel_at_material_edit(event: ChainEvent) -> None:
        if event.type == "stage" and event.stage == "material_edit":
            cancel.set()

    req = GenerationRequest(request=REQUEST, seed=1, views=0)
    manifest = tiny_chain.run(req, tmp_path, on_event=cancel_at_material_edit, cancel=cancel)

    assert manifest.status == "cancelled"
    assert manifest.error is not None and manifest.error.stage == "material_edit"
    assert (tmp_path / "base.png").exists() and not (tmp_path / "textured.png").exists()
    assert manifest.artifacts == ["base.png"]


def test_a_late_stage_failure_keeps_earlier_artifacts_and_names_the_stage(tiny_chain: Chain, tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = tiny_chain.settings.model_copy(update={"trellis_url": f"http://127.0.0.1:{port}", "engine_timeout_s": 5})
    chain = Chain(settings, tiny_chain.models, build_engines(settings), PromptRewriter(settings))

    manifest, _ = _run(chain, tmp_path, engine_3d="trellis")

    assert manifest.status == "failed"
    assert manifest.error is not None and manifest.error.stage == "mesh"
    assert "trellis" in manifest.error.message and str(port) in manifest.error.message
    assert manifest.artifacts == ["base.png", "textured.png"]
    assert (tmp_path / "manifest.json").exists()


def test_an_input_image_replaces_the_base_image(tiny_chain: Chain, tmp_path: Path) -> None:
    picture = Image.new("RGB", (96, 80), (200, 40, 40))
    manifest, events = _run(tiny_chain, tmp_path, base_image=picture, views=0)

    assert manifest.status == "succeeded", manifest.error
    assert manifest.parameters.base_image == "given"
    assert Image.open(tmp_path / "base.png").size == (96, 80)
    assert not [e for e in events if e.type == "progress" and e.stage == "base_image" and e.stage_progress < 1]


def test_prompts_given_by_the_caller_skip_the_rewrite(tiny_chain: Chain, tmp_path: Path) -> None:
    manifest, _ = _run(
        tiny_chain,
        tmp_path,
        request=None,
        base_prompt="a teapot, centred, plain white background",
        edit_prompt="make it molten gold",
        views=0,
    )
    assert manifest.status == "succeeded", manifest.error
    assert manifest.prompt is not None and manifest.prompt.rewriter == "caller"
    assert manifest.prompt.edit_prompt.startswith("Alch3mist")


@pytest.mark.parametrize(
    ("fields", "error", "says"),
    [
        ({"request": "   "}, InvalidRequest, "empty"),
        ({"request": "x" * 10_000}, InvalidRequest, "10000"),
        ({"request": None}, InvalidRequest, "nothing to make"),
        ({"engine_3d": "blender"}, InvalidRequest, "preview"),
        ({"lora": LoraChoice(name="nope", scale=1.0)}, UnknownLora, "available"),
        ({"base_image": Image.new("RGB", (8, 8))}, InvalidRequest, "at least 64"),
    ],
)
def test_bad_requests_are_refused_before_any_work(
    tiny_chain: Chain, fields: dict[str, object], error: type[Exception], says: str
) -> None:
    req = GenerationRequest(**{"request": REQUEST, **fields})
    with pytest.raises(error, match=says):
        tiny_chain.validate(req)


def test_info_describes_the_loaded_chain(tiny_chain: Chain) -> None:
    info = tiny_chain.info()
    assert (info.preset, info.device, info.default_engine) == ("tiny", "cpu", "preview")
    assert {engine.name for engine in info.engines} >= {"preview"}
    assert info.defaults["views"] == 8


def test_a_job_without_a_seed_gets_an_int32_seed_every_engine_accepts(tiny_chain: Chain, tmp_path: Path) -> None:
    from alch3mist.config import MAX_SEED

    seeds = {tiny_chain._new_manifest(GenerationRequest(request=REQUEST)).seed for _ in range(200)}
    assert max(seeds) <= MAX_SEED and len(seeds) > 190
    with pytest.raises(ValueError, match="less than or equal"):
        GenerationRequest(request=REQUEST, seed=MAX_SEED + 1)


# --- the texture step: a given mesh (the retexture flow), an engine's untextured mesh -----------------------------

SMALL_TEXTURE = TextureRequest(views=4, view_size=64)


def _torus() -> LoadedMesh:
    obj = trimesh.creation.torus(0.6, 0.25, major_sections=24, minor_sections=12).export(file_type="obj")
    return load_mesh(obj.encode(), limits=MeshLimits(10_000_000, 10_000), filename="torus.obj")


def test_a_given_mesh_skips_to_the_texture_step(tiny_chain: Chain, tmp_path: Path) -> None:
    reference = Image.new("RGB", (80, 80), (90, 60, 30))
    manifest, events = _run(
        tiny_chain,
        tmp_path,
        request="hazla de oro pulido",
        mesh=_torus(),
        reference_image=reference,
        texture=SMALL_TEXTURE,
        texture_size=128,
        views=2,
        view_size=96,
    )

    assert manifest.status == "succeeded", manifest.error
    assert manifest.flow == "retexture" and manifest.engine_3d is None and manifest.mesh is None
    assert list(manifest.timings_s) == ["rewrite", "texture", "views", "viewer"]
    assert [e.stage for e in events if e.type == "stage"] == ["rewrite", "texture", "views", "viewer"]
    assert not (tmp_path / "base.png").exists() and not (tmp_path / "textured.png").exists()
    assert manifest.parameters.base_image == "none" and manifest.parameters.texture_size == 128
    assert manifest.parameters.texture is not None and manifest.parameters.texture.reference_image == "given"
    assert manifest.input_mesh is not None and manifest.input_mesh.format == "obj" and not manifest.input_mesh.had_uv
    assert manifest.texture is not None and manifest.texture.engine == "alch3mist"
    assert manifest.texture.coverage is not None and manifest.texture.coverage > 0.9
    assert manifest.texture.validation["errors"] == 0
    for name in ["model.glb", "texture.png", "texture_views/input_grid.png", "views/view_01.png", "viewer.html"]:
        assert name in manifest.artifacts and (tmp_path / name).is_file(), name
    with Image.open(tmp_path / "texture_views" / "input_grid.png") as grid:
        assert grid.size == (3 * 64, 2 * 64)  # 4 views + the reference
    # the progress of the four planned stages fills the whole bar
    overall = [e.progress for e in events]
    assert overall == sorted(overall) and 0.9 < overall[-1] <= max(overall) <= 1.0 + 1e-9


@pytest.fixture(scope="module")
def hunyuan20_untextured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """Hunyuan3D-2.0's api_server stand-in started without --enable_tex: its meshes come back untextured."""
    with run_server(hunyuan_command("2.0", delay_s=0.0), free_port(), "/docs", tmp_path_factory.mktemp("hy")) as server:
        yield server


@pytest.mark.parametrize("retexture", ["auto", "never"])
def test_an_untextured_engine_mesh_is_painted_by_the_texture_step(
    tiny_chain: Chain, hunyuan20_untextured: RunningServer, tmp_path: Path, retexture: str
) -> None:
    settings = tiny_chain.settings.model_copy(update={"hunyuan3d_url": hunyuan20_untextured.url})
    chain = Chain(settings, tiny_chain.models, build_engines(settings), tiny_chain.rewriter)
    manifest, events = _run(chain, tmp_path, engine_3d="hunyuan3d", retexture=retexture, texture=SMALL_TEXTURE, views=0)

    assert manifest.status == "succeeded", manifest.error
    assert manifest.mesh is not None and manifest.mesh.engine["texture"] == "none"
    with (tmp_path / "model.glb").open("rb") as glb:
        textured = glb_has_texture(glb.read())
    if retexture == "never":
        assert "texture" not in manifest.timings_s and manifest.texture is None and not textured
        return
    # auto: the engine said "none", so the job's edit prompt, its textured image and its seed paint the mesh
    assert list(manifest.timings_s) == ["rewrite", "base_image", "material_edit", "mesh", "texture", "viewer"]
    assert textured and manifest.texture is not None and manifest.texture.engine == "alch3mist"
    assert manifest.texture.uv_source == "xatlas" and manifest.texture.validation["errors"] == 0
    assert any("came back untextured: painting it with the alch3mist texture engine" in w for w in manifest.warnings)
    assert manifest.parameters.texture is not None and manifest.parameters.texture.reference_image == "textured image"
    with Image.open(tmp_path / "texture_views" / "input_grid.png") as grid:
        assert grid.size == (3 * 64, 2 * 64)  # 4 views + the chain's textured image as the reference tile
        assert grid.crop((64, 64, 128, 128)).resize((8, 8)).getpixel((4, 4)) != (238, 238, 238)
    assert manifest.artifacts.count("model.glb") == 1  # announced twice (engine, texture step), listed once
    assert [e.artifact for e in events if e.type == "artifact"].count("model.glb") == 2


def test_a_cancel_during_the_texture_step_keeps_what_was_made(tiny_chain: Chain, tmp_path: Path) -> None:
    cancel = threading.Event()

    def cancel_in_the_edit(event: ChainEvent) -> None:
        if event.stage == "texture" and "applying material" in event.message:
            cancel.set()

    req = GenerationRequest(request="gold", mesh=_torus(), texture=SMALL_TEXTURE, texture_size=128, views=0, seed=1)
    manifest = tiny_chain.run(req, tmp_path, on_event=cancel_in_the_edit, cancel=cancel)
    assert manifest.status == "cancelled" and manifest.error is not None and manifest.error.stage == "texture"
    assert not (tmp_path / "model.glb").exists() and (tmp_path / "manifest.json").is_file()


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"base_image": Image.new("RGB", (96, 96))}, "no base image: give the picture as reference_image"),
        ({"base_prompt": "a teapot"}, "no base image to prompt"),
        ({"request": None}, "give a material request"),
        ({"texture_engine": "trellis2"}, "texture engine 'trellis2' is not configured here"),
    ],
)
def test_contradictions_with_a_given_mesh_are_refused(tiny_chain: Chain, fields: dict[str, object], says: str) -> None:
    req = GenerationRequest(**{"request": "gold", "mesh": _torus(), **fields})
    with pytest.raises(InvalidRequest, match=says):
        tiny_chain.validate(req)


def test_texturing_options_without_a_mesh_are_refused(tiny_chain: Chain) -> None:
    with pytest.raises(InvalidRequest, match="reference_image goes with a mesh"):
        tiny_chain.validate(GenerationRequest(request=REQUEST, reference_image=Image.new("RGB", (96, 96))))
    with pytest.raises(InvalidRequest, match="at least 256 when a 3D engine makes the mesh"):
        tiny_chain.validate(GenerationRequest(request=REQUEST, texture_size=128))
    with pytest.raises(ValueError, match="views"):
        TextureRequest(views=1)


def test_info_lists_the_texture_engines(tiny_chain: Chain) -> None:
    info = tiny_chain.info()
    assert info.default_texture_engine == "alch3mist"
    assert [engine.name for engine in info.texture_engines] == ["alch3mist"]
