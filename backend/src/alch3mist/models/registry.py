"""Load the models once: FLUX.1-dev (stage 1) and FLUX.1 Kontext [dev] sharing its VAE and text encoders (stage 2).

``full`` loads the real weights from the hub or local folders; ``tiny`` loads random toy components that
``tiny.py`` saved on first use — through the very same ``from_pretrained`` calls below.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from ..config import Preset, Settings
from ..errors import ModelLoadError
from .loaded import FULL_DEFAULTS, TINY_DEFAULTS, GenerationDefaults, LoadedModels, ResolvedPreset
from .lora import LoraManager
from .memory import apply_fitting_plan, choose_memory_plan, free_vram_bytes

__all__ = [
    "FULL_DEFAULTS",
    "TINY_DEFAULTS",
    "GenerationDefaults",
    "LoadedModels",
    "ResolvedPreset",
    "kontext_from_flux",
    "load_models",
    "model_ids_for",
    "resolve_preset",
]

logger = logging.getLogger(__name__)


def resolve_preset(preset: Preset, cuda_available: bool) -> ResolvedPreset:
    """``auto`` means full on a CUDA machine and tiny elsewhere — said loudly, since tiny images are noise."""
    if preset != "auto":
        return preset
    if cuda_available:
        return "full"
    logger.warning(
        "preset 'auto' found no CUDA device: using the TINY preset (random toy models, the images are noise). "
        "Set ALCH3MIST_PRESET=full on a GPU machine for real images."
    )
    return "tiny"


def load_models(settings: Settings, preset: Preset | None = None) -> LoadedModels:
    """Load both pipelines, apply the memory plan and open the LoRA folder. Slow for ``full``: call it once.

    With ``ALCH3MIST_COMFYUI_URL`` set nothing is loaded here: stages 1-2 run as workflows on that ComfyUI server.
    """
    if settings.comfyui_url:
        from ..comfyui.backend import comfyui_models

        return comfyui_models(settings, preset or settings.preset)
    cuda = torch.cuda.is_available()
    resolved = resolve_preset(preset or settings.preset, cuda)
    if resolved == "full" and not cuda:
        raise ModelLoadError(
            "preset 'full' needs a CUDA GPU: FLUX.1-dev and Kontext [dev] are 12B-parameter models (about 100 GB in "
            "float32, minutes per step on a CPU). Use preset 'tiny' (or 'auto') on this machine."
        )
    device = "cuda" if cuda else "cpu"
    dtype = torch.bfloat16 if cuda else torch.float32
    flux_id, kontext_id = model_ids_for(settings, resolved)

    flux = _load_flux(flux_id, dtype)
    kontext = _load_kontext(flux, kontext_id, dtype)
    for pipe in (flux, kontext):
        pipe.set_progress_bar_config(disable=True)  # progress goes through StageControl

    models = LoadedModels(
        preset=resolved,
        device=device,
        dtype=dtype,
        memory_plan="resident",
        flux=flux,
        kontext=kontext,
        loras=LoraManager(kontext, settings.loras_path),
        model_ids={"flux": flux_id, "kontext": kontext_id},
        defaults=TINY_DEFAULTS if resolved == "tiny" else FULL_DEFAULTS,
    )
    plan = settings.memory_plan if settings.memory_plan != "auto" else choose_memory_plan(free_vram_bytes())
    apply_fitting_plan(models, plan)
    logger.info("models ready: preset=%s device=%s dtype=%s plan=%s", resolved, device, dtype, models.memory_plan)
    return models


def model_ids_for(settings: Settings, preset: ResolvedPreset) -> tuple[str, str]:
    """(FLUX.1-dev, FLUX.1 Kontext) hub ids or folders for a preset; builds the tiny models on first use."""
    if preset == "full":
        return settings.flux_model, settings.kontext_model
    from .tiny import ensure_tiny_models

    paths = ensure_tiny_models(settings.cache_dir)
    return str(paths.flux), str(paths.kontext)


def _load_flux(model_id: str, dtype: torch.dtype) -> Any:
    from diffusers import FluxPipeline

    try:
        return FluxPipeline.from_pretrained(model_id, dtype=dtype, use_safetensors=True)
    except (OSError, ValueError) as error:
        raise ModelLoadError(_load_hint("FLUX.1-dev", model_id, "ALCH3MIST_FLUX_MODEL", error)) from error


def _load_kontext(flux: Any, model_id: str, dtype: torch.dtype) -> Any:
    from diffusers import FluxTransformer2DModel

    try:
        transformer = FluxTransformer2DModel.from_pretrained(
            model_id, subfolder="transformer", dtype=dtype, use_safetensors=True
        )
    except (OSError, ValueError) as error:
        raise ModelLoadError(_load_hint("FLUX.1 Kontext [dev]", model_id, "ALCH3MIST_KONTEXT_MODEL", error)) from error
    return kontext_from_flux(flux, transformer, dtype)


def kontext_from_flux(flux: Any, kontext_transformer: Any, dtype: torch.dtype) -> Any:
    """A FluxKontextPipeline on ``flux``'s VAE, text encoders, tokenizers and scheduler, with its own transformer."""
    from diffusers import FluxKontextPipeline

    # Without transformer= from_pipe would share FLUX.1-dev's transformer too; without dtype= it casts the
    # shared components to float32.
    return FluxKontextPipeline.from_pipe(flux, transformer=kontext_transformer, dtype=dtype)


def _load_hint(what: str, model_id: str, env_var: str, error: Exception) -> str:
    return (
        f"cannot load {what} from {model_id!r}: {error}. Point {env_var} at a local folder with the weights, or log in "
        "to the Hugging Face hub and accept the model's licence (the FLUX.1 [dev] repos are gated)."
    )
