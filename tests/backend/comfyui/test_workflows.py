"""The four exported workflows: committed files = a fresh export, the backend's defaults, and they run on ComfyUI."""

from __future__ import annotations

import io
import itertools
import json
import uuid

import httpx
import pytest
import trimesh
from alch3mist.comfyui.export import rendered_files
from alch3mist.comfyui.workflows import (
    EXAMPLE,
    INPUT_IMAGE,
    WORKFLOW_NAMES,
    BaseJob,
    Graph,
    ModelFiles,
    base_image_graph,
    build_workflow,
)
from alch3mist.config import Settings
from alch3mist.models.loaded import FULL_DEFAULTS
from alch3mist.prompting.schema import TRIGGER_WORD
from PIL import Image

from tests.backend.comfyui.conftest import ComfyUIStandIn
from tests.backend.engines.servers import REPO_ROOT
from tests.conftest import png_bytes

COMMITTED = REPO_ROOT / "comfyui"


def test_the_committed_files_are_what_the_exporter_writes() -> None:
    fresh = rendered_files()
    committed = {path.name: path.read_text(encoding="utf-8") for path in COMMITTED.iterdir() if path.is_file()}
    assert sorted(committed) == sorted(fresh), "run `alch3mist comfyui export` and commit comfyui/"
    for name, text in fresh.items():
        assert committed[name] == text, f"comfyui/{name} drifted from the exporter: run `alch3mist comfyui export`"


def test_the_export_command_writes_every_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from alch3mist.cli import main

    assert main(["comfyui", "export", "--out", str(tmp_path)]) == 0
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted(
        ["README.md", *(f"{n}.json" for n in WORKFLOW_NAMES), *(f"{n}.api.json" for n in WORKFLOW_NAMES)]
    )


def _nodes(api: dict[str, dict[str, object]], class_type: str) -> list[dict[str, object]]:
    return [node["inputs"] for node in api.values() if node["class_type"] == class_type]  # type: ignore[misc]


def test_the_workflows_hold_the_backend_defaults() -> None:
    api = build_workflow("flux-kontext-texture-wizar3d-basic").api()
    settings_fields = Settings.model_fields
    base_sampler, edit_sampler, mesh_sampler = _nodes(api, "KSampler")
    assert (base_sampler["steps"], edit_sampler["steps"]) == (FULL_DEFAULTS.steps, FULL_DEFAULTS.edit_steps)
    assert [g["guidance"] for g in _nodes(api, "FluxGuidance")] == [FULL_DEFAULTS.guidance, FULL_DEFAULTS.edit_guidance]
    [latent] = _nodes(api, "EmptySD3LatentImage")
    assert (latent["width"], latent["height"]) == (FULL_DEFAULTS.size, FULL_DEFAULTS.size)
    # Kontext's area: FluxKontextImageScale snaps to its ~1 MP resolutions, what kontext_max_area = 1024² means
    assert FULL_DEFAULTS.kontext_max_area == 1024**2 and FULL_DEFAULTS.kontext_auto_resize
    assert len(_nodes(api, "FluxKontextImageScale")) == 1
    [lora] = _nodes(api, "LoraLoaderModelOnly")
    assert lora["lora_name"] == f"{settings_fields['default_lora'].default}.safetensors"
    assert lora["strength_model"] == settings_fields["default_lora_scale"].default
    base_text, edit_text = (t["text"] for t in _nodes(api, "CLIPTextEncode"))
    assert str(edit_text).startswith(TRIGGER_WORD) and TRIGGER_WORD not in str(base_text)
    assert base_sampler["seed"] == edit_sampler["seed"] == mesh_sampler["seed"] == EXAMPLE.seed


@pytest.mark.parametrize("name", WORKFLOW_NAMES)
def test_ui_widgets_and_api_inputs_say_the_same(name: str) -> None:
    graph = build_workflow(name)
    api, ui = graph.api(), graph.ui()
    for node in ui["nodes"]:
        if node["type"] == "MarkdownNote":
            assert str(node["id"]) not in api  # notes live in the UI only
            continue
        inputs = api[str(node["id"])]["inputs"]
        schema = graph.node(node["id"]).schema
        values = dict(zip(schema.widget_names(), node["widgets_values"], strict=True))
        for item in schema.widget_inputs:
            assert values[item.name] == inputs[item.name], (name, node["type"], item.name)
        for slot, item in enumerate(node["inputs"]):
            link = next((link for link in ui["links"] if link[0] == item["link"]), None)
            if link is None:
                assert item["name"] not in inputs
                continue
            assert inputs[item["name"]] == [str(link[1]), link[2]] and link[3:5] == [node["id"], slot]


def test_the_ui_layout_keeps_nodes_inside_their_groups_and_groups_apart() -> None:
    ui = build_workflow("flux-kontext-texture-wizar3d-basic").ui()
    boxes = [g["bounding"] for g in ui["groups"]]
    for a, b in itertools.pairwise(boxes):
        assert a[0] + a[2] <= b[0]  # side by side, no overlap
    for node in ui["nodes"]:
        x, y = node["pos"]
        assert any(bx <= x and x + node["size"][0] <= bx + bw and by <= y for bx, by, bw, _bh in boxes), node["type"]


