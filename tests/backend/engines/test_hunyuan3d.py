"""The Hunyuan3D client against a real HTTP server with Hunyuan3D-2.x api_server's routes (tests/servers/)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from alch3mist.engines.base import EngineParams, EngineResult, check_glb
from alch3mist.engines.hunyuan3d import Hunyuan3DEngine
from alch3mist.errors import Cancelled, EngineError, EngineUnavailable, MeshError
from alch3mist.stages.progress import StageControl

from .servers import RunningServer, closed_port_url, object_image


@pytest.fixture
def server(hunyuan_server: RunningServer) -> Iterator[RunningServer]:
    hunyuan_server.set_fault("")
    yield hunyuan_server
    hunyuan_server.set_fault("")


def _engine(url: str, **kwargs: object) -> Hunyuan3DEngine:
    return Hunyuan3DEngine(url, poll_interval_s=0.05, timeout_s=kwargs.pop("timeout_s", 30), **kwargs)  # type: ignore[arg-type]


def _run(
    engine: Hunyuan3DEngine, tmp_path: Path, params: EngineParams | None = None, control: StageControl | None = None
) -> EngineResult:
    return engine.generate(object_image(256), params or EngineParams(), tmp_path / "hy.glb", control or StageControl())


def test_hunyuan_send_and_poll_returns_the_glb_and_sends_its_fields(server: RunningServer, tmp_path: Path) -> None:
    messages: list[str] = []
    params = EngineParams(
        seed=9, octree_resolution=384, num_inference_steps=12, guidance_scale=6.5, target_faces=20_000
    )
    control = StageControl(on_progress=lambda f, m: messages.append(m))
    result = _run(_engine(server.url), tmp_path, params, control)

    check_glb(result.glb_path.read_bytes(), "hunyuan3d")
    assert result.engine == "hunyuan3d" and result.metadata["mode"] == "send"
    sent = server.calls()[-1]
    assert sent["route"] == "/send"
    assert {
        k: sent[k] for k in ("seed", "octree_resolution", "num_inference_steps", "guidance_scale", "face_count")
    } == {
        "seed": 9,
        "octree_resolution": 384,
        "num_inference_steps": 12,
        "guidance_scale": 6.5,
        "face_count": 20_000,
    }
    assert sent["texture"] is True and sent["remove_background"] is True
    assert "hunyuan3d: texturing" in messages


def test_hunyuan_generate_mode(server: RunningServer, tmp_path: Path) -> None:
    result = _run(_engine(server.url, mode="generate"), tmp_path)
    check_glb(result.glb_path.read_bytes(), "hunyuan3d")
    assert server.calls()[-1]["route"] == "/generate"


def test_hunyuan_health(server: RunningServer) -> None:
    health = _engine(server.url).health()
    assert health.available and "2.1" in health.detail


def test_hunyuan_server_down_is_unavailable_and_names_the_url(tmp_path: Path) -> None:
    url = closed_port_url()
    engine = _engine(url, connect_timeout_s=2)
    assert not engine.health().available
    with pytest.raises(EngineUnavailable) as caught:
        _run(engine, tmp_path)
    assert "hunyuan3d" in str(caught.value) and url in str(caught.value)


@pytest.mark.parametrize("mode", ["send", "generate"])
def test_hunyuan_garbage_glb_is_a_mesh_error(server: RunningServer, tmp_path: Path, mode: str) -> None:
    server.set_fault("garbage")
    with pytest.raises(MeshError, match="'hunyuan3d'"):
        _run(_engine(server.url, mode=mode), tmp_path)


@pytest.mark.parametrize("mode", ["send", "generate"])
def test_hunyuan_failed_job_is_an_engine_error(server: RunningServer, tmp_path: Path, mode: str) -> None:
    server.set_fault("error")
    with pytest.raises(EngineError) as caught:
        _run(_engine(server.url, mode=mode), tmp_path)
    assert not isinstance(caught.value, EngineUnavailable) and server.url in str(caught.value)


def test_hunyuan_rejected_field_is_an_engine_error_with_the_servers_reason(
    server: RunningServer, tmp_path: Path
) -> None:
    with pytest.raises(EngineError, match="HTTP 422"):
        _run(_engine(server.url), tmp_path, EngineParams(num_inference_steps=50))  # 2.1 accepts at most 20


def test_hunyuan_job_that_never_finishes_times_out(server: RunningServer, tmp_path: Path) -> None:
    server.set_fault("hang")
    with pytest.raises(EngineUnavailable, match="not finished after 1 s"):
        _run(_engine(server.url, timeout_s=1), tmp_path)


def test_hunyuan_cancel_between_polls(server: RunningServer, tmp_path: Path) -> None:
    server.set_fault("hang")
    control = StageControl()
    threading.Timer(0.5, control.cancel.set).start()
    with pytest.raises(Cancelled):
        _run(_engine(server.url), tmp_path, control=control)


def test_hunyuan20_server_without_health_route(hunyuan20_server: RunningServer, tmp_path: Path) -> None:
    engine = _engine(hunyuan20_server.url)
    assert engine.health().available and "Hunyuan3D-2 api_server" in engine.health().detail
    check_glb(_run(engine, tmp_path).glb_path.read_bytes(), "hunyuan3d")
