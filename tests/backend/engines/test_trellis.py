"""The TRELLIS client against stand-ins of the upstream apps: TRELLIS' app.py on Gradio 4.44.1 and TRELLIS.2's on
Gradio 6.0.1 (tests/servers/trellis_app.py, trellis2_app.py), whose upload endpoint Gradio names /preprocess_image_1."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from alch3mist.engines.base import EngineParams, EngineResult, check_glb
from alch3mist.engines.trellis import AppEndpoint, AppParameter, TrellisApp, TrellisEngine, fit_value
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


@pytest.fixture
def server2(trellis2_server: RunningServer) -> Iterator[RunningServer]:
    trellis2_server.set_fault("")
    yield trellis2_server
    trellis2_server.set_fault("")


def _run(
    engine: TrellisEngine, tmp_path: Path, params: EngineParams | None = None, control: StageControl | None = None
) -> EngineResult:
    return engine.generate(
        object_image(256), params or EngineParams(), tmp_path / "trellis.glb", control or StageControl()
    )


# --- TRELLIS (Gradio 4.44.1) -----------------------------------------------------------------------------------


def test_health_finds_the_app_whose_upload_endpoint_gradio_renamed(server: RunningServer) -> None:
    health = TrellisEngine(server.url).health()
    assert health.available, health.detail
    assert health.url == server.url and health.detail == "TRELLIS Gradio app (Gradio 4.44.1)"


def test_a_job_runs_one_session_through_the_apps_own_endpoint_names(server: RunningServer, tmp_path: Path) -> None:
    progress: list[tuple[float, str]] = []
    engine = TrellisEngine(server.url, timeout_s=60)
    params = EngineParams(seed=42, ss_steps=20, ss_guidance=6.0, texture_size=2048)
    control = StageControl(on_progress=lambda f, m: progress.append((f, m)))
    result = engine.generate(object_image(256), params, tmp_path / "t.glb", control)

    check_glb(result.glb_path.read_bytes(), "trellis")
    assert (
        result.engine == "trellis"
        and not result.is_preview
        and result.variant == "TRELLIS"
        and result.texture == "engine"
    )
    assert result.details["endpoints"] == ["/start_session", "/preprocess_image_1", "/image_to_3d", "/extract_glb"]
    calls = server.calls()
    assert [c["endpoint"] for c in calls[-4:]] == ["start_session", "preprocess_image", "image_to_3d", "extract_glb"]
    assert calls[-3]["mode"] == "RGBA"  # the app's gr.Image(image_mode="RGBA") converts the upload
    sampled, extracted = calls[-2], calls[-1]
    assert sampled["seed"] == 42 and sampled["ss_sampling_steps"] == 20 and sampled["ss_guidance_strength"] == 6.0
    # not set by the caller: the app's own defaults (app.py sliders), not ours
    assert sampled["slat_sampling_steps"] == 12 and sampled["slat_guidance_strength"] == 3.0
    assert extracted == {"endpoint": "extract_glb", "mesh_simplify": 0.95, "texture_size": 2048}
    assert result.sent == {"seed": 42, "ss_sampling_steps": 20, "ss_guidance_strength": 6.0, "texture_size": 2048}
    assert result.app_defaults["slat_guidance_strength"] == 3.0 and result.app_defaults["mesh_simplify"] == 0.95
    assert result.clamps == [] and result.warnings == []
    assert [f for f, _ in progress] == sorted(f for f, _ in progress)


def test_values_outside_the_apps_ranges_are_clamped_and_said(server: RunningServer, tmp_path: Path) -> None:
    result = _run(TrellisEngine(server.url, timeout_s=60), tmp_path, EngineParams(simplify=0.5, texture_size=4096))
    extracted = server.calls()[-1]
    assert extracted["mesh_simplify"] == 0.9 and extracted["texture_size"] == 2048  # app.py: 0.9–0.98, 512–2048
    assert {(c.name, c.requested, c.sent) for c in result.clamps} == {
        ("mesh_simplify", 0.5, 0.9),
        ("texture_size", 4096, 2048),
    }
    assert any("texture_size=4096" in w and "sent 2048" in w for w in result.warnings)


def test_server_down_is_unavailable_and_names_the_url(tmp_path: Path) -> None:
    url = closed_port_url()
    engine = TrellisEngine(url, timeout_s=5, connect_timeout_s=2)
    health = engine.health()
    assert not health.available and "unreachable" in health.detail
    with pytest.raises(EngineUnavailable) as caught:
        _run(engine, tmp_path)
    assert "trellis" in str(caught.value) and url in str(caught.value)


@pytest.mark.parametrize("fault", ["garbage", "empty"])
def test_invalid_glb_is_a_mesh_error_naming_the_engine(server: RunningServer, tmp_path: Path, fault: str) -> None:
    server.set_fault(fault)
    with pytest.raises(MeshError, match="'trellis'"):
        _run(TrellisEngine(server.url, timeout_s=60), tmp_path)
    assert not (tmp_path / "trellis.glb").exists()


def test_app_error_is_an_engine_error(server: RunningServer, tmp_path: Path) -> None:
    server.set_fault("error")
    with pytest.raises(EngineError, match="image_to_3d") as caught:
        _run(TrellisEngine(server.url, timeout_s=60), tmp_path)
    assert server.url in str(caught.value)


def test_timeout_is_unavailable(server: RunningServer, tmp_path: Path) -> None:
    server.set_fault("slow")
    with pytest.raises(EngineUnavailable, match="timed out"):
        _run(TrellisEngine(server.url, timeout_s=3), tmp_path)


def test_cancel_stops_a_running_call(server: RunningServer, tmp_path: Path) -> None:
    server.set_fault("slow")
    control = StageControl()
    timer = threading.Timer(2.0, control.cancel.set)
    timer.start()
    with pytest.raises(Cancelled):
        _run(TrellisEngine(server.url, timeout_s=60), tmp_path, control=control)
    timer.cancel()


# --- TRELLIS.2 (Gradio 6.0.1) ------------------------------------------------------------------------------------


def test_trellis2_health_reads_gradio6s_api_description(server2: RunningServer) -> None:
    health = TrellisEngine(server2.url).health()
    assert health.available, health.detail
    assert health.detail == "TRELLIS.2 Gradio app (Gradio 6.0.1)"


def test_trellis2_keeps_its_own_defaults_and_gets_its_own_names(server2: RunningServer, tmp_path: Path) -> None:
    result = _run(TrellisEngine(server2.url, timeout_s=60), tmp_path, EngineParams(seed=3, texture_size=1024))
    assert result.variant == "TRELLIS.2"
    sampled, extracted = server2.calls()[-2:]
    # nothing set but the seed: TRELLIS.2's app defaults stand (shape guidance 7.5, not TRELLIS' 3.0)
    assert sampled["seed"] == 3 and sampled["resolution"] == "1024"
    assert sampled["shape_slat_guidance_strength"] == 7.5 and sampled["tex_slat_guidance_strength"] == 1.0
    assert extracted == {"endpoint": "extract_glb", "decimation_target": 500_000, "texture_size": 1024}
    assert result.sent == {"seed": 3, "texture_size": 1024}
    assert result.app_defaults["shape_slat_guidance_strength"] == 7.5
    assert result.app_defaults["decimation_target"] == 500_000
    assert b"EXT_texture_webp" in result.glb_path.read_bytes()[:4096]  # like TRELLIS.2: WebP textures
    report = postprocess_glb(result.glb_path, tmp_path / "model.glb", tmp_path / "texture.png")
    assert report.texture_map == "engine texture" and Image.open(tmp_path / "texture.png").format == "PNG"
    assert validate_glb(tmp_path / "model.glb").errors == 0


def test_trellis2_values_beyond_its_sliders_are_clamped_not_rejected(server2: RunningServer, tmp_path: Path) -> None:
    params = EngineParams(
        ss_steps=80, slat_guidance=15.0, resolution=1536, target_faces=20_000, texture_size=1800, seed=1
    )
    result = _run(TrellisEngine(server2.url, timeout_s=60), tmp_path, params)
    sampled, extracted = server2.calls()[-2:]
    assert sampled["ss_sampling_steps"] == 50 and sampled["shape_slat_guidance_strength"] == 10.0
    assert sampled["resolution"] == "1536"
    assert extracted["decimation_target"] == 100_000 and extracted["texture_size"] == 2048
    clamped = {c.name: (c.requested, c.sent) for c in result.clamps}
    assert clamped == {
        "ss_sampling_steps": (80, 50),
        "shape_slat_guidance_strength": (15.0, 10.0),
        "decimation_target": (20_000, 100_000),
        "texture_size": (1800, 2048),
    }
    assert len(result.warnings) == 4 and all(w.startswith("TRELLIS.2 app: ") for w in result.warnings)


def test_trellis2_engine_options_by_the_apps_own_names(server2: RunningServer, tmp_path: Path) -> None:
    params = EngineParams(options={"tex_slat_guidance_strength": 2.5, "no_such_knob": 1})
    result = _run(TrellisEngine(server2.url, timeout_s=60), tmp_path, params)
    assert server2.calls()[-2]["tex_slat_guidance_strength"] == 2.5
    assert any("no parameter 'no_such_knob'" in w for w in result.warnings)


# --- what the app offers, without a server -----------------------------------------------------------------------


def test_a_missing_endpoint_names_what_the_app_offers() -> None:
    offered = (AppEndpoint("/start_session", ()), AppEndpoint("/shapeimage_to_tex", (AppParameter("mesh", "File"),)))
    app = TrellisApp(url="http://gpu:7860", gradio_version="6.0.1", offered=offered)
    assert app.missing() == ["preprocess", "image_to_3d", "extract_glb"]
    assert app.offered_text() == "/start_session(), /shapeimage_to_tex(mesh)"


@pytest.mark.parametrize(
    ("value", "expected", "clamped"),
    [(12, 12, False), (0, 1, True), (51, 50, True), (12.4, 12, True)],
)
def test_fit_value_to_an_integer_slider(value: float, expected: int, clamped: bool) -> None:
    steps = AppParameter("steps", "Slider", default=12, minimum=1, maximum=50, step=1)
    fitted, clamp = fit_value(steps, value)
    assert fitted == expected and isinstance(fitted, int) and (clamp is not None) == clamped


def test_fit_value_snaps_to_the_step_and_refuses_unknown_choices() -> None:
    size = AppParameter("texture_size", "Slider", default=2048, minimum=1024, maximum=4096, step=1024)
    assert fit_value(size, 3000)[0] == 3072
    resolution = AppParameter("resolution", "Radio", default="1024", choices=("512", "1024", "1536"))
    assert fit_value(resolution, 1024) == ("1024", None)
    fitted, clamp = fit_value(resolution, 2048)
    assert fitted is None and clamp is not None and clamp.allowed == "512/1024/1536"
