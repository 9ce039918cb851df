"""LoRAs for the 3D stage: PEFT adapters on the Hunyuan3D-2 DiT (and optionally its DINOv2 conditioner).

File format (what ``alch3mist lora3d train`` writes, and the only one loaded): a ``.safetensors`` file whose keys are
hy3dgen's own checkpoint groups followed by the PEFT key, ``model.<module>.lora_A.weight`` / ``…lora_B.weight`` for the
DiT and ``conditioner.<module>.…`` for the image encoder, with ``alpha / rank`` already folded into ``lora_B`` (so it
applies at scale 1 with ``lora_alpha = rank``). Pickles are refused. A file is refused — with a message saying why —
when it is unreadable, holds no LoRA weights, has keys outside those two groups, or names modules (or shapes) this
model does not have: loading must take every layer, or nothing.

One LoRA is loaded at a time; scale 0 (or no LoRA) disables the adapter layers, which gives the base model bit for bit.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..domain import LoraInfo
from ..errors import InvalidLora, UnknownLora
from .lora import LORA_SUFFIX, PICKLE_SUFFIXES

logger = logging.getLogger(__name__)

__all__ = [
    "CONDITIONER_TARGETS",
    "DIT_TARGETS",
    "ShapeLoraFile",
    "ShapeLoraManager",
    "add_shape_lora",
    "list_shape_loras",
    "save_shape_lora",
    "validate_shape_lora",
]

# The DiT's attention projections (hy3dgen's Hunyuan3DDiT): the fused q/k/v and the output projection of both streams
# of the double blocks, and the single blocks' fused linear1 (q/k/v + MLP in) / linear2 (attention + MLP out).
DIT_TARGETS = ("img_attn.qkv", "img_attn.proj", "txt_attn.qkv", "txt_attn.proj", "linear1", "linear2")
# transformers' Dinov2Model attention projections (to_q/to_k/to_v/to_out.0 in diffusers' naming).
CONDITIONER_TARGETS = ("attention.q_proj", "attention.k_proj", "attention.v_proj", "attention.o_proj")
GROUPS = ("model", "conditioner")  # hy3dgen's checkpoint groups the adapters may sit in
FORMAT = "alch3mist-hunyuan3d-shape-lora"
ADAPTER = "alch3mist_shape"
_LORA_KEY = re.compile(r"^(model|conditioner)\.(.+)\.(lora_A|lora_B)\.weight$")


@dataclass(frozen=True)
class ShapeLoraFile:
    """What a LoRA file's header says: per group, the module paths and their rank."""

    path: Path
    modules: dict[str, dict[str, int]]  # group -> {module path: rank}
    metadata: dict[str, str]

    @property
    def rank(self) -> int:
        return max(rank for group in self.modules.values() for rank in group.values())

    @property
    def layers(self) -> int:
        return sum(len(group) for group in self.modules.values())


def validate_shape_lora(path: Path) -> ShapeLoraFile:
    """Check a 3D LoRA file without loading its tensors; ``InvalidLora`` saying why it cannot be used."""
    from safetensors import SafetensorError, safe_open

    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise InvalidLora(f"refusing 3D LoRA {path.name}: {path.suffix} files are pickles (they can run code)")
    if path.suffix.lower() != LORA_SUFFIX or not path.is_file():
        raise InvalidLora(f"3D LoRA {path.name} is not an existing .safetensors file")
    try:
        with safe_open(str(path), framework="pt") as handle:
            shapes = {key: list(handle.get_slice(key).get_shape()) for key in handle.keys()}  # noqa: SIM118 - safe_open handles are not iterable
            metadata = dict(handle.metadata() or {})
    except (SafetensorError, OSError, ValueError) as error:
        raise InvalidLora(f"3D LoRA {path.name} is not a readable safetensors file (corrupt?): {error}") from error
    modules: dict[str, dict[str, int]] = {}
    for key, shape in shapes.items():
        match = _LORA_KEY.match(key)
        if match is None:
            raise InvalidLora(
                f"3D LoRA {path.name} is not a Hunyuan3D-2 shape LoRA: key {key!r} is not model.*/conditioner.* "
                "lora_A/lora_B (a LoRA for another model, e.g. FLUX?)"
            )
        group, module, kind = match.groups()
        if kind == "lora_A":
            modules.setdefault(group, {})[module] = int(shape[0])
    if not modules:
        raise InvalidLora(f"3D LoRA {path.name} holds no LoRA weights")
    return ShapeLoraFile(path=path, modules=modules, metadata=metadata)


def list_shape_loras(lora_dir: Path) -> list[LoraInfo]:
    """The usable 3D LoRAs in a folder, by name (file stem); unusable files are listed with rank None."""
    if not lora_dir.is_dir():
        return []
    found = []
    for path in sorted(lora_dir.glob(f"*{LORA_SUFFIX}")):
        try:
            rank: int | None = validate_shape_lora(path).rank
        except InvalidLora as error:
            logger.warning("listing %s although it cannot be used: %s", path.name, error)
            rank = None
        found.append(LoraInfo(name=path.stem, file=path.name, size_bytes=path.stat().st_size, rank=rank))
    return found


def _lora_layers(module: torch.nn.Module, adapter: str = ADAPTER) -> list[Any]:
    from peft.tuners.lora import LoraLayer

    return [layer for layer in module.modules() if isinstance(layer, LoraLayer) and adapter in layer.lora_A]


def add_shape_lora(
    module: torch.nn.Module,
    targets: list[str] | tuple[str, ...],
    rank: int,
    alpha: int,
    dropout: float = 0.0,
    adapter: str = ADAPTER,
) -> int:
    """Wrap ``module``'s target linears with a fresh adapter (PEFT's gaussian A, zero B); returns the layer count."""
    from peft import LoraConfig, inject_adapter_in_model

    config = LoraConfig(
        r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(targets), init_lora_weights="gaussian"
    )
    inject_adapter_in_model(config, module, adapter_name=adapter)
    return len(_lora_layers(module, adapter))


