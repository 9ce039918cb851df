"""The ComfyUI stand-in behaves as upstream's server.py / execution.py / main.py say (see its docstring)."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import httpx
import pytest
from alch3mist.comfyui.workflows import BaseJob, ModelFiles, base_image_graph
from PIL import Image
from websockets.sync.client import connect

from tests.backend.comfyui.conftest import ComfyUIStandIn
from tests.conftest import png_bytes


def graph(seed: int = 3, steps: int = 2) -> dict[str, Any]:
    return base_image_graph(ModelFiles.defaults(), BaseJob("a cow", seed, steps, 3.5, 32)).api()


def run_and_listen(server: ComfyUIStandIn, prompt: dict[str, Any]) -> tuple[str, list[dict[str, Any]], Any]:
    """Queue ``prompt`` with a websocket open; return its id, every JSON message, and /history when done came."""
    client_id, prompt_id = uuid.uuid4().hex, str(uuid.uuid4())
    messages: list[dict[str, Any]] = []
    with connect(f"ws{server.url.removeprefix('http')}/ws?clientId={client_id}") as socket:
        messages.append(json.loads(socket.recv(timeout=10)))
        body = {"prompt": prompt, "client_id": client_id, "prompt_id": prompt_id}
        assert httpx.post(f"{server.url}/prompt", json=body).json()["prompt_id"] == prompt_id
        while True:
            message = json.loads(socket.recv(timeout=30))
            messages.append(message)
            if message["type"] == "executing" and message["data"]["node"] is None:
                history = httpx.get(f"{server.url}/history/{prompt_id}").json()
                return prompt_id, messages, history


def test_messages_come_in_upstreams_order_and_history_is_ready_at_the_end(comfyui_behaves: ComfyUIStandIn) -> None:
    prompt_id, messages, history = run_and_listen(comfyui_behaves, graph(seed=int(time.time()) % 10000))
    assert messages[0]["type"] == "status" and "sid" in messages[0]["data"]
    mine = [m for m in messages if m["data"].get("prompt_id") == prompt_id and m["type"] != "progress_state"]
    kinds = [m["type"] for m in mine]
    assert kinds[:2] == ["execution_start", "execution_cached"]
    assert kinds[-3:] == ["executed", "execution_success", "executing"]
    sampler = next(k for k, n in graph().items() if n["class_type"] == "KSampler")
    progress = [(m["data"]["value"], m["data"]["max"]) for m in mine if m["type"] == "progress"]
    assert progress == [(1, 2), (2, 2)] and all(m["data"]["node"] == sampler for m in mine if m["type"] == "progress")
    executing = [m["data"]["node"] for m in mine if m["type"] == "executing"]
    assert executing[-1] is None and executing.index(sampler) < len(executing) - 1
    entry = history[prompt_id]
    assert entry["status"]["status_str"] == "success" and entry["status"]["completed"] is True
    [saved] = [out["images"] for out in entry["outputs"].values()]
    assert saved[0]["type"] == "output" and saved[0]["subfolder"] == "alch3mist"
    assert entry["prompt"][1] == prompt_id and entry["prompt"][2] == json.loads(
        json.dumps(graph(seed=entry["prompt"][2][sampler]["inputs"]["seed"]))
    )


def test_the_same_prompt_again_is_served_from_the_cache(comfyui_behaves: ComfyUIStandIn) -> None:
    prompt = graph(seed=777)
    _first_id, _messages, first = run_and_listen(comfyui_behaves, prompt)
    prompt_id, messages, history = run_and_listen(comfyui_behaves, prompt)
    [cached] = [m["data"]["nodes"] for m in messages if m["type"] == "execution_cached"]
    assert sorted(cached) == sorted(prompt)
    assert not [m for m in messages if m["type"] == "progress"]
    assert list(history[prompt_id]["outputs"].values()) == list(first[_first_id]["outputs"].values())


def _refused(server: ComfyUIStandIn, prompt: Any, **extra: Any) -> dict[str, Any]:
    response = httpx.post(f"{server.url}/prompt", json={"prompt": prompt, **extra})
    assert response.status_code == 400, response.text
    return response.json()  # type: ignore[no-any-return]


def test_validation_answers_like_validate_prompt(comfyui: ComfyUIStandIn) -> None:
    prompt = graph()
    sampler = next(k for k, n in prompt.items() if n["class_type"] == "KSampler")
    decode = next(k for k, n in prompt.items() if n["class_type"] == "VAEDecode")

    unknown = _refused(comfyui, {**prompt, "99": {"class_type": "NoSuchNode", "inputs": {}}})
    assert unknown["error"]["type"] == "missing_node_type" and unknown["node_errors"] == {}
    assert unknown["error"]["message"] == "Node 'NoSuchNode' not found. The custom node may not be installed."

    bad = json.loads(json.dumps(prompt))
    bad[sampler]["inputs"]["steps"] = 0
    del bad[decode]["inputs"]["vae"]
    body = _refused(comfyui, bad)
    assert body["error"]["type"] == "prompt_outputs_failed_validation"
    assert body["node_errors"][sampler]["errors"][0]["type"] == "value_smaller_than_min"
    assert body["node_errors"][sampler]["errors"][0]["message"] == "Value 0 smaller than min of 1"
    assert body["node_errors"][decode]["errors"][0] == {
        "type": "required_input_missing", "message": "Required input is missing", "details": "vae",
        "extra_info": {"input_name": "vae"},
    }  # fmt: skip
    assert body["node_errors"][decode]["class_type"] == "VAEDecode"

    crossed = json.loads(json.dumps(prompt))
    crossed[decode]["inputs"]["vae"] = crossed[sampler]["inputs"]["model"]  # a MODEL where a VAE goes
    [error] = _refused(comfyui, crossed)["node_errors"][decode]["errors"]
    assert (
        error["type"] == "return_type_mismatch"
        and error["details"] == "vae, received_type(MODEL) mismatch input_type(VAE)"
    )

    assert _refused(comfyui, prompt, prompt_id="not-a-uuid")["error"]["type"] == "invalid_prompt_id"
    assert _refused(comfyui, {})["error"]["type"] == "prompt_no_outputs"


def test_load_image_checks_the_file_not_a_list(comfyui: ComfyUIStandIn) -> None:
    prompt = {"1": {"class_type": "LoadImage", "inputs": {"image": "alch3mist/none.png"}},
              "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}}}  # fmt: skip
    [error] = _refused(comfyui, prompt)["node_errors"]["1"]["errors"]
    assert (
        error["type"] == "custom_validation_failed"
        and error["details"] == "image - Invalid image file: alch3mist/none.png"
    )


def test_uploads_and_view_follow_server_py(comfyui: ComfyUIStandIn) -> None:
    def upload(color: tuple[int, int, int]) -> dict[str, Any]:
        files = {"image": ("same.png", png_bytes(Image.new("RGB", (8, 8), color)), "image/png")}
        return httpx.post(f"{comfyui.url}/upload/image", files=files, data={"subfolder": "t"}).json()  # type: ignore[no-any-return]

    first, again, other = upload((1, 2, 3)), upload((1, 2, 3)), upload((9, 9, 9))
    assert first["name"] == again["name"] == "same.png" and other["name"] == "same (1).png"
    assert first == {"name": "same.png", "subfolder": "t", "type": "input"}
    view = httpx.get(f"{comfyui.url}/view", params={"filename": "same (1).png", "subfolder": "t", "type": "input"})
    assert view.status_code == 200 and view.headers["content-type"] == "image/png"
    assert httpx.get(f"{comfyui.url}/view", params={"filename": "../x.png"}).status_code == 400
    assert httpx.get(f"{comfyui.url}/view", params={"filename": "x.png", "subfolder": "../.."}).status_code == 403
    assert httpx.get(f"{comfyui.url}/view", params={"filename": "nope.png"}).status_code == 404


@pytest.mark.parametrize("prefix", ["", "/api"])
def test_object_info_lists_nodes_and_model_files(comfyui: ComfyUIStandIn, prefix: str) -> None:
    info = httpx.get(f"{comfyui.url}{prefix}/object_info/UNETLoader").json()["UNETLoader"]
    assert info["input"]["required"]["unet_name"][0] == sorted(ModelFiles.defaults().required()["diffusion_models"])
    assert info["output"] == ["MODEL"] and info["input_order"]["required"] == ["unet_name", "weight_dtype"]
    guidance = httpx.get(f"{comfyui.url}{prefix}/object_info/FluxGuidance").json()["FluxGuidance"]
    assert guidance["input"]["required"]["guidance"] == [
        "FLOAT",
        {"default": 3.5, "min": 0.0, "max": 100.0, "step": 0.1},
    ]
    assert httpx.get(f"{comfyui.url}{prefix}/object_info/Nope").json() == {}
