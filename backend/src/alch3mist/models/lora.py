"""LoRAs for the Kontext transformer: the LoRA folder, safe loading, activation, hot-swap.

A LoRA is a ``.safetensors`` file in one of the key formats diffusers' FLUX loader understands (diffusers/PEFT with
the ``transformer.`` prefix, kohya, ai-toolkit, …); diffusers converts them. Its alpha is honoured wherever the file
keeps it: ``.alpha`` tensors (kohya) or the adapter metadata diffusers' ``save_lora_weights`` writes (``lora_alpha``
and ``r``, as diffusers' Kontext training script leaves them), so every LoRA acts at the scale it was trained for.
Pickle formats are refused: loading one can run arbitrary code. Only the transformer part is loaded: the text
encoders are shared with the base-image stage, and a text-encoder LoRA would silently change stage 1 too.

Loaded adapters stay in memory under their own names, so switching LoRA (or scale) is a ``set_adapters`` call,
not a reload of the 12B base; scale 0 or no LoRA disables the adapters, which gives the baseline bit for bit.
"""

from __future__ import annotations

import logging
import re
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch

from ..domain import LoraInfo
from ..errors import InvalidLora, UnknownLora

logger = logging.getLogger(__name__)

LORA_SUFFIX = ".safetensors"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
MAX_LOADED_ADAPTERS = 4  # adapters kept for instant switching; the least recently used goes first
TRANSFORMER_PREFIX = "transformer."
# Module names that only a FLUX transformer has, in the formats diffusers converts (diffusers/PEFT, kohya, BFL).
FLUX_KEY_MARKERS = (
    "transformer_blocks",
    "single_transformer_blocks",
    "double_blocks",
    "single_blocks",
    "x_embedder",
    "context_embedder",
    "img_attn",
    "txt_attn",
)
LORA_KEY_MARKERS = ("lora_A", "lora_B", "lora_down", "lora_up", "lora.down", "lora.up")


def validate_lora_file(path: Path) -> dict[str, Any]:
    """Check a LoRA file without loading its tensors; return what it says about itself.

    Raises InvalidLora when it is not a ``.safetensors`` file, cannot be parsed, holds no LoRA weights, or its keys
    do not name FLUX transformer modules. Returns ``{"rank", "format", "num_tensors", "metadata"}``.
    """
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise InvalidLora(
            f"refusing LoRA {path.name}: {path.suffix} files are pickles, and loading a pickle can run arbitrary code. "
            "Convert it to .safetensors (safetensors.torch.save_file) and try again."
        )
    if path.suffix.lower() != LORA_SUFFIX:
        raise InvalidLora(f"LoRA {path.name} is not a .safetensors file")
    if not path.is_file():
        raise InvalidLora(f"LoRA file {path} does not exist")
    keys, shapes, header_metadata = _read_header(path)
    lora_keys = [key for key in keys if any(marker in key for marker in LORA_KEY_MARKERS)]
    if not lora_keys:
        raise InvalidLora(f"LoRA {path.name} holds no LoRA weights (no lora_A/lora_B or lora_down/lora_up keys)")
    if not any(marker in key for key in lora_keys for marker in FLUX_KEY_MARKERS):
        raise InvalidLora(
            f"LoRA {path.name} does not match the FLUX Kontext transformer (LoRA for another base model?); "
            f"first keys: {', '.join(sorted(lora_keys)[:3])}"
        )
    return {
        "rank": _rank(lora_keys, shapes),
        "format": _key_format(lora_keys),
        "num_tensors": len(keys),
        "metadata": header_metadata,
    }


def _read_header(path: Path) -> tuple[list[str], dict[str, list[int]], dict[str, str]]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            keys = list(handle.keys())
            shapes = {key: list(handle.get_slice(key).get_shape()) for key in keys}
            return keys, shapes, dict(handle.metadata() or {})
    except (SafetensorError, OSError, ValueError) as error:
        raise InvalidLora(
            f"LoRA {path.name} is not a readable safetensors file (corrupt or truncated?): {error}"
        ) from error


def _rank(lora_keys: list[str], shapes: dict[str, list[int]]) -> int | None:
    for key in sorted(lora_keys):
        if ("lora_A" in key or "lora_down" in key or "lora.down" in key) and len(shapes[key]) >= 2:
            return int(shapes[key][0])
    return None