def save_shape_lora(
    path: Path,
    parts: dict[str, torch.nn.Module],
    rank: int,
    alpha: int,
    extra: dict[str, Any] | None = None,
    adapter: str = ADAPTER,
) -> ShapeLoraFile:
    """Write the adapters of ``parts`` ({group: module}) in the file format above, atomically, and check it."""
    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import save_file

    tensors: dict[str, torch.Tensor] = {}
    for group, module in parts.items():
        state = get_peft_model_state_dict(module, adapter_name=adapter)
        for key, value in state.items():
            folded = value.float() * (alpha / rank) if ".lora_B." in key else value.float()
            tensors[f"{group}.{key}"] = folded.detach().cpu().contiguous()
    metadata = {"format": FORMAT, "rank": str(rank), "alpha": str(rank), "trained": json.dumps(extra or {})}
    partial = path.with_name(f".{path.stem}.partial{LORA_SUFFIX}")
    save_file(tensors, str(partial), metadata=metadata)
    partial.replace(path)
    saved = validate_shape_lora(path)
    expected = sum(len(_lora_layers(module, adapter)) for module in parts.values())
    if saved.layers != expected:
        raise InvalidLora(f"saved 3D LoRA {path} is malformed: {saved.layers} of {expected} layers")
    return saved


class ShapeLoraManager:
    """The 3D LoRA folder and the one adapter loaded into a hy3dgen pipeline's DiT / conditioner."""

    def __init__(self, pipe: Any, lora_dir: Path) -> None:
        self._parts: dict[str, torch.nn.Module] = {"model": pipe.model, "conditioner": pipe.conditioner}
        self._lora_dir = lora_dir
        self._loaded: tuple[str, Path, tuple[int, int]] | None = None  # name, file, (mtime, size) when loaded
        self._active: tuple[str, float] | None = None

    def available(self) -> list[LoraInfo]:
        return list_shape_loras(self._lora_dir)

    def active(self) -> tuple[str, float] | None:
        return self._active

    def activate(self, name: str | None, scale: float) -> None:
        """Make ``name`` active at ``scale``; ``None`` or scale 0 runs the base model (adapters disabled)."""
        if name is None or scale == 0:
            self._enable(False)
            self._active = None
            return
        path = self._lora_dir / f"{name}{LORA_SUFFIX}"
        if not path.is_file():
            names = ", ".join(info.name for info in self.available()) or f"none (put files in {self._lora_dir})"
            raise UnknownLora(f"unknown 3D LoRA {name!r}; available: {names}")
        if self._loaded is None or self._loaded[:2] != (name, path) or self._loaded[2] != _stamp(path):
            self.load_file(path, name)
        for layer in self._layers():
            layer.set_scale(ADAPTER, scale)
        self._enable(True)
        self._active = (name, scale)
        logger.info("3D LoRA %s active at scale %s", name, scale)

    def load_file(self, path: Path, name: str) -> None:
        """Load ``path`` (replacing any loaded LoRA); every one of its layers must load, or it is refused."""
        lora = validate_shape_lora(path)
        self.unload()
        from safetensors.torch import load_file

        tensors = load_file(str(path))
        try:
            for group, modules in lora.modules.items():
                self._load_group(group, modules, tensors, lora)
        except (ValueError, RuntimeError, KeyError) as error:
            self.unload()
            raise InvalidLora(f"3D LoRA {path.name} does not fit this Hunyuan3D-2 model: {error}") from error
        loaded = len(self._layers())
        if loaded != lora.layers:
            self.unload()
            raise InvalidLora(
                f"3D LoRA {path.name}: only {loaded} of its {lora.layers} layers match this Hunyuan3D-2 model "
                "(trained on another model size?)"
            )
        self._loaded = (name, path, _stamp(path))
        self._enable(False)  # loaded, not active until activate()

    def unload(self) -> None:
        for layer in self._layers():
            layer.delete_adapter(ADAPTER)
        for module in self._parts.values():
            if hasattr(module, "peft_config"):
                del module.peft_config  # the injection's record; the next load writes its own
        self._loaded = None
        self._active = None

    def _load_group(
        self, group: str, modules: dict[str, int], tensors: dict[str, torch.Tensor], lora: ShapeLoraFile
    ) -> None:
        from peft import LoraConfig, inject_adapter_in_model
        from peft.utils import set_peft_model_state_dict

        module = self._parts[group]
        names = {name for name, _ in module.named_modules()}
        missing = sorted(set(modules) - names)
        if missing:
            raise KeyError(f"no module {group}.{missing[0]} in this model")
        rank = max(modules.values())
        config = LoraConfig(
            r=rank, lora_alpha=rank, target_modules=sorted(modules), rank_pattern=modules, alpha_pattern=modules
        )
        inject_adapter_in_model(config, module, adapter_name=ADAPTER)
        prefix = f"{group}."
        state = {key[len(prefix) :]: value for key, value in tensors.items() if key.startswith(prefix)}
        result = set_peft_model_state_dict(module, state, adapter_name=ADAPTER)
        unexpected = list(getattr(result, "unexpected_keys", []) or [])
        if unexpected:
            raise KeyError(f"unexpected key {group}.{unexpected[0]}")

    def _layers(self) -> list[Any]:
        return [layer for module in self._parts.values() for layer in _lora_layers(module)]

    def _enable(self, enabled: bool) -> None:
        for layer in self._layers():
            layer.enable_adapters(enabled)


def _stamp(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_mtime_ns, stat.st_size
