"""Stage 1, text → image: FLUX.1-dev draws the plain object (centred, whole, plain background) from ``base_prompt``.

The image is made by the image backend ``load_models`` chose (``image_backend.py``): diffusers in this process, or
the user's ComfyUI when ``ALCH3MIST_COMFYUI_URL`` is set — the same call either way.
"""

from __future__ import annotations

import logging

from PIL import Image

from ..errors import InvalidRequest
from ..models.registry import LoadedModels
from .image_backend import TextToImage, image_backend
from .progress import StageControl

logger = logging.getLogger(__name__)

LABEL = "base image"


class BaseImageStage:
    def __init__(self, models: LoadedModels) -> None:
        self.models = models
        self.backend = image_backend(models)

    def run(
        self, prompt: str, *, seed: int, steps: int, guidance: float, size: int, control: StageControl
    ) -> Image.Image:
        """A ``size`` x ``size`` image of ``prompt``; the same prompt, seed and preset give the same pixels."""
        # 1. Check inputs
        if not prompt.strip():
            raise InvalidRequest("the base prompt is empty")
        if steps < 1:
            raise InvalidRequest(f"steps must be at least 1, got {steps}")
        multiple_of = self.backend.size_multiple
        if size < multiple_of or size % multiple_of:
            raise InvalidRequest(f"size must be a positive multiple of {multiple_of}, got {size}")
        control.raise_if_cancelled()

        # 2. Denoise on the backend, reporting each step and stopping at the next one when cancelled
        control.report(0.0, LABEL)
        call = TextToImage(prompt=prompt, seed=seed, steps=steps, guidance=guidance, size=size)
        image = self.backend.text_to_image(call, control, LABEL)

        # 3. An interrupted pipeline still returns (a half-denoised image): turn it into Cancelled
        control.raise_if_cancelled()
        size_text = f"{image.width}x{image.height}"
        logger.info("base image %s, %d steps, seed %d (%s)", size_text, steps, seed, self.backend.name)
        return image
