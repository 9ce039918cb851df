"""The Hunyuan3D-2 shape model (``hy3dgen``) for the hunyuan3d-local engine and the 3D LoRA trainer.

- ``import_hy3dgen`` imports ``hy3dgen.shapegen``; on a CPU-only torch it first makes torchvision's pure-Python part
  importable (below).
- ``load_shape_pipeline`` is hy3dgen's own loader — ``smart_load_model`` (hub id or local folder) then
  ``Hunyuan3DDiTFlowMatchingPipeline.from_single_file``, exactly what its ``from_pretrained`` does — safetensors only,
  after checking that ``config.yaml`` names only hy3dgen's own classes (hy3dgen instantiates whatever class the config
  names, so a hostile config would otherwise run arbitrary code).
- ``shape_source`` says where the weights are for a preset; ``tiny`` builds the tiny model on first use
  (``models.tiny_hunyuan3d``) and is then loaded through the very same calls.

torchvision on a CPU-only torch: hy3dgen's image conditioner imports ``torchvision.transforms`` (Resize, CenterCrop,
Normalize — pure PyTorch). torchvision's PyPI wheels are CUDA builds whose compiled ops cannot load against a CPU torch,
and its import then stops at ``register_fake("torchvision::nms")`` ("operator torchvision::nms does not exist").
scripts/install-hunyuan3d.sh keeps such a torchvision in ``<venv>/hy3dgen-torchvision`` (so transformers, which
imports torchvision whenever it is installed, never meets it); ``import_hy3dgen`` puts that folder on ``sys.path``
and, only when that exact error occurs, declares the two op schemas torchvision fakes (``nms``, ``qnms``) and imports
it again. The ops themselves stay unavailable (calling them raises); nothing here calls them. A GPU box installs the
normal torchvision and none of this runs.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from ..config import Settings
from ..errors import ModelLoadError

logger = logging.getLogger(__name__)

__all__ = [
    "HY3DGEN_TARGETS",
    "ShapeSource",
    "check_shape_config",
    "import_hy3dgen",
    "load_shape_pipeline",
    "shape_source",
]

INSTALL_HINT = "install it with: bash scripts/install-hunyuan3d.sh (hy3dgen==2.0.2 and the few modules it imports)"
TORCHVISION_SIDE_DIR = "hy3dgen-torchvision"
MISSING_OPS_ERROR = "operator torchvision::nms does not exist"
# The ops torchvision's _meta_registrations.py fakes unconditionally (the others are guarded by _has_ops()).
TORCHVISION_FAKED_OPS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)
# Every class a Hunyuan3D-2 config.yaml may name (tencent/Hunyuan3D-2, -2mini, -2mv and their fast/turbo variants).
HY3DGEN_TARGETS = frozenset(
    {
        "hy3dgen.shapegen.models.Hunyuan3DDiT",
        "hy3dgen.shapegen.models.ShapeVAE",
        "hy3dgen.shapegen.models.SingleImageEncoder",
        "hy3dgen.shapegen.models.DualImageEncoder",
        "hy3dgen.shapegen.schedulers.FlowMatchEulerDiscreteScheduler",
        "hy3dgen.shapegen.schedulers.ConsistencyFlowMatchEulerDiscreteScheduler",
        "hy3dgen.shapegen.preprocessors.ImageProcessorV2",
        "hy3dgen.shapegen.preprocessors.MVImageProcessorV2",
    }
)
CONFIG_SECTIONS = ("model", "vae", "conditioner", "scheduler", "image_processor")
FULL_MODEL_DTYPE = torch.float16  # hy3dgen's default and the published fp16 variant's dtype
CONVERTED_DIR = "hunyuan3d-converted"
# transformers 5 renamed DINOv2's modules. Checkpoints saved with transformers 4 (tencent/Hunyuan3D-2, January 2025)
# use the old names, and hy3dgen loads the conditioner with a strict load_state_dict, so they would not load. These are
# the renames of transformers' own conversion_mapping.py ("Dinov2Model" entry), for the conditioner's keys.
DINOV2_RENAMES = (
    (".attention.attention.query.", ".attention.q_proj."),
    (".attention.attention.key.", ".attention.k_proj."),
    (".attention.attention.value.", ".attention.v_proj."),
    (".attention.output.dense.", ".attention.o_proj."),
    (".mlp.weights_out.", ".mlp.down_proj."),
)
DINOV2_FUSED_SWIGLU = (".mlp.weights_in.", (".mlp.gate_proj.", ".mlp.up_proj."))  # split in two along dim 0

_declared_ops: list[Any] = []  # keeps the torch.library definitions alive for the life of the process


@dataclass(frozen=True)
class ShapeSource:
    """Where a shape model is: hy3dgen's (model_path, subfolder, variant) triple, plus the preset it stands for."""

    model: str  # hub id or local folder
    subfolder: str
    variant: str | None  # "fp16" → model.fp16.safetensors; None → model.safetensors
    preset: str


