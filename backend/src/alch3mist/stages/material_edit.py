"""Stage 2, material edit: FLUX.1 Kontext [dev] + an Alch3mist LoRA repaints the object's surface.

The output size follows ``models.defaults.kontext_max_area`` (1 MP on the full preset) at the input's aspect ratio,
snapped to Kontext's multiple of 16 — not the input image's own size. Callers resize if they need a given size.
The edit is made by the image backend ``load_models`` chose (``image_backend.py``): diffusers in this process, or the
user's ComfyUI (whose FluxKontextImageScale snaps the input to Kontext's ~1 MP resolutions the same way).
"""

from __future__ import annotations

import logging

from PIL import Image

from ..errors import InvalidRequest
from ..models.registry import LoadedModels
from .image_backend import ImageEdit, fit_to_area, image_backend
from .progress import StageControl

__all__ = ["LABEL", "MaterialEditStage", "fit_to_area"]

logger = logging.getLogger(__name__)

LABEL = "applying material"


class MaterialEditStage:
    def __init__(self, models: LoadedModels) -> None:
        self.models = models
        self.backend = image_backend(models)

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
        # 1. Check inputs
        if not edit_prompt.strip():
            raise InvalidRequest("the edit prompt is empty")
        if steps < 1:
            raise InvalidRequest(f"steps must be at least 1, got {steps}")
        if lora_scale < 0:
            raise InvalidRequest(f"the LoRA scale must be 0 or more, got {lora_scale}")
        control.raise_if_cancelled()

        # 2. Denoise on the backend (which switches to the LoRA), reporting each step, stopping when cancelled
        control.report(0.0, LABEL)
        call = ImageEdit(
            image=image, prompt=edit_prompt, seed=seed, steps=steps, guidance=guidance, lora=lora, lora_scale=lora_scale
        )
        edited = self.backend.edit_image(call, control, LABEL)

        # 3. An interrupted pipeline still returns a half-denoised image: turn it into Cancelled
        control.raise_if_cancelled()
        logger.info(
            "material edit %dx%d, %d steps, seed %d (%s)", edited.width, edited.height, steps, seed, self.backend.name
        )
        return edited
