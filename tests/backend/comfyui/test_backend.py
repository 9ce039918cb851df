"""Stages 1-2 on the ``comfyui`` image backend, against the ComfyUI stand-in: the same calls as the diffusers path."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from alch3mist.comfyui.client import ComfyUIClient
from alch3mist.errors import Cancelled, ComfyUIError, ComfyUIUnavailable, ModelLoadError, UnknownLora
from alch3mist.models.loaded import FULL_DEFAULTS, LoadedModels
from alch3mist.models.registry import load_models
from alch3mist.stages.base_image import BaseImageStage
from alch3mist.stages.material_edit import MaterialEditStage
from alch3mist.stages.progress import StageControl
from PIL import Image

from tests.backend.comfyui.conftest import ComfyUIStandIn, make_comfyui_root, start_comfyui
from tests.backend.engines.servers import closed_port_url
from tests.conftest import png_bytes

PROMPT, EDIT = "a single cow standing, centred, plain light background", "Alch3mist turn its skin into copper"


@pytest.fixture()
def models(comfyui_behaves: ComfyUIStandIn, tmp_path: Path) -> LoadedModels:
    return load_models(comfyui_behaves.settings(tmp_path))


def base(models: LoadedModels, seed: int = 7, steps: int = 3, size: int = 64, **kw: object) -> Image.Image:
    control = kw.pop("control", None) or StageControl()
    return BaseImageStage(models).run(PROMPT, seed=seed, steps=steps, guidance=3.5, size=size, control=control)  # type: ignore[arg-type]


def edit(models: LoadedModels, image: Image.Image, lora: str | None = "alch3mist", scale: float = 1.0,
         seed: int = 7, control: StageControl | None = None) -> Image.Image:  # fmt: skip
    return MaterialEditStage(models).run(
        image, EDIT, seed=seed, steps=2, guidance=2.5, lora=lora, lora_scale=scale, control=control or StageControl()
    )


def test_nothing_is_loaded_here_and_the_full_defaults_apply(models: LoadedModels) -> None:
    assert models.flux is None and models.kontext is None and models.image_server is not None
    assert models.defaults == FULL_DEFAULTS and models.preset == "full" and models.device == "comfyui"
    assert [info.name for info in models.loras.available()] == ["alch3mist", "other/moss"]


def test_the_tiny_preset_and_comfyui_do_not_mix(comfyui: ComfyUIStandIn, tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="COMFYUI_URL"):
        load_models(comfyui.settings(tmp_path, preset="tiny"))


def test_same_seed_same_pixels_another_seed_another_image(models: LoadedModels) -> None:
    first = png_bytes(base(models, seed=7))
    assert png_bytes(base(models, seed=7)) == first
    assert png_bytes(base(models, seed=8)) != first
    assert base(models, size=96).size == (96, 96)


def test_the_workflow_carries_the_calls_prompt_seed_steps_and_size(
    models: LoadedModels, comfyui: ComfyUIStandIn
) -> None:
    base(models, seed=1234, steps=5, size=80)
    prompt = comfyui.calls("POST /prompt")[-1]
    nodes = {node["class_type"]: node["inputs"] for node in prompt["prompt"].values()}  # type: ignore[index]
    assert nodes["KSampler"]["seed"] == 1234 and nodes["KSampler"]["steps"] == 5
    assert (nodes["EmptySD3LatentImage"]["width"], nodes["EmptySD3LatentImage"]["height"]) == (80, 80)
    assert nodes["CLIPTextEncode"]["text"] == PROMPT and nodes["FluxGuidance"]["guidance"] == 3.5
    assert prompt["client_id"] == models.image_server.client.client_id  # type: ignore[union-attr]


def test_progress_comes_from_the_samplers_websocket_messages(models: LoadedModels) -> None:
    ticks: list[tuple[float, str]] = []
    base(models, steps=4, control=StageControl(on_progress=lambda f, m: ticks.append((f, m))))
    assert ticks == [(0.0, "base image"), (0.25, "base image 1/4"), (0.5, "base image 2/4"),
                     (0.75, "base image 3/4"), (1.0, "base image 4/4")]  # fmt: skip


def test_the_edit_uploads_the_image_and_uses_the_lora_choice(models: LoadedModels, comfyui: ComfyUIStandIn) -> None:
    image = base(models)
    with_lora = edit(models, image)
    uploaded = comfyui.calls("POST /upload/image")[-1]
    nodes = {n["class_type"]: n["inputs"] for n in comfyui.calls("POST /prompt")[-1]["prompt"].values()}  # type: ignore[union-attr]
    assert nodes["LoadImage"]["image"] == f"alch3mist/{uploaded['name']}"
    assert nodes["LoraLoaderModelOnly"] == {"model": nodes["LoraLoaderModelOnly"]["model"],
                                            "lora_name": "alch3mist.safetensors", "strength_model": 1.0}  # fmt: skip
    assert with_lora.size == (1024, 1024)  # FluxKontextImageScale: a square input becomes 1024x1024, like diffusers
    assert png_bytes(edit(models, image)) == png_bytes(with_lora)
    bare = edit(models, image, lora=None)
    assert "LoraLoaderModelOnly" not in {n["class_type"] for n in comfyui.calls("POST /prompt")[-1]["prompt"].values()}  # type: ignore[union-attr]
    assert png_bytes(bare) != png_bytes(with_lora)
    assert png_bytes(edit(models, image, scale=0.0)) == png_bytes(bare)  # scale 0 = baseline, as with diffusers
    assert png_bytes(edit(models, image, lora="other/moss")) != png_bytes(with_lora)


def test_an_unknown_lora_is_refused_before_anything_runs(models: LoadedModels, comfyui: ComfyUIStandIn) -> None:
    sent = len(comfyui.calls("POST /prompt"))
    with pytest.raises(UnknownLora, match="alch3mist, other/moss"):
        edit(models, Image.new("RGB", (64, 64)), lora="nope")
    assert len(comfyui.calls("POST /prompt")) == sent


def test_cancel_interrupts_the_run_on_the_server(models: LoadedModels, comfyui_behaves: ComfyUIStandIn) -> None:
    comfyui_behaves.set_fault(step_delay_s=0.2)
    control = StageControl()

    def cancel_after_first_step(fraction: float, message: str) -> None:
        if fraction > 0:
            control.cancel.set()

    control.on_progress = cancel_after_first_step
    with pytest.raises(Cancelled):
        base(models, steps=50, control=control)
    assert comfyui_behaves.calls("POST /interrupt")
    queue = httpx.get(f"{comfyui_behaves.url}/queue").json()
    assert queue == {"queue_running": [], "queue_pending": []}  # the server let go of it; nothing left running


def test_a_node_failure_names_the_server_and_the_node(models: LoadedModels, comfyui_behaves: ComfyUIStandIn) -> None:
    comfyui_behaves.set_fault(fail_node="VAEDecode")
    with pytest.raises(ComfyUIError) as caught:
        base(models, seed=99)
    assert comfyui_behaves.url in caught.value.message and "(VAEDecode) failed" in caught.value.message


def test_a_refused_workflow_names_the_node_and_the_reason(comfyui: ComfyUIStandIn, tmp_path: Path) -> None:
    models = load_models(comfyui.settings(tmp_path, comfyui_vae="missing-vae.safetensors"))
    with pytest.raises(ComfyUIError, match=r"\(VAELoader\): Value not in list: vae_name: 'missing-vae.safetensors'"):
        base(models)


def test_a_run_past_the_timeout_is_interrupted_and_fails(comfyui_behaves: ComfyUIStandIn, tmp_path: Path) -> None:
    comfyui_behaves.set_fault(step_delay_s=0.3)
    models = load_models(comfyui_behaves.settings(tmp_path, comfyui_timeout_s=1.0))
    with pytest.raises(ComfyUIUnavailable, match=r"longer than 1 s"):
        base(models, steps=30, seed=4242)
    assert comfyui_behaves.calls("POST /interrupt")


def test_a_server_that_is_down_is_said_so(tmp_path: Path) -> None:
    from alch3mist.config import Settings

    models = load_models(Settings(_env_file=None, comfyui_url=closed_port_url(), data_dir=tmp_path))  # type: ignore[call-arg]
    with pytest.raises(ComfyUIUnavailable, match=r"ComfyUI at http://127\.0\.0\.1"):
        base(models)


def test_a_run_waits_its_turn_behind_other_clients(comfyui_behaves: ComfyUIStandIn, tmp_path: Path) -> None:
    """ComfyUI runs one prompt at a time for everyone: ours waits in its queue, then reports and finishes."""
    comfyui_behaves.set_fault(step_delay_s=0.05)
    other = ComfyUIClient(comfyui_behaves.url)
    models = load_models(comfyui_behaves.settings(tmp_path))
    from alch3mist.comfyui.workflows import BaseJob, ModelFiles, base_image_graph

    busy = base_image_graph(ModelFiles.defaults(), BaseJob("someone else's", 5, 20, 3.5, 64)).api()
    worker = threading.Thread(target=lambda: other.run(busy, StageControl(), "other", progress_node="6"))
    worker.start()
    ticks: list[float] = []
    image = base(models, seed=31, steps=2, control=StageControl(on_progress=lambda f, m: ticks.append(f)))
    worker.join()
    assert image.size == (64, 64) and ticks[-1] == 1.0


@pytest.fixture()
def lonely_comfyui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComfyUIStandIn]:
    """A server without our LoRA and without the Kontext model."""
    work = tmp_path_factory.mktemp("lonely")
    root = make_comfyui_root(work / "ComfyUI", lora=False, skip=("kontext_fp8_scaled.safetensors",))
    yield from start_comfyui(root, work)


def test_a_server_missing_models_still_starts_and_says_what_is_missing(
    lonely_comfyui: ComfyUIStandIn, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    models = load_models(lonely_comfyui.settings(tmp_path))
    assert "diffusion_models/flux1-dev-kontext_fp8_scaled.safetensors" in caplog.text
    assert [info.name for info in models.loras.available()] == ["other/moss"]
