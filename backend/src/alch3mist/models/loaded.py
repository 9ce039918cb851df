"""What ``load_models`` hands out: the loaded pipelines and the per-preset defaults (types only, no loading)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

import torch

from ..domain import LoraInfo

if TYPE_CHECKING:
    from ..stages.image_backend import ImageBackend

__all__ = ["FULL_DEFAULTS", "TINY_DEFAULTS", "GenerationDefaults", "LoadedModels", "LoraCatalogue", "ResolvedPreset"]

ResolvedPreset = Literal["tiny", "full"]


@dataclass
class GenerationDefaults:
    """Per-preset defaults a job falls back to when it does not say."""

    steps: int
    guidance: float
    size: int
    edit_steps: int
    edit_guidance: float
    kontext_max_area: int
    # Kontext snaps its input image to one of the resolutions it was trained on (all ~1 MP); the tiny preset keeps
    # its toy-sized input instead, or a 64x64 image would be encoded at 1 MP.
    kontext_auto_resize: bool = True


FULL_DEFAULTS = GenerationDefaults(
    steps=28, guidance=3.5, size=1024, edit_steps=28, edit_guidance=2.5, kontext_max_area=1024**2
)
TINY_DEFAULTS = GenerationDefaults(
    steps=2, guidance=3.5, size=64, edit_steps=2, edit_guidance=2.5, kontext_max_area=96 * 96, kontext_auto_resize=False
)


class LoraCatalogue(Protocol):
    """The LoRAs a job may name: ``LoraManager`` (the local folder) or a ComfyUI server's ``models/loras``."""

    def available(self) -> list[LoraInfo]: ...

    def activate(self, name: str | None, scale: float) -> None: ...


@dataclass
class LoadedModels:
    preset: ResolvedPreset
    device: str
    dtype: torch.dtype
    memory_plan: str
    flux: Any  # diffusers.FluxPipeline (diffusers ships no type hints)
    kontext: Any  # diffusers.FluxKontextPipeline, sharing flux's VAE, text encoders and tokenizers
    loras: LoraCatalogue
    model_ids: dict[str, str]
    defaults: GenerationDefaults
    # Set when stages 1-2 run on a server (ComfyUI) instead: flux and kontext are then None, nothing is loaded here.
    image_server: ImageBackend | None = None
