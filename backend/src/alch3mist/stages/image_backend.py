"""Where stages 1–2 make their images: diffusers in this process, or a ComfyUI server.

The two stages check their inputs, then hand one call (``TextToImage`` / ``ImageEdit``: the same prompt, seed, steps,
guidance, size and LoRA choice for both backends) to ``image_backend(models)``:

* ``DiffusersImageBackend`` — the FLUX.1-dev and Kontext pipelines ``load_models`` loaded, with the memory plan's
  out-of-memory retry, the LoRA switch and diffusers' step callback for progress and cancel;
* ``ComfyUIImageBackend`` (``alch3mist.comfyui.backend``) — the same calls as API-format workflows on the user's
  ComfyUI, chosen by ``load_models`` when ``ALCH3MIST_COMFYUI_URL`` is set.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from PIL import Image

from .progress import StageControl

if TYPE_CHECKING:
    from ..models.loaded import LoadedModels

__all__ = ["DiffusersImageBackend", "ImageBackend", "ImageEdit", "TextToImage", "fit_to_area", "image_backend"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TextToImage:
    """Stage 1's call: a ``size`` x ``size`` image of ``prompt``."""

    prompt: str
    seed: int
    steps: int
    guidance: float
    size: int


@dataclass(frozen=True)
class ImageEdit:
    """Stage 2's call: ``image`` with the material of ``prompt``; ``lora=None`` or ``lora_scale=0`` is bare Kontext."""

    image: Image.Image
    prompt: str
    seed: int
    steps: int
    guidance: float
    lora: str | None
    lora_scale: float


class ImageBackend(Protocol):
    """What the two FLUX stages call. Progress and cancel go through ``control``; the label names the stage."""

    name: str
    size_multiple: int  # base image sides must be a multiple of this

    def text_to_image(self, call: TextToImage, control: StageControl, label: str) -> Image.Image: ...

    def edit_image(self, call: ImageEdit, control: StageControl, label: str) -> Image.Image: ...


def image_backend(models: LoadedModels) -> ImageBackend:
    """The backend ``load_models`` chose: a server (ComfyUI) when one is configured, else diffusers in-process."""
    return models.image_server if models.image_server is not None else DiffusersImageBackend(models)


class DiffusersImageBackend:
    """FLUX.1-dev and FLUX.1 Kontext [dev] (+ LoRA) in this process, on the pipelines ``load_models`` loaded."""

    name = "diffusers"

    def __init__(self, models: LoadedModels) -> None:
        self.models = models
        self.size_multiple = int(models.flux.vae_scale_factor) * 2

    def text_to_image(self, call: TextToImage, control: StageControl, label: str) -> Image.Image:
        import torch

        from ..models.memory import run_with_oom_retry

        pipe = self.models.flux
        # Seed on the device the latents are drawn on (the GPU, even under CPU offload): a seed is one image
        generator = torch.Generator(device=self.models.device)
        result = run_with_oom_retry(
            self.models,
            pipe,
            lambda: pipe(
                prompt=call.prompt,
                height=call.size,
                width=call.size,
                num_inference_steps=call.steps,
                guidance_scale=call.guidance,
                generator=generator.manual_seed(call.seed),
                callback_on_step_end=control.diffusers_callback(call.steps, label),
            ),
        )
        image: Image.Image = result.images[0]
        return image

    def edit_image(self, call: ImageEdit, control: StageControl, label: str) -> Image.Image:
        import torch

        from ..models.memory import run_with_oom_retry

        pipe = self.models.kontext
        defaults = self.models.defaults
        # Activate the LoRA (loaded once, then switched by name; raises UnknownLora / InvalidLora)
        self.models.loras.activate(call.lora, call.lora_scale)
        generator = torch.Generator(device=self.models.device)
        source = call.image.convert("RGB")
        if not defaults.kontext_auto_resize:
            # Kontext encodes its input at the size it is given when not snapping it to its ~1 MP resolutions:
            # bring a large input down to the output's area first.
            source = fit_to_area(source, defaults.kontext_max_area, multiple_of=pipe.vae_scale_factor * 2)

        def denoise() -> Any:
            with _cache_context(pipe.transformer):
                return pipe(
                    image=source,
                    prompt=call.prompt,
                    # Only the aspect ratio of height/width counts: Kontext rescales them to max_area.
                    height=source.height,
                    width=source.width,
                    num_inference_steps=call.steps,
                    guidance_scale=call.guidance,
                    generator=generator.manual_seed(call.seed),
                    max_area=defaults.kontext_max_area,
                    _auto_resize=defaults.kontext_auto_resize,
                    callback_on_step_end=control.diffusers_callback(call.steps, label),
                )

        result = run_with_oom_retry(self.models, pipe, denoise)
        edited: Image.Image = result.images[0]
        return edited


def edit_size(width: int, height: int, max_area: int, multiple_of: int = 16) -> tuple[int, int]:
    """The (width, height) Kontext works at — and returns — for an input of this size: about ``max_area`` pixels at
    its aspect ratio, each side a multiple of ``multiple_of`` (FLUX: 16). FluxKontextPipeline's own arithmetic."""
    aspect_ratio = width / height
    return (
        max(multiple_of, round((max_area * aspect_ratio) ** 0.5) // multiple_of * multiple_of),
        max(multiple_of, round((max_area / aspect_ratio) ** 0.5) // multiple_of * multiple_of),
    )


def fit_to_area(image: Image.Image, max_area: int, multiple_of: int) -> Image.Image:
    """``image`` resized to about ``max_area`` pixels at its aspect ratio, sides a multiple of ``multiple_of``.

    The same arithmetic as FluxKontextPipeline's output size.
    """
    width, height = edit_size(image.width, image.height, max_area, multiple_of)
    if (width, height) == image.size:
        return image
    return image.resize((width, height), Image.Resampling.LANCZOS)


def _cache_context(transformer: Any) -> contextlib.AbstractContextManager[Any]:
    # FLUX.1-dev's denoising loop opens a cache context itself; Kontext's does not, and a step cache such as
    # First Block Cache (enabled by the benchmark or a deployment) fails without one.
    if getattr(transformer, "is_cache_enabled", False):
        return transformer.cache_context("cond")  # type: ignore[no-any-return]
    return contextlib.nullcontext()
