"""An ostris ai-toolkit config for a run of ``alch3mist lora train``, for people who train with that tool.

ai-toolkit wants the targets (transformed images) in ``folder_path`` with ``.txt`` captions of the same stem, and
the Kontext inputs (originals) in ``control_path`` under the *same* file names. Our dataset names them
``img0_001.png`` / ``img1_001.png``, so the export links (or copies, where links are impossible) each pair to
``<data>/ai_toolkit/{targets,control}/pair_001.png`` and writes the captions next to the targets.

The YAML mirrors the run's ``TrainingRecipe`` field by field, under the names ai-toolkit reads
(``toolkit/config_modules.py``: ``NetworkConfig``, ``TrainConfig``, ``DatasetConfig``, ``ModelConfig``,
``SaveConfig``, ``SampleConfig``; the process keys of ``jobs/process/BaseSDTrainProcess.py``). What ai-toolkit
cannot express is listed in the comment at the top of the file. ``alch3mist dataset build`` writes the config of a
run with the trainer's defaults; ``alch3mist lora train`` writes the config of the run it made.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from ..prompting.schema import TRIGGER_WORD
from .buckets import plan_samples
from .recipe import ATTENTION, ATTENTION_FF, SCHEDULE_DEFAULTS, RunSchedule, TrainingRecipe
from .records import PairRecord, read_records

logger = logging.getLogger(__name__)

__all__ = ["CONFIG_NAME", "EXPORT_DIR", "KONTEXT_MODEL", "ai_toolkit_config", "untranslated", "write_ai_toolkit_export"]

EXPORT_DIR = "ai_toolkit"
CONFIG_NAME = "ai_toolkit.yaml"
KONTEXT_MODEL = "black-forest-labs/FLUX.1-Kontext-dev"
SAMPLE_PROMPTS = 4
# ai-toolkit's Flux Kontext encodes every caption to 512 T5 tokens (flux_kontext.py get_prompt_embeds).
AI_TOOLKIT_MAX_SEQUENCE_LENGTH = 512

# network_kwargs.only_if_contains keeps the Linear layers whose dotted name contains one of these
# (toolkit/lora_special.py create_modules); without it ai-toolkit trains every Linear of the blocks, our all-linear.
ONLY_IF_CONTAINS: dict[str, list[str] | None] = {
    "attention": ATTENTION,
    "attention-ff": ATTENTION_FF,
    "all-linear": None,
}


def _timestep_type(recipe: TrainingRecipe) -> tuple[str, str | None]:
    """ai-toolkit's ``train.timestep_type`` for a recipe, and a note when it is only the closest one."""
    scheme = recipe.weighting_scheme
    if scheme == "weighted":
        return "weighted", None
    if scheme == "none":  # linear timesteps 1000..1, uniform index, unweighted loss
        return "linear", None
    if scheme == "logit_normal":  # "sigmoid" draws 1000 timesteps (1 - sigmoid(N(0, 1))) * 1000 per step
        note = "logit_normal with its default mean 0 / std 1 is ai-toolkit's 'sigmoid' up to a 1000-point resampling"
        if (recipe.logit_mean, recipe.logit_std) != (0.0, 1.0):
            note = (
                f"--weighting-scheme logit_normal({recipe.logit_mean}, {recipe.logit_std}): written as 'sigmoid' (0, 1)"
            )
        return "sigmoid", note
    return "linear", f"--weighting-scheme {scheme}: written as 'linear' (uniform, unweighted), the closest"


def _lr_scheduler(recipe: TrainingRecipe) -> tuple[str, dict[str, Any], str | None]:
    """ai-toolkit's ``lr_scheduler`` and ``lr_scheduler_params`` (toolkit/scheduler.py get_lr_scheduler; it adds
    ``total_iters = steps``), and a note when the schedule differs."""
    warmup = recipe.lr_warmup_steps
    if recipe.lr_scheduler == "constant":
        if not warmup:
            return "constant", {}, None
        ramp = f"warm-up: ai-toolkit ramps (step / {warmup}), ours ((step + 1) / {warmup})"
        return "constant_with_warmup", {"num_warmup_steps": warmup}, ramp
    note = (
        f"--lr-warmup-steps {warmup} with {recipe.lr_scheduler}: ai-toolkit has no warm-up for it" if warmup else None
    )
    if recipe.lr_scheduler == "linear":  # torch LinearLR ramps 1/3 -> 1 by default: ours decays 1 -> 0
        return "linear", {"start_factor": 1.0, "end_factor": 0.0}, note
    return "cosine", {}, note  # CosineAnnealingLR(T_max = steps): lr -> 0, as ours


