"""ComfyUI as the backend end to end: the chain, the API (a real backend process) and a dataset build; and the
commands that report the server (``alch3mist comfyui check``, ``alch3mist info``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from alch3mist.chain import Chain, GenerationRequest
from alch3mist.cli import main as cli
from alch3mist.domain import LoraChoice
from alch3mist.engines.registry import build_engines
from alch3mist.errors import UnknownLora
from alch3mist.models.registry import load_models
from alch3mist.prompting.rewrite import PromptRewriter
from PIL import Image

from tests.backend.comfyui.conftest import ComfyUIStandIn, make_comfyui_root, start_comfyui
from tests.integration.conftest import BackendProcess, submit, wait_for

BASE, EDIT = "a teapot, a single object, centred, plain light grey background", "Alch3mist turn it into copper"


def _prompts(server: ComfyUIStandIn, since: int) -> list[dict[str, Any]]:
    return [
        {n["class_type"]: n["inputs"] for n in body["prompt"].values()} for body in server.calls("POST /prompt")[since:]
    ]  # type: ignore[index, union-attr]


def test_the_chain_runs_on_comfyui(comfyui_behaves: ComfyUIStandIn, tmp_path: Path) -> None:
    settings = comfyui_behaves.settings(tmp_path)
    chain = Chain(settings, load_models(settings), build_engines(settings), PromptRewriter(settings))
    with pytest.raises(UnknownLora, match="available: alch3mist, other/moss"):  # the server's models/loras
        chain.validate(GenerationRequest(base_prompt=BASE, edit_prompt=EDIT, lora=LoraChoice(name="nope")))
    since = len(comfyui_behaves.calls("POST /prompt"))
    request = GenerationRequest(base_prompt=BASE, edit_prompt=EDIT, seed=11, steps=2, edit_steps=2, size=64, views=0)
    chain.validate(request)
    events: list[Any] = []
    manifest = chain.run(request, tmp_path / "out", on_event=events.append)
    assert manifest.status == "succeeded", manifest.error
    assert manifest.models["comfyui"] == comfyui_behaves.url and manifest.device == "comfyui"
    assert manifest.lora is not None and manifest.lora.name == "alch3mist"  # the server's LoRA is the default
    assert Image.open(tmp_path / "out" / "base.png").size == (64, 64)
    assert Image.open(tmp_path / "out" / "textured.png").size == (1024, 1024)
    assert (tmp_path / "out" / "model.glb").stat().st_size > 0
    base, edit = _prompts(comfyui_behaves, since)
    assert base["KSampler"]["seed"] == edit["KSampler"]["seed"] == 11
    assert edit["LoraLoaderModelOnly"]["lora_name"] == "alch3mist.safetensors"
    stage_ticks = [e.message for e in events if e.type == "progress" and e.stage == "material_edit"]
    assert stage_ticks[-1] == "applying material 2/2"


def test_the_api_runs_jobs_on_comfyui(comfyui_behaves: ComfyUIStandIn, tmp_path: Path) -> None:
    backend = BackendProcess(
        tmp_path / "data", tmp_path / "backend.log", preset="auto", ALCH3MIST_COMFYUI_URL=comfyui_behaves.url
    )
    backend.start()
    try:
        with backend.client() as client:
            info = client.get("/v1/info").json()
            assert info["device"] == "comfyui" and [lora["name"] for lora in info["loras"]] == [
                "alch3mist",
                "other/moss",
            ]
            job = submit(client, base_prompt=BASE, edit_prompt=EDIT, lora={"name": "other/moss", "scale": 0.5}, views=1)
            done = wait_for(client, job["id"], timeout=240)
            assert done["status"] == "succeeded", done
            image = client.get(f"/v1/jobs/{job['id']}/artifacts/textured.png")
            assert image.status_code == 200 and image.headers["content-type"] == "image/png"
            refused = client.post("/v1/jobs", json={"base_prompt": BASE, "edit_prompt": EDIT, "lora": {"name": "x"}})
            assert refused.status_code == 422 and refused.json()["error"]["code"] == "unknown_lora"
        [edit] = [
            p for p in _prompts(comfyui_behaves, 0) if "LoraLoaderModelOnly" in p and p["KSampler"]["seed"] == 1234
        ]
        assert edit["LoraLoaderModelOnly"]["lora_name"] == "other/moss.safetensors"
        assert edit["LoraLoaderModelOnly"]["strength_model"] == 0.5
    finally:
        backend.stop()


def test_a_dataset_builds_on_comfyui(
    comfyui_behaves: ComfyUIStandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no developer .env
    monkeypatch.setenv("ALCH3MIST_COMFYUI_URL", comfyui_behaves.url)
    monkeypatch.setenv("ALCH3MIST_DATA_DIR", str(tmp_path / "data"))
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("teapot | copper\nboot | moss\nvase | marble\n", encoding="utf-8")
    since = len(comfyui_behaves.calls("POST /prompt"))
    out = tmp_path / "dataset"
    argv = ["dataset", "build", "--out", str(out), "--prompts", str(prompts), "--test-size", "1", "--seed", "5",
            "--size", "64", "--steps", "2", "--edit-steps", "2", "--resolution", "512"]  # fmt: skip
    assert cli(argv) == 0
    records = [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines()]
    assert len(records) == 2
    for record in records:
        assert Image.open(out / record["original"]).size == Image.open(out / record["transformed"]).size == (512, 512)
    sent = _prompts(comfyui_behaves, since)
    assert len(sent) == 4  # a base image and an edit per pair
    assert all("LoraLoaderModelOnly" not in p for p in sent)  # the pairs are made without any LoRA
    assert sorted(p["KSampler"]["seed"] for p in sent) == sorted(r["seed"] for r in records for _ in (0, 1))


def test_check_reports_what_the_server_has(comfyui: ComfyUIStandIn, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["comfyui", "check", "--url", comfyui.url, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["nodes_missing"] == [] and report["missing_for_backend"] == []
    assert "flux1-dev.safetensors" in report["models"]["diffusion_models"]
    assert report["loras"] == ["alch3mist.safetensors", "other/moss.safetensors"]


def test_check_names_what_is_missing(
    tmp_path_factory: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    work = tmp_path_factory.mktemp("bare")
    for server in start_comfyui(
        make_comfyui_root(work / "ComfyUI", skip=("ae.safetensors", "hunyuan_3d_v2.1.safetensors")), work
    ):
        assert cli(["comfyui", "check", "--url", server.url]) == 1
        text = capsys.readouterr().out
        assert "! missing model file models/vae/ae.safetensors (the image backend needs it)" in text
        assert "models/checkpoints/hunyuan_3d_v2.1.safetensors (for the mesh workflows)" in text
        assert "backend: NOT ready" in text


def test_check_without_a_server_url_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ALCH3MIST_COMFYUI_URL", raising=False)
    assert cli(["comfyui", "check"]) == 2
    assert "ALCH3MIST_COMFYUI_URL" in capsys.readouterr().err


def test_info_reports_the_comfyui_server(
    comfyui: ComfyUIStandIn, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ALCH3MIST_COMFYUI_URL", comfyui.url)
    monkeypatch.setenv("ALCH3MIST_DATA_DIR", str(tmp_path / "data"))
    assert cli(["info"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["device"] == "comfyui" and info["comfyui"]["backend_ready"] is True
    assert "ae.safetensors" in info["comfyui"]["models"]["vae"] and info["comfyui"]["problems"] == []
