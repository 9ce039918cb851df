"""What a LoRA training run does — the options that decide the LoRA, their defaults, and the LoRA target sets.

One place for the defaults: ``alch3mist lora train`` takes its option defaults from ``TrainingRecipe()``, the
ai-toolkit export writes a ``TrainingRecipe``, and the LoRA file records the recipe it was trained with.
docs/training.md says why each default is what it is, and which options reproduce the recipe of ostris ai-toolkit
and of diffusers' ``train_dreambooth_lora_flux_kontext.py``.
"""

from __future__ import annotations

import argparse
import math
import re
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

__all__ = [
    "ATTENTION",
    "ATTENTION_FF",
    "DEFAULTS",
    "SCHEDULE_DEFAULTS",
    "TARGET_SETS",
    "TIMESTEP_SCHEMES",
    "LrSchedule",
    "RunSchedule",
    "TargetSet",
    "TimestepScheme",
    "TrainingRecipe",
    "lora_target_modules",
]

TargetSet = Literal["attention", "attention-ff", "all-linear"]
# "none"/"logit_normal"/"mode" draw the timestep from that density and "sigma_sqrt"/"cosmap" weight the loss
# instead (diffusers.training_utils.compute_density_for_timestep_sampling / compute_loss_weighting_for_sd3);
# "weighted" is ai-toolkit's: uniform timesteps, loss weighted per timestep (see objective.py).
TimestepScheme = Literal["none", "logit_normal", "mode", "sigma_sqrt", "cosmap", "weighted"]
TIMESTEP_SCHEMES: tuple[TimestepScheme, ...] = ("none", "logit_normal", "mode", "sigma_sqrt", "cosmap", "weighted")
LrSchedule = Literal["constant", "cosine", "linear"]

# The attention projections of both block kinds: image stream (to_q/k/v, to_out.0) and text stream (add_*, to_add_out)
# of the 19 double blocks; the single blocks' attention has to_q/k/v only. PEFT matches these as name suffixes.
ATTENTION = [
    "attn.to_k",
    "attn.to_q",
    "attn.to_v",
    "attn.to_out.0",
    "attn.add_k_proj",
    "attn.add_q_proj",
    "attn.add_v_proj",
    "attn.to_add_out",
]
# diffusers' train_dreambooth_lora_flux_kontext.py default (``target_modules`` when --lora_layers is not given):
# the attention plus both feed-forwards of the double blocks and the single blocks' MLP input projection.
ATTENTION_FF = [*ATTENTION, "ff.net.0.proj", "ff.net.2", "ff_context.net.0.proj", "ff_context.net.2", "proj_mlp"]
# ai-toolkit's default network: every Linear inside the transformer blocks (toolkit/lora_special.py create_modules
# keeps the Linear children of FluxTransformer2DModel whose name holds "transformer_blocks"), which adds the AdaLN
# modulation (norm1.linear, norm1_context.linear, norm.linear) and the single blocks' proj_out. A regular expression
# (PEFT full-matches it): a bare "proj_out" suffix would also catch the transformer's final projection, outside the
# blocks.
_BLOCK_LINEARS = [*ATTENTION_FF, "proj_out", "norm1.linear", "norm1_context.linear", "norm.linear"]
ALL_LINEAR = r"(transformer_blocks|single_transformer_blocks)\.\d+\.(" + "|".join(map(re.escape, _BLOCK_LINEARS)) + ")"
TARGET_SETS: dict[TargetSet, list[str] | str] = {
    "attention": ATTENTION,
    "attention-ff": ATTENTION_FF,
    "all-linear": ALL_LINEAR,
}


def lora_target_modules(targets: TargetSet) -> list[str] | str:
    """PEFT ``target_modules`` for a target set (a suffix list, or a regular expression for ``all-linear``)."""
    return TARGET_SETS[targets]


@dataclass(frozen=True)
class TrainingRecipe:
    """The options that decide what LoRA a run makes (not where its files go); the defaults are the trainer's."""

    rank: int = 16
    alpha: float | None = None  # None: the rank (scale alpha / rank = 1)
    targets: TargetSet = "all-linear"
    resolutions: tuple[int, ...] = (512, 768, 1024)  # bucket areas (side²); every pair is trained at each
    steps: int | None = None  # None: from epochs
    epochs: int | None = None  # None with steps None: one epoch
    lr: float = 1e-4
    lr_scheduler: LrSchedule = "constant"
    lr_warmup_steps: int = 0
    batch_size: int = 1
    gradient_accumulation_steps: int = 1
    guidance_scale: float = 1.0  # the guidance embedding's value while training
    weighting_scheme: TimestepScheme = "weighted"
    logit_mean: float = 0.0
    logit_std: float = 1.0
    mode_scale: float = 1.29
    caption_dropout: float = 0.05  # share of samples trained with the trigger word alone as caption
    max_sequence_length: int = 512
    adam_weight_decay: float = 1e-4
    max_grad_norm: float = 1.0
    use_8bit_adam: bool = False
    gradient_checkpointing: bool = False
    seed: int = 0

    @property
    def lora_alpha(self) -> float:
        return float(self.rank if self.alpha is None else self.alpha)

    @property
    def lora_scale(self) -> float:
        """The factor PEFT applies to ``B @ A``: alpha / rank."""
        return self.lora_alpha / self.rank

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> TrainingRecipe:
        """The recipe of ``alch3mist lora train``'s parsed options (``--resolution`` holds the resolutions)."""
        values: dict[str, Any] = {}
        for item in fields(cls):
            name = "resolution" if item.name == "resolutions" else item.name
            if hasattr(args, name):
                values[item.name] = getattr(args, name)
        values["resolutions"] = tuple(values.get("resolutions") or DEFAULTS.resolutions)
        return cls(**values)

    def total_steps(self, samples: int) -> int:
        """Optimiser steps: ``steps``, else ``epochs`` (default 1) passes over ``samples`` (pairs x buckets)."""
        if self.steps is not None:
            return self.steps
        per_epoch = math.ceil(samples / (self.batch_size * self.gradient_accumulation_steps))
        return per_epoch * (self.epochs or 1)

    def to_json_dict(self) -> dict[str, Any]:
        """Plain JSON values, alpha resolved (written into the LoRA file and the work folder)."""
        data = asdict(self)
        data["alpha"] = self.lora_alpha
        data["resolutions"] = list(self.resolutions)
        data["target_modules"] = lora_target_modules(self.targets)
        return data


DEFAULTS = TrainingRecipe()


@dataclass(frozen=True)
class RunSchedule:
    """When a run saves checkpoints and validation images (not what it learns); the trainer's defaults."""

    checkpointing_steps: int = 250
    checkpoints_total_limit: int = 3
    validation_steps: int = 0  # 0: no validation images
    validation_inference_steps: int = 20
    validation_guidance: float = 2.5  # Kontext [dev]'s recommended guidance for edits
    validation_size: tuple[int, int] = (512, 512)  # (height, width): the first pair's first bucket in a run


SCHEDULE_DEFAULTS = RunSchedule()