def untranslated(recipe: TrainingRecipe) -> list[str]:
    """The settings of a run that ai-toolkit cannot reproduce exactly, one line each (the YAML's top comment)."""
    notes = [
        "AdamW eps: ai-toolkit fixes 1e-6, ours is torch's 1e-8",
        f"seed {recipe.seed}: same value as training_seed, but another random stream (not draw-for-draw identical)",
        "buckets: a pair whose buckets coincide at two resolutions trains once here, once per resolution there",
    ]
    _type, timestep_note = _timestep_type(recipe)
    _name, _params, lr_note = _lr_scheduler(recipe)
    notes += [note for note in (timestep_note, lr_note) if note]
    if recipe.max_sequence_length != AI_TOOLKIT_MAX_SEQUENCE_LENGTH:
        notes.append(f"--max-sequence-length {recipe.max_sequence_length}: ai-toolkit always encodes 512 T5 tokens")
    return notes


def ai_toolkit_config(
    targets: Path,
    control: Path,
    recipe: TrainingRecipe,
    *,
    schedule: RunSchedule = SCHEDULE_DEFAULTS,
    name: str = "alch3mist_kontext_lora",
    samples: list[tuple[str, Path]] | None = None,
    model: str = KONTEXT_MODEL,
    dtype: str = "bf16",
) -> dict[str, Any]:
    """The config as a dict (``yaml.safe_dump`` it); ``recipe.steps`` must be resolved.

    ``samples`` are (caption, control image) pairs to preview; ``dtype`` the base and save precision (bf16 or fp32).
    """
    if recipe.steps is None:
        raise ValueError("ai_toolkit_config needs the run's resolved steps")
    timestep_type, _note = _timestep_type(recipe)
    lr_scheduler, lr_scheduler_params, _lr_note = _lr_scheduler(recipe)
    network: dict[str, Any] = {"type": "lora", "linear": recipe.rank, "linear_alpha": recipe.lora_alpha}
    only_if_contains = ONLY_IF_CONTAINS[recipe.targets]
    if only_if_contains is not None:
        network["network_kwargs"] = {"only_if_contains": list(only_if_contains)}
    height, width = schedule.validation_size
    process: dict[str, Any] = {
        "type": "sd_trainer",
        "training_folder": "output",
        "training_seed": recipe.seed,
        "trigger_word": TRIGGER_WORD,
        "network": network,
        "save": {
            "dtype": dtype,
            "save_every": schedule.checkpointing_steps,
            "max_step_saves_to_keep": schedule.checkpoints_total_limit,
            "push_to_hub": False,
        },
        "datasets": [
            {
                "folder_path": str(targets),
                "control_path": str(control),
                "caption_ext": "txt",
                "caption_dropout_rate": recipe.caption_dropout,
                "cache_latents_to_disk": True,
                "resolution": list(recipe.resolutions),
            }
        ],
        "train": {
            "batch_size": recipe.batch_size,
            "steps": recipe.steps,
            "gradient_accumulation": recipe.gradient_accumulation_steps,  # one step per accumulated batch, as ours
            "train_unet": True,
            "train_text_encoder": False,
            "gradient_checkpointing": recipe.gradient_checkpointing,
            "noise_scheduler": "flowmatch",
            "timestep_type": timestep_type,
            "cfg_scale": recipe.guidance_scale,  # the guidance embedding's value (SDTrainer guidance_embedding_scale)
            "optimizer": "adamw8bit" if recipe.use_8bit_adam else "adamw",
            "optimizer_params": {"weight_decay": recipe.adam_weight_decay},
            "lr": recipe.lr,
            "lr_scheduler": lr_scheduler,
            "lr_scheduler_params": lr_scheduler_params,
            "max_grad_norm": recipe.max_grad_norm,
            "dtype": dtype,
            "disable_sampling": schedule.validation_steps == 0,
        },
        "model": {"name_or_path": model, "arch": "flux_kontext", "quantize": False},
        "sample": {
            "sampler": "flowmatch",
            "sample_every": schedule.validation_steps or recipe.steps,
            "width": width,
            "height": height,
            "prompts": [f"{caption}  --ctrl_img {path}" for caption, path in (samples or [])],
            "neg": "",
            "seed": recipe.seed,
            "walk_seed": True,
            "guidance_scale": schedule.validation_guidance,
            "sample_steps": schedule.validation_inference_steps,
        },
    }
    return {
        "job": "extension",
        "config": {"name": name, "process": [process]},
        "meta": {"name": "[name]", "version": "1.0"},
    }


