"""Stage 1, text → image: FLUX.1-dev draws the plain object (centred, whole, plain background) from ``base_prompt``."""

from __future__ import annotations

import logging

import torch
from PIL import Image

from ..errors import InvalidRequest
from ..models.memory import run_with_oom_retry
from ..models.registry import LoadedModels
from .progress import StageControl

logger = logging.getLogger(__name__)

LABEL = "base image"


class BaseImageStage:
    def __init__(self, models: LoadedModels) -> None:
        self.models = models

    def run(
        self, prompt: str, *, seed: int, steps: int, guidance: float, size: int, control: StageControl
    ) -> Image.Image:
        """A ``size`` x ``size`` image of ``prompt``; the same prompt, seed and preset give the same pixels."""
        pipe = self.models.flux

        # 1. Check inputs
        if not prompt.strip():
            raise InvalidRequest("the base prompt is empty")
        if steps < 1:
            raise InvalidRequest(f"steps must be at least 1, got {steps}")
        multiple_of = pipe.vae_scale_factor * 2
        if size < multiple_of or size % multiple_of:
            raise InvalidRequest(f"size must be a positive multiple of {multiple_of}, got {size}")
        control.raise_if_cancelled()

        # 2. Seed on the device the latents are drawn on (the GPU, even under CPU offload): a seed is one image
        generator = torch.Generator(device=self.models.device)

        # 3. Denoise, reporting each step and stopping at the next one when cancelled
        control.report(0.0, LABEL)
        result = run_with_oom_retry(
            self.models,
            pipe,
            lambda: pipe(
                prompt=prompt,
                height=size,
                width=size,
                num_inference_steps=steps,
                guidance_scale=guidance,
                generator=generator.manual_seed(seed),
                callback_on_step_end=control.diffusers_callback(steps, LABEL),
            ),
        )

        # 4. An interrupted pipeline still returns (a half-denoised image): turn it into Cancelled
        control.raise_if_cancelled()
        image: Image.Image = result.images[0]
        logger.info("base image %dx%d, %d steps, seed %d", image.width, image.height, steps, seed)
        return image
