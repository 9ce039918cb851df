"""The whole chain on the tiny preset with the preview engine: artifacts, manifest, events, failures, cancel."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest
from alch3mist.chain import Chain, ChainEvent, GenerationRequest
from alch3mist.domain import STAGES, LoraChoice
from alch3mist.engines.registry import build_engines
from alch3mist.errors import InvalidRequest, UnknownLora
from alch3mist.prompting.rewrite import PromptRewriter
from PIL import Image

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
    assert manifest.engine_is_preview
    assert list(manifest.timings_s) == list(STAGES)
    assert 0 < manifest.model_seconds <= manifest.total_seconds
    assert {"torch", "diffusers", "alch3mist"} <= set(manifest.versions)
    assert any("preview engine" in w for w in manifest.warnings)
    assert "preview engine" in (tmp_path / "viewer.html").read_text(encoding="utf-8")

    stage_starts = [e.stage for e in events if e.type == "stage"]
    assert stage_starts == list(STAGES)
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
