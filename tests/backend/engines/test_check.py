"""``alch3mist engines check``: what a server offers and a smoke job, against the TRELLIS.2 and Hunyuan3D stand-ins."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from alch3mist.cli import main

from .servers import RunningServer, closed_port_url


def _check(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[dict[str, object]]]:
    status = main(["engines", "check", *argv, "--json"])
    return status, json.loads(capsys.readouterr().out)


def test_check_a_trellis2_url_prints_what_it_offers_and_runs_a_smoke_job(
    trellis2_server: RunningServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, reports = _check(capsys, trellis2_server.url, "--smoke", "--out", str(tmp_path))
    assert status == 0
    (report,) = reports
    assert report["engine"] == "trellis" and report["variant"] == "TRELLIS.2" and report["gradio"] == "6.0.1"
    steps = report["steps"]
    assert isinstance(steps, dict) and steps["preprocess"] == "/preprocess_image_1(image)"
    parameters = report["parameters"]
    assert isinstance(parameters, dict)
    assert "ss_sampling_steps 1–50 step 1 (default 12)" in parameters["image_to_3d"]
    assert report["would_send"] == {"seed": 0, "texture_size": 1024}
    smoke = report["smoke"]
    assert (
        isinstance(smoke, dict) and smoke["ok"] and smoke["texture"] == "engine" and Path(str(smoke["glb"])).is_file()
    )


def test_check_a_url_finds_a_hunyuan3d_server(
    hunyuan_server: RunningServer, capsys: pytest.CaptureFixture[str]
) -> None:
    status, reports = _check(capsys, hunyuan_server.url)
    assert status == 0 and reports[0]["variant"] == "Hunyuan3D-2.1" and reports[0]["texture"] == "yes"
    assert reports[0]["bounds"] == {
        "seed": [0, 2**32 - 1],
        "octree_resolution": [64, 512],
        "num_inference_steps": [1, 20],
        "guidance_scale": [0.1, 20.0],
        "num_chunks": [1000, 20000],
        "face_count": [1000, 100000],
    }


def test_check_text_output_and_a_dead_server(capsys: pytest.CaptureFixture[str]) -> None:
    url = closed_port_url()
    assert main(["engines", "check", url, "--kind", "trellis"]) == 1
    assert capsys.readouterr().out.startswith("trellis: NOT USABLE — unreachable")


def test_check_an_unconfigured_name_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["engines", "check", "hunyuan3d"]) == 2
    assert "no engine 'hunyuan3d' is configured" in capsys.readouterr().err