def shape_source(settings: Settings, preset: str, cuda: bool) -> ShapeSource:
    """The weights for a resolved preset: the configured hub id/folder, or the tiny model (built on first use)."""
    if preset == "tiny":
        from .tiny_hunyuan3d import SUBFOLDER, ensure_tiny_shape_model

        return ShapeSource(str(ensure_tiny_shape_model(settings.cache_dir)), SUBFOLDER, None, "tiny")
    return ShapeSource(settings.hunyuan3d_model, settings.hunyuan3d_subfolder, "fp16" if cuda else None, "full")


def import_hy3dgen() -> ModuleType:
    """``hy3dgen.shapegen``; ``ModelLoadError`` with the install command when it (or what it imports) is missing."""
    try:
        _make_torchvision_importable()
        return importlib.import_module("hy3dgen.shapegen")
    except ImportError as error:
        raise ModelLoadError(f"hunyuan3d-local cannot import hy3dgen ({error}); {INSTALL_HINT}") from error


def hy3dgen_installed() -> bool:
    """Cheap check (nothing imported): is the hy3dgen package there at all?"""
    return importlib.util.find_spec("hy3dgen") is not None


def without_torchvision_side_dir(path: list[str]) -> list[str]:
    """``path`` (a ``sys.path``) without the side folder: a spawned process inherits its parent's ``sys.path``, and must
    not meet that torchvision before ``import_hy3dgen`` has declared its ops (transformers would import it first)."""
    side = str(Path(sys.prefix) / TORCHVISION_SIDE_DIR)
    return [entry for entry in path if entry != side]


def _make_torchvision_importable() -> None:
    if "torchvision" in sys.modules:
        return
    if importlib.util.find_spec("torchvision") is None:
        side = Path(sys.prefix) / TORCHVISION_SIDE_DIR
        if not side.is_dir():
            return  # hy3dgen's own import then names the missing module
        sys.path.append(str(side))
    try:
        importlib.import_module("torchvision")
    except RuntimeError as error:
        if MISSING_OPS_ERROR not in str(error) or torch.version.cuda is not None:
            raise
        logger.info("torchvision's compiled ops do not load on this CPU-only torch: declaring their schemas")
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]  # the failed import left half-initialised modules behind
        library = torch.library.Library("torchvision", "DEF")
        for schema in TORCHVISION_FAKED_OPS:
            library.define(schema)
        _declared_ops.append(library)
        importlib.import_module("torchvision")


def check_shape_config(config_path: Path) -> dict[str, Any]:
    """The parsed ``config.yaml``; ``ModelLoadError`` unless every section names one of hy3dgen's own classes."""
    import yaml

    try:
        config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise ModelLoadError(f"cannot read the shape model's config {config_path}: {error}") from error
    if not isinstance(config, dict):
        raise ModelLoadError(f"{config_path} is not a Hunyuan3D-2 config (no sections)")
    for section in CONFIG_SECTIONS:
        target = (config.get(section) or {}).get("target") if isinstance(config.get(section), dict) else None
        if target not in HY3DGEN_TARGETS:
            raise ModelLoadError(
                f"refusing {config_path}: section {section!r} names {target!r}, which is not one of hy3dgen's shape "
                "classes (the loader instantiates whatever the config names)"
            )
    return config