def test_notes_say_where_every_model_file_goes() -> None:
    for name in WORKFLOW_NAMES:
        ui = build_workflow(name).ui()
        [note] = [n for n in ui["nodes"] if n["type"] == "MarkdownNote"]
        loaders = [n for n in ui["nodes"] if n["type"].endswith("Loader") or n["type"] == "LoraLoaderModelOnly"]
        for loader in loaders:
            assert f"/{loader['widgets_values'][0]}`" in note["widgets_values"][0], (name, loader["type"])


def test_a_graph_refuses_what_comfyui_would_refuse() -> None:
    graph = Graph("bad")
    clip = graph.add("DualCLIPLoader", "g", clip_name1="a", clip_name2="b", type="flux")
    with pytest.raises(ValueError, match="takes MODEL"):
        graph.add("LoraLoaderModelOnly", "g", model=clip, lora_name="x", strength_model=1.0)
    with pytest.raises(ValueError, match="no input"):
        graph.add("VAELoader", "g", vae="ae.safetensors")
    with pytest.raises(ValueError, match="needs link"):
        graph.add("VAEDecode", "g")


# ---------------------------------------------------------------------------------------------------- on ComfyUI


def _queue(server: ComfyUIStandIn, prompt: dict[str, object]) -> httpx.Response:
    return httpx.post(f"{server.url}/prompt", json={"prompt": prompt, "prompt_id": str(uuid.uuid4())}, timeout=30)


def _wait(server: ComfyUIStandIn, prompt_id: str) -> dict[str, object]:
    for _ in range(600):
        history = httpx.get(f"{server.url}/history/{prompt_id}", timeout=30).json()
        if prompt_id in history:
            return history[prompt_id]  # type: ignore[no-any-return]
        import time

        time.sleep(0.1)
    raise AssertionError(f"prompt {prompt_id} did not finish")


def _upload_input(server: ComfyUIStandIn) -> None:
    image = Image.new("RGB", (96, 64), (200, 120, 40))
    files = {"image": (INPUT_IMAGE, png_bytes(image), "image/png")}
    assert httpx.post(f"{server.url}/upload/image", files=files, data={"overwrite": "true"}).status_code == 200


@pytest.mark.parametrize("name", WORKFLOW_NAMES)
def test_every_exported_api_workflow_is_accepted_by_comfyui(comfyui_behaves: ComfyUIStandIn, name: str) -> None:
    _upload_input(comfyui_behaves)
    api = json.loads((COMMITTED / f"{name}.api.json").read_text())
    response = _queue(comfyui_behaves, api)
    assert response.status_code == 200, response.text
    assert response.json()["node_errors"] == {}


def test_the_wizard_runs_to_an_image_an_edit_and_a_mesh(comfyui_behaves: ComfyUIStandIn) -> None:
    api = json.loads((COMMITTED / "flux-kontext-texture-wizar3d-basic.api.json").read_text())
    for inputs in _nodes(api, "KSampler"):
        inputs["steps"] = 2  # the graph as committed, only quicker
    response = _queue(comfyui_behaves, api)
    entry = _wait(comfyui_behaves, response.json()["prompt_id"])
    assert entry["status"]["status_str"] == "success"  # type: ignore[index]
    files = [f for produced in entry["outputs"].values() for kind in produced.values() for f in kind]  # type: ignore[attr-defined]
    names = sorted(f["filename"].split("_")[0] for f in files)
    assert names == ["img0", "img1", "mesh"]
    viewed = {f["filename"].split("_")[0]: httpx.get(f"{comfyui_behaves.url}/view", params=f).content for f in files}
    assert Image.open(io.BytesIO(viewed["img0"])).size == (FULL_DEFAULTS.size, FULL_DEFAULTS.size)
    assert Image.open(io.BytesIO(viewed["img1"])).size == (1024, 1024)  # Kontext's square resolution
    mesh = trimesh.load(io.BytesIO(viewed["mesh"]), file_type="glb", force="mesh")
    assert len(mesh.faces) > 0


def test_a_missing_model_file_is_refused_with_node_errors(comfyui_behaves: ComfyUIStandIn) -> None:
    files = ModelFiles.defaults()
    graph = base_image_graph(
        ModelFiles("no-such-flux.safetensors", files.kontext_unet, files.clip_l, files.t5, files.vae),
        BaseJob("a cow", 1, 2, 3.5, 64),
    )
    response = _queue(comfyui_behaves, graph.api())
    assert response.status_code == 400
    body = response.json()
    [(node_id, entry)] = body["node_errors"].items()
    assert entry["class_type"] == "UNETLoader" and graph.node(int(node_id)).schema.class_type == "UNETLoader"
    [error] = entry["errors"]
    assert error["type"] == "value_not_in_list" and "no-such-flux.safetensors" in error["details"]
    assert body["error"]["type"] == "prompt_outputs_failed_validation"