def _key_format(lora_keys: list[str]) -> str:
    if any(key.startswith(TRANSFORMER_PREFIX) for key in lora_keys):
        return "diffusers"
    if any(key.startswith("lora_unet_") or "lora_down" in key for key in lora_keys):
        return "kohya"
    if any(key.startswith(("diffusion_model.", "base_model.")) for key in lora_keys):
        return "bfl"
    return "peft-unprefixed"


def _adapter_name(name: str) -> str:
    # PEFT stores adapters in ModuleDicts, whose keys may not contain dots.
    return re.sub(r"[^0-9A-Za-z_-]", "_", name)


def list_loras(lora_dir: Path) -> list[LoraInfo]:
    """The ``.safetensors`` files in a LoRA folder, by name (file stem); no model needed."""
    if not lora_dir.is_dir():
        return []
    return [
        LoraInfo(name=path.stem, file=path.name, size_bytes=path.stat().st_size, rank=_rank_of(path))
        for path in sorted(lora_dir.glob(f"*{LORA_SUFFIX}"))
    ]


def _rank_of(path: Path) -> int | None:
    try:
        rank = validate_lora_file(path)["rank"]
    except InvalidLora as error:
        logger.warning("listing %s although it cannot be used: %s", path.name, error)
        return None
    return int(rank) if rank is not None else None


