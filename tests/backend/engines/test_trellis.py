"""The TRELLIS client against a real Gradio 4.44.1 app with TRELLIS' endpoints (tests/servers/trellis_app.py)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from alch3mist.engines.base import EngineParams, EngineResult, check_glb
from alch3mist.engines.trellis import TrellisEngine
from alch3mist.errors import Cancelled, EngineError, EngineUnavailable, MeshError
from alch3mist.mesh.postprocess import postprocess_glb
from alch3mist.mesh.validate import validate_glb
from alch3mist.stages.progress import StageControl
from PIL import Image

from .servers import RunningServer, closed_port_url, object_image


@pytest.fixture
def server(trellis_server: RunningServer) -> Iterator[RunningServer]:
    trellis_server.set_fault("")
    yield trellis_server
    trellis_server.set_fault("")


def _run(
    engine: TrellisEngine, tmp_path: Path, params: EngineParams | None = None, control: StageControl | None = None
) -> EngineResult:
    return engine.generate(
        object_image(256), params or EngineParams(), tmp_path / "trellis.glb", control or StageControl()
    )


def test_trellis_runs_a_session_over_gradio_and_returns_its_glb(server: RunningServer, tmp_path: Path) -> None:
    progress: list[tuple[float, str]] = []
    engine = TrellisEngine(server.url, timeout_s=60)
    params = EngineParams(seed=42, ss_steps=20, ss_guidance=6.0, slat_steps=8, slat_guidance=2.5, texture_size=2048)
    result = engine.generate(
        object_image(256), params, tmp_path / "t.glb", StageControl(on_progress=lambda f, m: progress.append((f, m)))
    )

    check_glb(result.glb_path.read_bytes(), "trellis")
    assert result.engine == "trellis" and not result.is_preview
    assert result.metadata["variant"] == "TRELLIS"
    calls = server.calls()
    assert [c["endpoint"] for c in calls[-4:]] == ["start_session", "preprocess_image", "image_to_3d", "extract_glb"]
    sampled, extracted = calls[-2], calls[-1]
    assert sampled["seed"] == 42 and sampled["ss_sampling_steps"] == 20 and sampled["ss_guidance_strength"] == 6.0
    assert sampled["slat_sampling_steps"] == 8 and sampled["slat_guidance_strength"] == 2.5
    assert extracted == {"endpoint": "extract_glb", "mesh_simplify": 0.95, "texture_size": 2048}
    assert [f for f, _ in progress] == sorted(f for f, _ in progress)


def test_trellis_health_reports_the_app(server: RunningServer) -> None:
    health = TrellisEngine(server.url).health()
    assert health.available and health.url == server.url and "TRELLIS" in health.detail


def test_trellis_server_down_is_unavailable_and_names_the_url(tmp_path: Path) -> None:
    url = closed_port_url()
    engine = TrellisEngine(url, timeout_s=5, connect_timeout_s=2)
    assert not engine.health().available
    with pytest.raises(EngineUnavailable) as caught:
        _run(engine, tmp_path)
    assert "trellis" in str(caught.value) and url in str(caught.value)


@pytest.mark.parametrize("fault", ["garbage", "empty"])
def test_trellis_invalid_glb_is_a_mesh_error_naming_the_engine(
    server: RunningServer, tmp_path: Path, fault: str
) -> None:
    server.set_fault(fault)
    with pytest.raises(MeshError, match="'trellis'"):
        _run(TrellisEngine(server.url, timeout_s=60), tmp_path)
    assert not (tmp_path / "trellis.glb").exists()


def test_trellis_app_error_is_an_engine_error(server: RunningServer, tmp_path: Path) -> None:
    server.set_fault("error")
    with pytest.raises(EngineError, match="image_to_3d") as caught:
        _run(TrellisEngine(server.url, timeout_s=60), tmp_path)
    assert server.url in str(caught.value)


def test_trellis_timeout_is_unavailable(server: RunningServer, tmp_path: Path) -> None:
    server.set_fault("slow")
    with pytest.raises(EngineUnavailable, match="timed out"):
        _run(TrellisEngine(server.url, timeout_s=3), tmp_path)


def test_trellis_cancel_stops_a_running_call(server: RunningServer, tmp_path: Path) -> None:
    server.set_fault("slow")
    control = StageControl()
    timer = threading.Timer(2.0, control.cancel.set)
    timer.start()
    with pytest.raises(Cancelled):
        _run(TrellisEngine(server.url, timeout_s=60), tmp_path, control=control)
    timer.cancel()


def test_trellis2_app_gets_its_own_parameter_names(trellis2_server: RunningServer, tmp_path: Path) -> None:
    engine = TrellisEngine(trellis2_server.url, timeout_s=60)
    assert "TRELLIS.2" in engine.health().detail
    result = _run(engine, tmp_path, EngineParams(seed=3, slat_steps=9, target_faces=200_000, texture_size=1800))
    assert result.metadata["variant"] == "TRELLIS.2"
    sampled, extracted = trellis2_server.calls()[-2:]
    assert sampled["seed"] == 3 and sampled["resolution"] == "1024" and sampled["shape_slat_sampling_steps"] == 9
    assert extracted == {"endpoint": "extract_glb", "decimation_target": 200_000, "texture_size": 2048}
    assert b"EXT_texture_webp" in result.glb_path.read_bytes()[:4096]  # like TRELLIS.2: WebP textures
    report = postprocess_glb(result.glb_path, tmp_path / "model.glb", tmp_path / "texture.png")
    assert report.texture_map == "engine texture" and Image.open(tmp_path / "texture.png").format == "PNG"
    assert validate_glb(tmp_path / "model.glb").errors == 0
