"""Stage 2, material edit: FLUX.1 Kontext [dev] + an Alch3mist LoRA repaints the object's surface.

The output size follows ``models.defaults.kontext_max_area`` (1 MP on the full preset) at the input's aspect ratio,
snapped to Kontext's multiple of 16 — not the input image's own size. Callers resize if they need a given size.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import torch
from PIL import Image

from ..errors import InvalidRequest
from ..models.memory import run_with_oom_retry
from ..models.registry import LoadedModels
from .progress import StageControl

logger = logging.getLogger(__name__)

LABEL = "applying material"


class MaterialEditStage:
    def __init__(self, models: LoadedModels) -> None:
        self.models = models

    def run(
        self,
        image: Image.Image,
        edit_prompt: str,
        *,
        seed: int,
        steps: int,
        guidance: float,
        lora: str | None,
        lora_scale: float,
        control: StageControl,
    ) -> Image.Image:
        """``image`` with the material of ``edit_prompt``; ``lora=None`` or ``lora_scale=0`` is the bare Kontext."""
        pipe = self.models.kontext
        defaults = self.models.defaults

        # 1. Check inputs
        if not edit_prompt.strip():
            raise InvalidRequest("the edit prompt is empty")
        if steps < 1:
            raise InvalidRequest(f"steps must be at least 1, got {steps}")
        if lora_scale < 0:
            raise InvalidRequest(f"the LoRA scale must be 0 or more, got {lora_scale}")
        control.raise_if_cancelled()

        # 2. Activate the LoRA (loaded once, then switched by name; raises UnknownLora / InvalidLora)
        self.models.loras.activate(lora, lora_scale)

        # 3. Seed on the device the latents are drawn on
        generator = torch.Generator(device=self.models.device)
        source = image.convert("RGB")
        if not defaults.kontext_auto_resize:
            # Kontext encodes its input at the size it is given when not snapping it to its ~1 MP resolutions:
            # bring a large input down to the output's area first.
            source = fit_to_area(source, defaults.kontext_max_area, multiple_of=pipe.vae_scale_factor * 2)

        # 4. Denoise, reporting each step and stopping at the next one when cancelled
        def denoise() -> Any:
            with _cache_context(pipe.transformer):
                return pipe(
                    image=source,
                    prompt=edit_prompt,
                    # Only the aspect ratio of height/width counts: Kontext rescales them to max_area.
                    height=source.height,
                    width=source.width,
                    num_inference_steps=steps,
                    guidance_scale=guidance,
                    generator=generator.manual_seed(seed),
                    max_area=defaults.kontext_max_area,
                    _auto_resize=defaults.kontext_auto_resize,
                    callback_on_step_end=control.diffusers_callback(steps, LABEL),
                )

        control.report(0.0, LABEL)
        result = run_with_oom_retry(self.models, pipe, denoise)

        # 5. An interrupted pipeline still returns a half-denoised image: turn it into Cancelled
        control.raise_if_cancelled()
        edited: Image.Image = result.images[0]
        logger.info("material edit %dx%d, %d steps, seed %d", edited.width, edited.height, steps, seed)
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