class LoraManager:
    """Owns the LoRA folder listing and the adapters loaded into the Kontext pipeline's transformer."""

    def __init__(self, pipe: Any, lora_dir: Path) -> None:
        self._pipe = pipe
        self._lora_dir = lora_dir
        self._loaded: OrderedDict[str, str] = OrderedDict()  # LoRA name -> adapter name, least recently used first
        self._sources: dict[str, tuple[Path, tuple[int, int] | None]] = {}  # LoRA name -> file and its stamp
        self._active: tuple[str, float] | None = None

    @property
    def lora_dir(self) -> Path:
        return self._lora_dir

    def available(self) -> list[LoraInfo]:
        """The ``.safetensors`` files in the LoRA folder, by name (file stem)."""
        return list_loras(self._lora_dir)

    def activate(self, name: str | None, scale: float) -> None:
        """Make ``name`` the only active adapter at ``scale``; ``None`` or scale 0 runs the base Kontext model."""
        if name is None or scale == 0:
            self._disable_all()
            return
        if name in self._loaded and self._changed_on_disk(name):
            logger.info("LoRA %s changed on disk since it was loaded: reloading it", name)
            self._delete(name)
        if name not in self._loaded:
            self.load_file(self._path_of(name), name)
        self._loaded.move_to_end(name)
        transformer = self._pipe.transformer
        transformer.enable_lora()
        transformer.set_adapters([self._loaded[name]], weights=[scale])
        self._active = (name, scale)
        logger.info("LoRA %s active at scale %s", name, scale)

    def load_file(self, path: Path, adapter_name: str) -> None:
        """Load any ``.safetensors`` LoRA as adapter ``adapter_name`` (not activated), checking it really took."""
        validate_lora_file(path)
        if adapter_name in self._loaded:
            self._delete(adapter_name)
        self._evict_to(MAX_LOADED_ADAPTERS - 1)
        state_dict, alphas, metadata = self._transformer_state_dict(path)
        adapter = _adapter_name(adapter_name)
        try:
            self._pipe.load_lora_into_transformer(
                state_dict,
                network_alphas=alphas,
                transformer=self._pipe.transformer,
                adapter_name=adapter,
                _pipeline=self._pipe,
                metadata=metadata,
            )
        except (ValueError, RuntimeError, KeyError) as error:
            self._delete_adapter_if_present(adapter)
            raise InvalidLora(
                f"LoRA {path.name} does not fit the Kontext transformer (another base model?): {error}"
            ) from error
        self._check_adapter_took(path, adapter, expected_layers=_count_layers(state_dict))
        self._loaded[adapter_name] = adapter
        self._sources[adapter_name] = (path, _file_stamp(path))
        # A freshly loaded adapter becomes active in PEFT; keep whatever the caller chose until activate().
        self._reapply_active()

    def active(self) -> tuple[str, float] | None:
        return self._active

    def unload(self) -> None:
        """Remove every adapter: the transformer is the base model again."""
        if self._loaded:
            self._pipe.transformer.unload_lora()
        self._loaded.clear()
        self._sources.clear()
        self._active = None

    # --- helpers, in the order they are used ---

    def _path_of(self, name: str) -> Path:
        names = [info.name for info in self.available()]
        if name not in names:
            listing = ", ".join(names) if names else f"none (put .safetensors files in {self._lora_dir})"
            raise UnknownLora(f"unknown LoRA {name!r}; available: {listing}")
        return self._lora_dir / f"{name}{LORA_SUFFIX}"

    def _changed_on_disk(self, name: str) -> bool:
        """A retrained LoRA saved under the same name (or a deleted one) must not keep its stale adapter."""
        path, stamp = self._sources[name]
        return _file_stamp(path) != stamp

    def _disable_all(self) -> None:
        if self._loaded:
            self._pipe.transformer.disable_lora()
        self._active = None

    def _transformer_state_dict(
        self, path: Path
    ) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None, dict[str, Any] | None]:
        """The file converted to diffusers keys by diffusers' own FLUX loader, transformer part only, with the
        alphas it carries: kohya-style ``.alpha`` tensors, or the adapter metadata (``lora_alpha``, ``r``) that
        diffusers' ``save_lora_weights`` writes (the Kontext training script keeps alpha there, not in ``lora_B``).
        """
        try:
            state_dict, alphas, metadata = self._pipe.lora_state_dict(
                str(path), use_safetensors=True, return_alphas=True, return_lora_metadata=True
            )
        except (ValueError, KeyError, RuntimeError, OSError) as error:
            raise InvalidLora(f"LoRA {path.name}: diffusers cannot read its keys: {error}") from error
        transformer_part = {k: v for k, v in state_dict.items() if k.startswith(TRANSFORMER_PREFIX)}
        skipped = len(state_dict) - len(transformer_part)
        if not transformer_part:
            raise InvalidLora(
                f"LoRA {path.name} has no keys for the transformer: its keys lack the 'transformer.' prefix "
                "(a raw PEFT state dict? save it with FluxKontextPipeline.save_lora_weights) or it is for another model"
            )
        if skipped:
            logger.warning(
                "LoRA %s: ignoring %d non-transformer tensors (the text encoders are shared with stage 1)",
                path.name,
                skipped,
            )
        return transformer_part, alphas or None, metadata or None

    def _check_adapter_took(self, path: Path, adapter: str, expected_layers: int) -> None:
        loaded_layers = _count_adapter_layers(self._pipe.transformer, adapter)
        if loaded_layers == expected_layers and loaded_layers > 0:
            return
        self._delete_adapter_if_present(adapter)
        raise InvalidLora(
            f"LoRA {path.name}: only {loaded_layers} of its {expected_layers} layers match the Kontext transformer "
            "(LoRA for another base model?)"
        )

    def _reapply_active(self) -> None:
        if self._active is None:
            self._disable_all()
        else:
            self.activate(*self._active)

    def _evict_to(self, keep: int) -> None:
        while len(self._loaded) > keep:
            oldest = next(iter(self._loaded))
            if self._active and self._active[0] == oldest:
                self._loaded.move_to_end(oldest)
                oldest = next(iter(self._loaded))
            self._delete(oldest)

    def _delete(self, name: str) -> None:
        adapter = self._loaded.pop(name)
        self._sources.pop(name, None)
        self._delete_adapter_if_present(adapter)
        if self._active and self._active[0] == name:
            self._active = None

    def _delete_adapter_if_present(self, adapter: str) -> None:
        transformer = self._pipe.transformer
        if adapter in getattr(transformer, "peft_config", {}):
            transformer.delete_adapters(adapter)


def _file_stamp(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_mtime_ns, stat.st_size


def _count_layers(state_dict: dict[str, torch.Tensor]) -> int:
    return sum(1 for key in state_dict if key.endswith("lora_A.weight"))


def _count_adapter_layers(transformer: torch.nn.Module, adapter: str) -> int:
    from peft.tuners.lora import LoraLayer

    return sum(1 for module in transformer.modules() if isinstance(module, LoraLayer) and adapter in module.lora_A)
