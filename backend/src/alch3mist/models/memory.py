"""Memory plans: where the FLUX.1-dev and Kontext weights live between and during denoising steps.

From fastest to lightest:

resident            everything on the GPU (both transformers, T5-XXL, CLIP, VAE: ~54 GiB in bf16)
model_offload       one whole model on the GPU at a time (diffusers ``enable_model_cpu_offload``); the largest,
                    a 12B transformer, is 22 GiB in bf16, so this needs ~28 GiB free with 1 MP activations
group_offload       blocks streamed to the GPU one group at a time, overlapped with compute (diffusers group offload)
sequential_offload  single layers streamed to the GPU (group offload at leaf level): slowest, smallest

The two pipelines share the VAE and both text encoders (``FluxKontextPipeline.from_pipe``), so a plan is applied
to every distinct module once. ``enable_model_cpu_offload`` hooks belong to one pipeline, so under
``model_offload`` the pipeline about to run installs its hooks first (``prepare_pipeline``).
On the CPU there is nothing to offload to: the only plan is ``resident`` (and diffusers' offload calls raise there).
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

import torch

from ..errors import ModelLoadError, OutOfMemory

if TYPE_CHECKING:
    from .loaded import LoadedModels

logger = logging.getLogger(__name__)

GiB = 1024**3
PLANS: tuple[str, ...] = ("resident", "model_offload", "group_offload", "sequential_offload")
# Free VRAM each plan needs for FLUX.1-dev + Kontext at 1 MP in bf16 (weights above + activations + VAE decode).
RESIDENT_MIN_FREE = 64 * GiB
MODEL_OFFLOAD_MIN_FREE = 28 * GiB
GROUP_OFFLOAD_MIN_FREE = 6 * GiB

T = TypeVar("T")


def choose_memory_plan(free_vram_bytes: int | None) -> str:
    """The fastest plan that fits ``free_vram_bytes``; ``None`` (no CUDA device) means ``resident`` on the CPU."""
    if free_vram_bytes is None or free_vram_bytes >= RESIDENT_MIN_FREE:
        return "resident"
    if free_vram_bytes >= MODEL_OFFLOAD_MIN_FREE:
        return "model_offload"
    if free_vram_bytes >= GROUP_OFFLOAD_MIN_FREE:
        return "group_offload"
    return "sequential_offload"


def free_vram_bytes() -> int | None:
    """Free memory on the current CUDA device, or ``None`` without one."""
    if not torch.cuda.is_available():
        return None
    free, _total = torch.cuda.mem_get_info()
    return int(free)


def next_lighter_plan(plan: str) -> str | None:
    index = PLANS.index(plan)
    return PLANS[index + 1] if index + 1 < len(PLANS) else None


def apply_memory_plan(models: LoadedModels, plan: str) -> None:
    """Undo the current plan's hooks and put every module where ``plan`` wants it."""
    _check_plan(models, plan)
    _remove_offloading(models)
    if plan == "resident":
        _move_all(models, models.device)
    else:
        # Every offload plan starts from host memory: a model the previous plan left on the GPU (the other
        # pipeline's transformer, say) would hold its VRAM for nothing.
        _move_all(models, "cpu")
        _release_cached_memory()
    if plan in ("group_offload", "sequential_offload"):
        offload_type = "block_level" if plan == "group_offload" else "leaf_level"
        for module in unique_modules(models):
            _enable_group_offload(module, torch.device(models.device), offload_type)
    # model_offload: hooks are installed per pipeline by prepare_pipeline, right before it runs.
    models.memory_plan = plan
    logger.info("memory plan: %s on %s", plan, models.device)


def apply_fitting_plan(models: LoadedModels, plan: str) -> None:
    """Apply ``plan``, or the next lighter one while placing the weights runs out of CUDA memory (VRAM other
    processes took since it was measured)."""
    while True:
        try:
            apply_memory_plan(models, plan)
            return
        except torch.OutOfMemoryError as error:
            lighter = next_lighter_plan(plan)
            if lighter is None:
                raise _out_of_memory(plan, None) from error
            logger.warning("CUDA out of memory placing the models for plan %s; trying %s", plan, lighter)
            plan = lighter


def _check_plan(models: LoadedModels, plan: str) -> None:
    if plan not in PLANS:
        raise ModelLoadError(f"unknown memory plan {plan!r}; choose one of {', '.join(PLANS)}")
    if torch.device(models.device).type != "cuda" and plan != "resident":
        raise ModelLoadError(
            f"memory plan {plan!r} offloads to the CPU from a GPU, but the models run on {models.device}; "
            "unset ALCH3MIST_MEMORY_PLAN (or set it to 'resident') on a machine without CUDA"
        )


