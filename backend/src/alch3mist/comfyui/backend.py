"""ComfyUI as the image backend of stages 1–2: the stage's call becomes an API-format workflow on the user's server.

``load_models`` builds this instead of loading FLUX when ``ALCH3MIST_COMFYUI_URL`` is set. The workflow is the
exported one (``workflows.base_image_graph`` / ``material_edit_graph``) with the call's prompt, seed, steps, guidance,
size and LoRA; the input image of the edit is uploaded first. LoRAs are the ``.safetensors`` files in the server's
``models/loras`` folder, named by their path without the extension (``alch3mist.safetensors`` → ``alch3mist``).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

from PIL import Image

from ..domain import LoraInfo
from ..errors import ComfyUIError, ModelLoadError, UnknownLora
from ..stages.image_backend import ImageEdit, TextToImage
from ..stages.progress import StageControl
from .client import ComfyUIClient
from .workflows import BaseJob, EditJob, Graph, ModelFiles, base_image_graph, material_edit_graph

if TYPE_CHECKING:
    from ..config import Preset, Settings
    from ..models.loaded import LoadedModels

__all__ = ["ComfyUIImageBackend", "ComfyUILoras", "combo_choices", "comfyui_models"]

logger = logging.getLogger(__name__)

LORA_SUFFIX = ".safetensors"
LORA_LIST_TTL_S = 10.0  # the server's LoRA list is read again after this long


class ComfyUILoras:
    """The LoRAs in the server's ``models/loras`` (``/object_info/LoraLoaderModelOnly``'s ``lora_name`` choices)."""

    def __init__(self, client: ComfyUIClient) -> None:
        self.client = client
        self._files: list[str] = []
        self._read_at = -LORA_LIST_TTL_S
        self._lock = threading.Lock()

    def available(self) -> list[LoraInfo]:
        # The server does not say a file's size or rank; those stay unknown.
        return [LoraInfo(name=_lora_name(f), file=f, size_bytes=None, rank=None) for f in self._list()]

    def activate(self, name: str | None, scale: float) -> None:
        """Nothing to switch here (the LoRA is a node of the workflow): only check that the server has it."""
        if name is not None and scale != 0:
            self.file_for(name)

    def file_for(self, name: str) -> str:
        files = {_lora_name(f): f for f in self._list()}
        if name not in files:
            raise UnknownLora(
                f"unknown LoRA {name!r} on ComfyUI at {self.client.url}; its models/loras has: "
                f"{', '.join(sorted(files)) or 'none'}"
            )
        return files[name]

    def _list(self) -> list[str]:
        with self._lock:
            if time.monotonic() - self._read_at > LORA_LIST_TTL_S:
                info = self.client.object_info("LoraLoaderModelOnly").get("LoraLoaderModelOnly")
                if not isinstance(info, dict):
                    raise ComfyUIError(self.client.url, "the server has no LoraLoaderModelOnly node")
                self._files = [f for f in combo_choices(info, "lora_name") if f.endswith(LORA_SUFFIX)]
                self._read_at = time.monotonic()
            return list(self._files)


class ComfyUIImageBackend:
    """Stage 1 and 2 calls as workflows on a ComfyUI server (see the module docstring)."""

    name = "comfyui"
    size_multiple = 16  # EmptySD3LatentImage's step; FLUX packs 2x2 latent patches of the 8x VAE

    def __init__(self, client: ComfyUIClient, files: ModelFiles, loras: ComfyUILoras) -> None:
        self.client = client
        self.files = files
        self.loras = loras

    def text_to_image(self, call: TextToImage, control: StageControl, label: str) -> Image.Image:
        job = BaseJob(call.prompt, call.seed, call.steps, call.guidance, call.size)
        image = self._run(base_image_graph(self.files, job), control, label)
        if image.size != (call.size, call.size):
            raise ComfyUIError(self.client.url, f"the base image came back {image.size}, not {call.size}x{call.size}")
        return image

    def edit_image(self, call: ImageEdit, control: StageControl, label: str) -> Image.Image:
        lora_file = self.loras.file_for(call.lora) if call.lora is not None and call.lora_scale != 0 else None
        uploaded = self.client.upload_image(call.image, f"img0_{uuid.uuid4().hex}.png")
        job = EditJob(call.prompt, call.seed, call.steps, call.guidance, lora_file, call.lora_scale)
        return self._run(material_edit_graph(self.files, job, uploaded), control, label)

    def _run(self, graph: Graph, control: StageControl, label: str) -> Image.Image:
        sampler = _only(graph, "KSampler")
        save = _only(graph, "SaveImage")
        result = self.client.run(graph.api(), control, label, progress_node=sampler)
        images = result.files(save)
        if not images:
            raise ComfyUIError(self.client.url, f"the workflow finished without an image from node {save} (SaveImage)")
        return self.client.view_image(images[0])


def comfyui_models(settings: Settings, preset: Preset) -> LoadedModels:
    """``LoadedModels`` whose images come from ComfyUI: nothing is loaded here; the server has the real models."""
    import torch

    from ..models.loaded import FULL_DEFAULTS, LoadedModels
    from .check import inventory

    assert settings.comfyui_url is not None
    if preset == "tiny":
        raise ModelLoadError(
            "preset 'tiny' builds toy models in this process, but ALCH3MIST_COMFYUI_URL sends the images to ComfyUI "
            "and its real models: unset one of the two (the preset is 'auto' or 'full' with ComfyUI)"
        )
    client = ComfyUIClient(settings.comfyui_url, timeout_s=settings.comfyui_timeout_s)
    files = ModelFiles.from_settings(settings)
    loras = ComfyUILoras(client)
    try:
        report = inventory(client, files)
        for problem in report.problems(backend_only=True):
            logger.warning("ComfyUI at %s: %s", client.url, problem)
    except ComfyUIError as error:  # a server that comes up later still works; each job says what is wrong
        logger.warning("%s (jobs will fail until it answers)", error.message)
    logger.info("images from ComfyUI at %s (FLUX is not loaded in this process)", client.url)
    return LoadedModels(
        preset="full",
        device="comfyui",
        dtype=torch.bfloat16,
        memory_plan="comfyui",
        flux=None,
        kontext=None,
        loras=loras,
        model_ids={"comfyui": client.url, "flux": files.flux_unet, "kontext": files.kontext_unet},
        defaults=FULL_DEFAULTS,
        image_server=ComfyUIImageBackend(client, files, loras),
    )


def combo_choices(info: dict[str, Any], name: str) -> list[str]:
    """A COMBO input's choices in ``/object_info``: a bare list (V1 nodes) or ``["COMBO", {"options": …}]`` (V3)."""
    for section in ("required", "optional"):
        spec = (info.get("input") or {}).get(section, {}).get(name)
        if isinstance(spec, list | tuple) and spec:
            if isinstance(spec[0], list):
                return [str(c) for c in spec[0]]
            if spec[0] == "COMBO" and len(spec) > 1 and isinstance(spec[1], dict):
                return [str(c) for c in spec[1].get("options", [])]
    return []


def _lora_name(file: str) -> str:
    return file.removesuffix(LORA_SUFFIX).replace("\\", "/")


def _only(graph: Graph, class_type: str) -> str:
    found = [str(n.id) for n in graph.nodes if n.schema.class_type == class_type]
    if len(found) != 1:
        raise ValueError(f"{graph.name} has {len(found)} {class_type} nodes, expected one")
    return found[0]
