"""The TRELLIS.2 texturing client against a stand-in of its ``app_texturing.py`` on Gradio 6.0.1
(tests/servers/trellis2_texturing_app.py): endpoint names read from the app, the picture through /preprocess_image,
slider clamps, WebP textures in, the mesh normalised into the app's cube, faults and cancel."""

from __future__ import annotations

import json
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import trimesh
from alch3mist.engines.base import EngineResult, PaintParams
from alch3mist.engines.trellis2_texturing import Trellis2Painter
from alch3mist.errors import Cancelled, EngineError, EngineUnavailable, MeshError
from alch3mist.stages.progress import StageControl
from PIL import Image

from .servers import RunningServer, closed_port_url


@pytest.fixture
def server(trellis2_texturing_server: RunningServer) -> Iterator[RunningServer]:
    trellis2_texturing_server.set_fault("")
    yield trellis2_texturing_server
    trellis2_texturing_server.set_fault("")


def _box_glb() -> bytes:
    """A 2 × 1 × 0.5 box far from the origin: the app normalises it into its own unit cube."""
    box = trimesh.creation.box(extents=(2.0, 1.0, 0.5))
    box.apply_translation((5.0, 0.0, 0.0))
    return bytes(trimesh.Scene(box).export(file_type="glb"))


def _green_thing() -> Image.Image:
    picture = Image.new("RGB", (160, 128), (244, 244, 240))
    picture.paste((30, 160, 40), (40, 30, 120, 100))
    return picture


def _paint(
    server: RunningServer, tmp_path: Path, params: PaintParams, control: StageControl | None = None
) -> EngineResult:
    painter = Trellis2Painter(server.url, timeout_s=60)
    return painter.paint(_box_glb(), _green_thing(), params, tmp_path / "p.glb", control or StageControl())


def _document(glb: Path) -> dict[str, object]:
    data = glb.read_bytes()
    (length,) = struct.unpack_from("<I", data, 12)
    document: dict[str, object] = json.loads(data[20 : 20 + length])
    return document


def test_health_reads_the_texturing_apps_own_endpoints(server: RunningServer) -> None:
    health = Trellis2Painter(server.url).health()
    assert health.available, health.detail
    assert health.detail == "TRELLIS.2 texturing Gradio app (Gradio 6.0.1)"


def test_a_paint_is_one_session_start_preprocess_paint(server: RunningServer, tmp_path: Path) -> None:
    result = _paint(server, tmp_path, PaintParams(seed=11, texture_size=2048))
    calls = [call["endpoint"] for call in server.calls()[-3:]]
    assert calls == ["start_session", "preprocess_image", "shapeimage_to_tex"]
    painted = server.calls()[-1]
    # the seed and the job's texture size are sent; every other slider keeps the app's default
    assert painted["seed"] == 11 and painted["texture_size"] == 2048 and painted["resolution"] == "1024"
    assert painted["tex_slat_sampling_steps"] == 12 and painted["tex_slat_guidance_strength"] == 1.0
    assert painted["mesh_suffix"] == ".glb"
    assert result.sent == {"seed": 11, "texture_size": 2048}
    assert result.app_defaults["tex_slat_rescale_t"] == 3.0
    assert result.variant == "TRELLIS.2 texturing" and result.texture == "engine"


def test_what_comes_back_is_webp_textured_in_the_apps_unit_cube(server: RunningServer, tmp_path: Path) -> None:
    result = _paint(server, tmp_path, PaintParams(texture_size=1024))
    glb = result.glb_path
    document = _document(glb)
    assert "EXT_texture_webp" in document["extensionsUsed"]  # type: ignore[operator]
    painted = trimesh.load(glb, force="mesh")
    # app_texturing: centred, longest side 0.99999, the box's proportions kept; every face its own UV chart
    assert np.allclose(painted.bounds, [[-0.5, -0.25, -0.125], [0.5, 0.25, 0.125]], atol=1e-4)
    assert len(painted.faces) == 12 and len(painted.vertices) == 36
    colour = np.asarray(painted.visual.material.baseColorTexture.convert("RGB")).reshape(-1, 3).mean(axis=0)
    assert np.allclose(colour, (30, 160, 40), atol=3)  # the picture's object, after the app's preprocessing


def test_values_beyond_its_sliders_are_clamped_and_said(server: RunningServer, tmp_path: Path) -> None:
    params = PaintParams(texture_size=512, options={"tex_slat_sampling_steps": 80, "no_such_knob": 1})
    result = _paint(server, tmp_path, params)
    painted = server.calls()[-1]
    assert painted["texture_size"] == 1024 and painted["tex_slat_sampling_steps"] == 50
    clamped = {c.name: (c.requested, c.sent) for c in result.clamps}
    assert clamped == {"texture_size": (512, 1024), "tex_slat_sampling_steps": (80, 50)}
    assert any("no parameter 'no_such_knob'" in w for w in result.warnings)


def test_a_failure_in_the_app_is_an_engine_error_naming_the_endpoint(server: RunningServer, tmp_path: Path) -> None:
    server.set_fault("error")
    with pytest.raises(EngineError, match="/shapeimage_to_tex failed") as caught:
        _paint(server, tmp_path, PaintParams())
    assert server.url in str(caught.value)


def test_garbage_instead_of_a_glb_is_a_mesh_error(server: RunningServer, tmp_path: Path) -> None:
    server.set_fault("garbage")
    with pytest.raises(MeshError, match="'trellis2'"):
        _paint(server, tmp_path, PaintParams())


def test_cancel_while_it_paints(server: RunningServer, tmp_path: Path) -> None:
    server.set_fault("slow")
    control = StageControl()
    timer = threading.Timer(2.0, control.cancel.set)
    timer.start()
    with pytest.raises(Cancelled):
        _paint(server, tmp_path, PaintParams(), control)
    timer.cancel()


def test_an_app_that_is_not_the_texturing_app_says_what_it_offers(trellis2_server: RunningServer) -> None:
    health = Trellis2Painter(trellis2_server.url).health()  # TRELLIS.2's image-to-3D app.py, not app_texturing.py
    assert not health.available
    assert "not TRELLIS.2's texturing app" in health.detail and "/image_to_3d" in health.detail


def test_nobody_there_is_unavailable(tmp_path: Path) -> None:
    painter = Trellis2Painter(closed_port_url(), connect_timeout_s=2, timeout_s=5)
    assert not painter.health().available
    with pytest.raises(EngineUnavailable):
        painter.paint(_box_glb(), _green_thing(), PaintParams(), tmp_path / "p.glb", StageControl())