def _move_all(models: LoadedModels, device: str) -> None:
    for module in unique_modules(models):
        module.to(device)


def prepare_pipeline(models: LoadedModels, pipe: Any) -> None:
    """Call right before running ``pipe``: under model_offload it installs that pipeline's offload hooks.

    The hooks chain one pipeline's models, and the two pipelines share three of them; loading a LoRA also re-installs
    them. Re-installing before every call is the one state that is always right, and it is cheap: after a call every
    model is back on the CPU already.
    """
    if models.memory_plan == "model_offload":
        for other in (models.flux, models.kontext):
            other.remove_all_hooks()
        pipe.enable_model_cpu_offload(device=models.device)


def run_with_oom_retry(models: LoadedModels, pipe: Any, call: Callable[[], T]) -> T:
    """Run ``call``; on CUDA out-of-memory retry once on the next lighter plan, then raise OutOfMemory."""
    prepare_pipeline(models, pipe)
    try:
        return call()
    except torch.OutOfMemoryError as first:
        failed_plan = models.memory_plan
        lighter = next_lighter_plan(failed_plan)
        if lighter is None:
            raise _out_of_memory(failed_plan, None) from first
        logger.warning("CUDA out of memory on plan %s; retrying once with %s", failed_plan, lighter)
    # Outside the except block, so the failed attempt's tensors (held by the traceback) can be freed.
    _release_cached_memory()
    apply_memory_plan(models, lighter)
    prepare_pipeline(models, pipe)
    try:
        return call()
    except torch.OutOfMemoryError as second:
        raise _out_of_memory(failed_plan, lighter) from second


def _out_of_memory(plan: str, retried: str | None) -> OutOfMemory:
    tried = f"plan {plan!r}" + (f" and again with {retried!r}" if retried else "")
    return OutOfMemory(
        f"CUDA out of memory with memory {tried}. Lower the image size or steps, free the GPU of other processes, "
        "or force a lighter plan with ALCH3MIST_MEMORY_PLAN=group_offload or sequential_offload."
    )


def unique_modules(models: LoadedModels) -> Iterator[torch.nn.Module]:
    """Every model of both pipelines once (the shared VAE and text encoders are the same objects)."""
    seen: set[int] = set()
    for pipe in (models.flux, models.kontext):
        for component in pipe.components.values():
            if isinstance(component, torch.nn.Module) and id(component) not in seen:
                seen.add(id(component))
                yield component


# transformers' text encoders keep their block lists one module down (``encoder.block`` / ``encoder.layers``);
# diffusers only groups direct children, so without this T5-XXL (9 GiB) would be onloaded whole.
TEXT_ENCODER_BLOCK_MODULES = {"T5EncoderModel": ["encoder"], "CLIPTextModel": ["encoder"]}


def _enable_group_offload(module: torch.nn.Module, device: torch.device, offload_type: str) -> None:
    from diffusers.hooks.group_offloading import apply_group_offloading

    block_level = offload_type == "block_level"
    apply_group_offloading(
        module,
        onload_device=device,
        offload_type=offload_type,
        num_blocks_per_group=1 if block_level else None,  # one block up at a time keeps the peak smallest
        block_modules=TEXT_ENCODER_BLOCK_MODULES.get(type(module).__name__) if block_level else None,
        use_stream=device.type == "cuda",  # overlap the next group's upload with this one's compute
        low_cpu_mem_usage=True,
    )


def _remove_offloading(models: LoadedModels) -> None:
    from diffusers.hooks.group_offloading import (
        _GROUP_OFFLOADING,
        _LAYER_EXECUTION_TRACKER,
        _LAZY_PREFETCH_GROUP_OFFLOADING,
        _is_group_offload_enabled,
    )
    from diffusers.hooks.hooks import HookRegistry

    for pipe in (models.flux, models.kontext):
        pipe.remove_all_hooks()
    for module in unique_modules(models):
        if _is_group_offload_enabled(module):
            # diffusers has no public "disable group offload"; these are the hooks its own re-apply helper removes.
            registry = HookRegistry.check_if_exists_or_initialize(module)
            for hook_name in (_GROUP_OFFLOADING, _LAYER_EXECUTION_TRACKER, _LAZY_PREFETCH_GROUP_OFFLOADING):
                registry.remove_hook(hook_name, recurse=True)
            module.to("cpu")


def _release_cached_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
