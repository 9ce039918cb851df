"""The Hunyuan3D client against stand-ins of Hunyuan3D-2.0's and 2.1's api_server (tests/servers/hunyuan3d_server.py):
2.1's status that never says "error", 2.0 with and without --enable_tex, 2.1's bounds and ignored fields; and 2.0's
``mesh`` field as a texture engine (Hunyuan3DPainter)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import trimesh
from alch3mist.engines.base import EngineParams, EngineResult, PaintParams, check_glb, glb_has_texture
from alch3mist.engines.hunyuan3d import Hunyuan3DEngine, Hunyuan3DPainter
from alch3mist.errors import Cancelled, EngineError, EngineUnavailable, MeshError
from alch3mist.stages.progress import StageControl
from PIL import Image

from .servers import RunningServer, closed_port_url, object_image


@pytest.fixture
def server(hunyuan_server: RunningServer) -> Iterator[RunningServer]:
    hunyuan_server.set_fault("")
    yield hunyuan_server
    hunyuan_server.set_fault("")


def _engine(url: str, **kwargs: object) -> Hunyuan3DEngine:
    settings = {"poll_interval_s": 0.05, "timeout_s": 30, "shape_deadline_s": 20, "texture_deadline_s": 20, **kwargs}
    return Hunyuan3DEngine(url, **settings)  # type: ignore[arg-type]


def _run(
    engine: Hunyuan3DEngine, tmp_path: Path, params: EngineParams | None = None, control: StageControl | None = None
) -> EngineResult:
    return engine.generate(object_image(256), params or EngineParams(), tmp_path / "hy.glb", control or StageControl())


# --- 2.1 -----------------------------------------------------------------------------------------------------


def test_21_send_and_poll_returns_a_textured_glb_and_records_sent_vs_applied(
    server: RunningServer, tmp_path: Path
) -> None:
    messages: list[str] = []
    params = EngineParams(seed=9, octree_resolution=384, guidance_scale=6.5)
    result = _run(_engine(server.url), tmp_path, params, StageControl(on_progress=lambda f, m: messages.append(m)))

    check_glb(result.glb_path.read_bytes(), "hunyuan3d")
    assert (
        result.variant == "Hunyuan3D-2.1"
        and result.texture == "engine"
        and glb_has_texture(result.glb_path.read_bytes())
    )
    sent = server.calls()[-1]
    assert sent["route"] == "/send" and sent["texture"] is True
    assert (sent["seed"], sent["octree_resolution"], sent["guidance_scale"]) == (9, 384, 6.5)
    assert sent["num_inference_steps"] == 5  # not set by us: the server's own default
    # its worker calls self.pipeline(image=image): only the image and the texture flag are applied
    assert result.applied == {"texture": True}
    assert result.sent == {"texture": True, "seed": 9, "octree_resolution": 384, "guidance_scale": 6.5}
    assert result.app_defaults["num_inference_steps"] == 5
    assert any("ignores guidance_scale, octree_resolution, seed" in w for w in result.warnings)
    assert "hunyuan3d: texturing" in messages


def test_21_steps_above_its_bound_are_clamped_not_refused(server: RunningServer, tmp_path: Path) -> None:
    result = _run(_engine(server.url), tmp_path, EngineParams(num_inference_steps=50))
    assert server.calls()[-1]["num_inference_steps"] == 20  # api_models.py: le=20 (422 above)
    assert [(c.name, c.requested, c.sent) for c in result.clamps] == [("num_inference_steps", 50, 20)]
    assert any("num_inference_steps=50" in w and "sent 20" in w for w in result.warnings)


def test_21_gets_an_rgba_cutout_because_it_never_removes_a_backdrop(server: RunningServer, tmp_path: Path) -> None:
    _run(_engine(server.url), tmp_path)
    received = server.calls()[-1]
    assert received["image_mode"] == "RGBA"
    assert 0.1 < received["alpha_coverage"] < 0.6  # the object only, not the backdrop


def test_21_shape_only_uses_generate_because_send_would_never_complete(server: RunningServer, tmp_path: Path) -> None:
    result = _run(_engine(server.url), tmp_path, EngineParams(texture=False))
    assert server.calls()[-1]["route"] == "/generate" and server.calls()[-1]["texture"] is False
    assert result.texture == "none" and not glb_has_texture(result.glb_path.read_bytes())


def test_21_failed_shape_stays_processing_and_fails_at_its_deadline_naming_the_uid(
    server: RunningServer, tmp_path: Path
) -> None:
    server.set_fault("error")
    started = time.monotonic()
    with pytest.raises(EngineUnavailable) as caught:
        _run(_engine(server.url, shape_deadline_s=1.5), tmp_path)
    assert time.monotonic() - started < 15
    message = str(caught.value)
    assert "hunyuan3d" in message and server.url in message and "'processing'" in message
    assert "job " in message and "never reports a failed shape stage" in message


def test_21_stalled_texturing_delivers_the_shape_with_a_warning(server: RunningServer, tmp_path: Path) -> None:
    server.set_fault("texture-error")
    result = _run(_engine(server.url, texture_deadline_s=1.5), tmp_path)
    check_glb(result.glb_path.read_bytes(), "hunyuan3d")
    assert result.texture == "none"
    assert any("texturing of job" in w and "untextured mesh" in w for w in result.warnings)
    assert [c["route"] for c in server.calls()[-2:]] == ["/send", "/generate"]


def test_21_health(server: RunningServer) -> None:
    health = _engine(server.url).health()
    assert health.available and health.detail.startswith("Hunyuan3D-2.1 api_server")


# --- 2.0 -----------------------------------------------------------------------------------------------------


def test_20_without_enable_tex_asks_for_the_shape_only_and_says_so(
    hunyuan20_server: RunningServer, tmp_path: Path
) -> None:
    engine = _engine(hunyuan20_server.url)
    result = _run(engine, tmp_path, EngineParams(seed=5))
    routes = [(c["route"], c["texture"], c["has_mesh"]) for c in hunyuan20_server.calls()]
    assert routes == [("/generate", True, True), ("/send", False, False)]  # one probe, then shape only
    assert result.texture == "none" and result.variant == "Hunyuan3D-2.0"
    assert any("started without --enable_tex" in w for w in result.warnings)
    assert "no texture pipeline" in engine.health().detail
    _run(engine, tmp_path)  # the probe's answer is cached
    assert [c["route"] for c in hunyuan20_server.calls()][2:] == ["/send"]


def test_20_with_enable_tex_textures_and_applies_the_shape_settings(
    hunyuan20_tex_server: RunningServer, tmp_path: Path
) -> None:
    params = EngineParams(seed=5, num_inference_steps=50, target_faces=20_000)
    result = _run(_engine(hunyuan20_tex_server.url), tmp_path, params)
    sent = hunyuan20_tex_server.calls()[-1]
    assert sent["route"] == "/send" and sent["texture"] is True and sent["num_inference_steps"] == 50  # no bounds
    assert result.texture == "engine" and result.clamps == [] and result.warnings == []
    assert result.applied == {"texture": True, "seed": 5, "num_inference_steps": 50, "face_count": 20_000}
    assert result.app_defaults == {"octree_resolution": 128, "guidance_scale": 5.0}  # api_server.py:206-208


def test_20_a_glb_still_being_written_is_polled_again_not_returned_half(
    hunyuan20_server: RunningServer, tmp_path: Path
) -> None:
    hunyuan20_server.set_fault("slow-write")  # /status answers 'completed' with whatever the file holds so far
    try:
        result = _run(_engine(hunyuan20_server.url), tmp_path, EngineParams(seed=5))
    finally:
        hunyuan20_server.set_fault("")
    check_glb(result.glb_path.read_bytes(), "hunyuan3d")


def test_20_health_without_a_health_route(hunyuan20_server: RunningServer) -> None:
    health = _engine(hunyuan20_server.url).health()
    assert health.available and health.detail.startswith("Hunyuan3D-2.0 api_server")


# --- both ----------------------------------------------------------------------------------------------------


def test_generate_mode(server: RunningServer, tmp_path: Path) -> None:
    result = _run(_engine(server.url, mode="generate"), tmp_path)
    check_glb(result.glb_path.read_bytes(), "hunyuan3d")
    assert server.calls()[-1]["route"] == "/generate"


def test_server_down_is_unavailable_and_names_the_url(tmp_path: Path) -> None:
    url = closed_port_url()
    engine = _engine(url, connect_timeout_s=2)
    assert not engine.health().available
    with pytest.raises(EngineUnavailable) as caught:
        _run(engine, tmp_path)
    assert "hunyuan3d" in str(caught.value) and url in str(caught.value)


@pytest.mark.parametrize("mode", ["send", "generate"])
def test_garbage_glb_is_a_mesh_error(server: RunningServer, tmp_path: Path, mode: str) -> None:
    server.set_fault("garbage")
    with pytest.raises(MeshError, match="'hunyuan3d'"):
        _run(_engine(server.url, mode=mode), tmp_path)


def test_failed_generate_is_an_engine_error(server: RunningServer, tmp_path: Path) -> None:
    server.set_fault("error")
    with pytest.raises(EngineError, match="HTTP 404") as caught:
        _run(_engine(server.url, mode="generate"), tmp_path)
    assert not isinstance(caught.value, EngineUnavailable) and server.url in str(caught.value)


def test_cancel_between_polls(server: RunningServer, tmp_path: Path) -> None:
    server.set_fault("hang")
    control = StageControl()
    threading.Timer(0.5, control.cancel.set).start()
    with pytest.raises(Cancelled):
        _run(_engine(server.url), tmp_path, control=control)


# --- 2.0's mesh field: the Hunyuan3DPainter (a texture engine) ---------------------------------------------------


def _torus_with_a_speck() -> tuple[bytes, int, int]:
    """A torus (1,152 faces) and a 4-face speck beside it, as one welded GLB: (glb, torus faces, speck faces)."""
    torus = trimesh.creation.torus(0.45, 0.15, major_sections=48, minor_sections=12)
    corners = [[0.8, 0.0, 0.0], [0.82, 0.0, 0.0], [0.8, 0.02, 0.0], [0.8, 0.0, 0.02]]
    speck = trimesh.Trimesh(corners, [[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])
    both = trimesh.util.concatenate([torus, speck])
    return bytes(trimesh.Scene(both).export(file_type="glb")), len(torus.faces), len(speck.faces)


def _red_thing() -> Image.Image:
    picture = Image.new("RGB", (128, 128), (244, 244, 240))
    picture.paste((200, 30, 30), (32, 32, 96, 96))
    return picture


def test_20_paints_a_given_mesh_with_the_pictures_colour_and_keeps_its_frame(
    hunyuan20_tex_server: RunningServer, tmp_path: Path
) -> None:
    glb, torus_faces, speck_faces = _torus_with_a_speck()
    painter = Hunyuan3DPainter(_engine(hunyuan20_tex_server.url))
    result = painter.paint(glb, _red_thing(), PaintParams(seed=3, texture_size=512), tmp_path / "p.glb", StageControl())

    call = hunyuan20_tex_server.calls()[-1]
    assert call["route"] == "/generate" and call["has_mesh"] and call["texture"] is True
    # face_count = the faces sent, so FaceReducer (default 40,000) leaves the geometry alone
    assert result.sent == {"texture": True, "face_count": torus_faces + speck_faces}
    assert result.variant == "Hunyuan3D-2.0" and result.texture == "engine"
    assert any("2048² texture whatever is asked" in warning for warning in result.warnings)
    painted = trimesh.load(result.glb_path, force="mesh")
    # FloaterRemover deleted the speck (under 0.5 % of the torus' faces); the torus came back where it was sent
    assert len(painted.faces) == torus_faces
    assert np.allclose(painted.bounds, trimesh.creation.torus(0.45, 0.15).bounds, atol=1e-4)
    texture = np.asarray(painted.visual.material.baseColorTexture.convert("RGB"))
    assert texture.shape == (2048, 2048, 3) and np.allclose(texture.reshape(-1, 3).mean(axis=0), (200, 30, 30), atol=2)


def test_20_without_enable_tex_cannot_paint(hunyuan20_server: RunningServer, tmp_path: Path) -> None:
    glb, _, _ = _torus_with_a_speck()
    painter = Hunyuan3DPainter(_engine(hunyuan20_server.url))
    with pytest.raises(EngineError, match="--enable_tex"):
        painter.paint(glb, _red_thing(), PaintParams(), tmp_path / "p.glb", StageControl())
    assert not painter.health().available and "cannot paint" in painter.health().detail


def test_21_has_no_mesh_field_and_is_refused_before_sending_it(server: RunningServer, tmp_path: Path) -> None:
    glb, _, _ = _torus_with_a_speck()
    painter = Hunyuan3DPainter(_engine(server.url))
    before = len(server.calls())
    with pytest.raises(EngineError, match=r"2\.1's api_server cannot paint a given mesh"):
        painter.paint(glb, _red_thing(), PaintParams(), tmp_path / "p.glb", StageControl())
    assert len(server.calls()) == before  # 2.1 would have made a NEW shape from the picture: nothing was sent
    assert not painter.health().available


def test_20_paint_failure_is_an_engine_error_at_once(hunyuan20_tex_server: RunningServer, tmp_path: Path) -> None:
    glb, _, _ = _torus_with_a_speck()
    painter = Hunyuan3DPainter(_engine(hunyuan20_tex_server.url))
    painter.paint(glb, _red_thing(), PaintParams(), tmp_path / "ok.glb", StageControl())  # probed: it can paint
    hunyuan20_tex_server.set_fault("texture-error")
    try:
        started = time.monotonic()
        with pytest.raises(EngineError, match="HTTP 404"):
            painter.paint(glb, _red_thing(), PaintParams(), tmp_path / "p.glb", StageControl())
        assert time.monotonic() - started < 10  # /generate answers 404; /send would have stayed 'processing'
    finally:
        hunyuan20_tex_server.set_fault("")