def _link_or_copy(source: Path, target: Path) -> None:
    if target.exists():
        target.unlink()
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _export_pair(data_dir: Path, record: PairRecord, targets: Path, control: Path) -> Path:
    assert record.original is not None and record.transformed is not None  # read_records checked both exist
    stem = f"pair_{record.id}"
    _link_or_copy(data_dir / record.transformed, targets / f"{stem}.png")
    (targets / f"{stem}.txt").write_text(record.caption + "\n", encoding="utf-8")
    control_image = control / f"{stem}.png"
    _link_or_copy(data_dir / record.original, control_image)
    return control_image


def _samples_per_epoch(data_dir: Path, records: list[PairRecord], recipe: TrainingRecipe) -> int:
    from PIL import Image

    sizes = []
    for record in records:
        with Image.open(data_dir / str(record.transformed)) as image:
            sizes.append(image.size)
    return len(plan_samples(sizes, recipe.resolutions))


def _header(recipe: TrainingRecipe, dtype: str) -> str:
    lines = [
        "ostris ai-toolkit config of an 'alch3mist lora train' run (run it with: python run.py <this file>).",
        f"Recipe: --targets {recipe.targets} --rank {recipe.rank} --alpha {recipe.lora_alpha:g} "
        f"--resolution {' '.join(map(str, recipe.resolutions))} --steps {recipe.steps} --lr {recipe.lr:g} "
        f"--guidance-scale {recipe.guidance_scale:g} --weighting-scheme {recipe.weighting_scheme} "
        f"--caption-dropout {recipe.caption_dropout:g}",
        f"model.quantize is false because the run trained over {dtype} base weights; true fits a 24 GB card.",
        "No ai-toolkit equivalent (or only an approximate one):",
        *(f"  - {note}" for note in untranslated(recipe)),
    ]
    return "".join(f"# {line}\n" for line in lines)


def write_ai_toolkit_export(
    data_dir: Path,
    recipe: TrainingRecipe,
    config_path: Path,
    *,
    model: str = KONTEXT_MODEL,
    validation: RunSchedule = SCHEDULE_DEFAULTS,
    dtype: str = "bf16",
) -> Path:
    """Lay out ``<data>/ai_toolkit/`` and write the config of ``recipe`` to ``config_path``; returns that path."""
    records = read_records(data_dir)
    targets, control = data_dir / EXPORT_DIR / "targets", data_dir / EXPORT_DIR / "control"
    targets.mkdir(parents=True, exist_ok=True)
    control.mkdir(parents=True, exist_ok=True)
    controls = [_export_pair(data_dir, record, targets, control) for record in records]
    if recipe.steps is None:
        recipe = replace(recipe, steps=recipe.total_steps(_samples_per_epoch(data_dir, records, recipe)), epochs=None)
    previews = zip(records[:SAMPLE_PROMPTS], controls[:SAMPLE_PROMPTS], strict=True)
    config = ai_toolkit_config(
        targets.resolve(),
        control.resolve(),
        recipe,
        schedule=validation,
        samples=[(record.caption, path.resolve()) for record, path in previews],
        model=model,
        dtype=dtype,
    )
    config_path.parent.mkdir(parents=True, exist_ok=True)
    body = yaml.safe_dump(config, sort_keys=False, allow_unicode=True)
    config_path.write_text(_header(recipe, dtype) + body, encoding="utf-8")
    logger.info("wrote the ai-toolkit config %s (%d pairs)", config_path, len(records))
    return config_path