def load_shape_pipeline(source: ShapeSource, device: torch.device, dtype: torch.dtype, cache_dir: Path) -> Any:
    """hy3dgen's ``Hunyuan3DDiTFlowMatchingPipeline`` from ``source``, on ``device`` in ``dtype`` (safetensors only).

    A checkpoint whose conditioner has transformers-4 DINOv2 names is converted once into
    ``<cache_dir>/hunyuan3d-converted/`` and loaded from there (same loader).
    """
    shapegen = import_hy3dgen()
    from hy3dgen.shapegen.utils import smart_load_model

    # smart_load_model joins a relative path onto its own cache folder (~/.cache/hy3dgen): make local folders absolute
    model = str(Path(source.model).resolve()) if Path(source.model).is_dir() else source.model
    try:
        config_path, ckpt_path = smart_load_model(
            model, subfolder=source.subfolder, use_safetensors=True, variant=source.variant
        )
    except Exception as error:  # a local path, the hub client and the network raise many different types
        raise ModelLoadError(_load_hint(source, error)) from error
    check_shape_config(Path(config_path))
    if not Path(ckpt_path).is_file():
        raise ModelLoadError(_load_hint(source, FileNotFoundError(f"{ckpt_path} is missing")))
    ckpt_path = str(with_current_dinov2_names(Path(ckpt_path), cache_dir / CONVERTED_DIR))
    try:
        pipe = shapegen.Hunyuan3DDiTFlowMatchingPipeline.from_single_file(
            ckpt_path,
            config_path,
            device=str(device),
            dtype=dtype,
            use_safetensors=True,
            # what from_pretrained records too (hy3dgen's enable_flashvdm reads it)
            from_pretrained_kwargs={
                "model_path": model,
                "subfolder": source.subfolder,
                "use_safetensors": True,
                "variant": source.variant,
                "dtype": dtype,
                "device": str(device),
            },
        )
    except (OSError, RuntimeError, KeyError, ValueError, TypeError) as error:
        raise ModelLoadError(_load_hint(source, error)) from error
    for module in (pipe.model, pipe.vae, pipe.conditioner):
        module.eval()  # built from configs, they start in train mode (dropout, drop-path)
    logger.info("hunyuan3d-local: %s/%s loaded on %s (%s)", source.model, source.subfolder, device, dtype)
    return pipe


def with_current_dinov2_names(ckpt_path: Path, converted_root: Path) -> Path:
    """``ckpt_path`` itself, or a copy whose ``conditioner.*`` keys carry the installed transformers' DINOv2 names."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(ckpt_path), framework="pt") as handle:
        keys = list(handle.keys())
    if not any(key.startswith("conditioner.") and _old_dinov2_key(key) for key in keys):
        return ckpt_path
    stat = ckpt_path.stat()
    target = converted_root / f"{ckpt_path.parent.name}-{stat.st_size}-{stat.st_mtime_ns}" / ckpt_path.name
    if target.is_file():
        return target
    logger.info("hunyuan3d-local: renaming the conditioner's DINOv2 keys for this transformers (once) -> %s", target)
    tensors = load_file(str(ckpt_path))
    converted: dict[str, torch.Tensor] = {}
    for key, value in tensors.items():
        converted.update(rename_dinov2_key(key, value) if key.startswith("conditioner.") else {key: value})
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    save_file(converted, str(partial))
    partial.replace(target)
    return target


def _old_dinov2_key(key: str) -> bool:
    return any(old in key for old, _ in DINOV2_RENAMES) or DINOV2_FUSED_SWIGLU[0] in key


def rename_dinov2_key(key: str, value: torch.Tensor) -> dict[str, torch.Tensor]:
    """One transformers-4 DINOv2 tensor under its transformers-5 name(s) (the fused SwiGLU input becomes two)."""
    fused, (gate, up) = DINOV2_FUSED_SWIGLU
    if fused in key:
        first, second = torch.chunk(value, 2, dim=0)
        return {key.replace(fused, gate): first.contiguous(), key.replace(fused, up): second.contiguous()}
    for old, new in DINOV2_RENAMES:
        key = key.replace(old, new)
    return {key: value}


def _load_hint(source: ShapeSource, error: Exception) -> str:
    return (
        f"cannot load the Hunyuan3D-2 shape model from {source.model!r} (subfolder {source.subfolder!r}): {error}. "
        "Point ALCH3MIST_HUNYUAN3D_MODEL at a local folder holding "
        f"{source.subfolder}/config.yaml and model{'.' + source.variant if source.variant else ''}.safetensors, "
        "or let the machine reach the Hugging Face hub."
    )
