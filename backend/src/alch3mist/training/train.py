"""``alch3mist lora train``: a LoRA on the FLUX.1 Kontext [dev] transformer, trained on (original, transformed) pairs.

The objective is the one of diffusers' ``examples/dreambooth/train_dreambooth_lora_flux_kontext.py``
(``objective.py``); the options that change the LoRA (``recipe.py``) reproduce either that script's recipe or
ostris ai-toolkit's, as docs/training.md lists: LoRA targets (``--targets``), rank and alpha, the guidance
embedding's value, the timestep scheme (diffusers' weightings or ai-toolkit's ``weighted``), caption dropout, and
aspect-ratio buckets at one or more resolutions (``buckets.py``).

Text embeddings (CLIP pooled + T5) and VAE latents are computed once and cached. Every random draw of a step
(batch, noise, timesteps, dropped captions) comes from a generator seeded by (seed, step), so a run resumed from a
checkpoint continues exactly as the uninterrupted run would have.

Outputs: the LoRA ``--out FILE.safetensors`` (diffusers format, keys prefixed ``transformer.``, alpha folded into
``lora_B`` so every loader applies it the same, the recipe in the file's metadata), and a work folder
``--work-dir`` (default ``<out>-training/``) with ``checkpoints/checkpoint-000250/`` (LoRA + optimizer state,
safetensors only, no pickle), ``logs/`` (TensorBoard), ``validation/`` (images every ``--validation-steps``) and
``ai_toolkit.yaml`` (the same run as an ai-toolkit config).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InvalidLora, InvalidRequest, OutOfMemory, report_errors
from ..prompting.schema import TRIGGER_WORD
from .ai_toolkit import CONFIG_NAME, write_ai_toolkit_export
from .buckets import Sample, epoch_batches, fit_to_bucket, plan_samples
from .objective import PairCache, kontext_loss
from .recipe import (
    DEFAULTS,
    SCHEDULE_DEFAULTS,
    TARGET_SETS,
    TIMESTEP_SCHEMES,
    RunSchedule,
    TrainingRecipe,
    lora_target_modules,
)
from .records import PairRecord, read_records

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

__all__ = ["RECIPE_METADATA_KEY", "TrainResult", "add_arguments", "main", "save_lora", "train"]

ADAPTER_NAME = "alch3mist_training"
RECIPE_METADATA_KEY = "alch3mist.recipe"  # the safetensors metadata entry that records how a LoRA was trained
CHECKPOINT_PREFIX = "checkpoint-"
BITSANDBYTES_PIN = "bitsandbytes==0.50.2"


@dataclass
class TrainResult:
    """What a finished run did."""

    out: Path  # the LoRA file
    steps: int  # optimiser steps of the whole run
    resumed_from: int  # the step the run started at (0 unless --resume)
    recipe: TrainingRecipe  # the options that decided the LoRA, steps resolved
    samples: int = 0  # (pair, bucket) samples one epoch passes over
    ai_toolkit_config: Path | None = None  # the same run as an ai-toolkit config
    losses: list[float] = field(default_factory=list)  # per-step training loss of the steps run here
    eval_loss_start: float = math.nan  # held-in loss before the first step run here
    eval_loss_end: float = math.nan  # held-in loss after the last step
    seconds: float = 0.0


# --- command line ---------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, required=True, help="Dataset folder made by 'alch3mist dataset build'.")
    parser.add_argument("--out", type=Path, required=True, help="The LoRA file to write (.safetensors).")
    parser.add_argument(
        "--preset", choices=("tiny", "full", "auto"), default=None, help="Base models (default: settings)."
    )
    parser.add_argument(
        "--work-dir", type=Path, default=None, help="Checkpoints, logs, validation (default <out>-training)."
    )
    _add_recipe_arguments(parser)
    parser.add_argument(
        "--mixed-precision",
        choices=("auto", "no", "bf16"),
        default="auto",
        help="bf16 base weights (LoRA in fp32); auto = bf16 on CUDA, fp32 on the CPU.",
    )
    parser.add_argument(
        "--held-in-pairs", type=int, default=16, help="Pairs the fixed-noise held-in loss is measured on (start/end)."
    )
    schedule = SCHEDULE_DEFAULTS
    parser.add_argument(
        "--checkpointing-steps",
        type=int,
        default=schedule.checkpointing_steps,
        help="Save a resumable checkpoint every N steps.",
    )
    parser.add_argument(
        "--checkpoints-total-limit",
        type=int,
        default=schedule.checkpoints_total_limit,
        help="Keep at most this many checkpoints.",
    )
    parser.add_argument("--resume", action="store_true", help="Continue from the latest checkpoint in the work folder.")
    parser.add_argument(
        "--validation-steps",
        type=int,
        default=schedule.validation_steps,
        help="Validation image every N steps (0 = off).",
    )
    parser.add_argument(
        "--validation-inference-steps",
        type=int,
        default=schedule.validation_inference_steps,
        help="Kontext steps per validation image.",
    )
    parser.add_argument("--overwrite", action="store_true", help="Replace an existing --out and its checkpoints.")


def _add_recipe_arguments(parser: argparse.ArgumentParser) -> None:
    """The options that decide the LoRA; their defaults are ``TrainingRecipe``'s (docs/training.md says why)."""
    d = DEFAULTS
    parser.add_argument(
        "--targets",
        choices=tuple(TARGET_SETS),
        default=d.targets,
        help="Layers that get a LoRA: attention projections; + feed-forwards (diffusers' script); every Linear "
        f"of the blocks (ai-toolkit). Default {d.targets}.",
    )
    parser.add_argument("--rank", type=int, default=d.rank, help=f"LoRA rank (default {d.rank}).")
    parser.add_argument(
        "--alpha", type=float, default=d.alpha, help="LoRA alpha; the update is scaled by alpha/rank (default: rank)."
    )
    parser.add_argument("--lr", type=float, default=d.lr, help=f"Learning rate (default {d.lr:g}).")
    parser.add_argument(
        "--lr-scheduler",
        choices=("constant", "cosine", "linear"),
        default=d.lr_scheduler,
        help="Learning-rate schedule.",
    )
    parser.add_argument("--lr-warmup-steps", type=int, default=d.lr_warmup_steps, help="Linear warm-up steps.")
    parser.add_argument("--steps", type=int, default=d.steps, help="Optimiser steps (default: from --epochs).")
    parser.add_argument(
        "--epochs", type=int, default=d.epochs, help="Passes over the samples when --steps is not given (default 1)."
    )
    parser.add_argument("--batch-size", type=int, default=d.batch_size, help="Samples per micro-batch (one bucket).")
    parser.add_argument(
        "--gradient-accumulation-steps",
        type=int,
        default=d.gradient_accumulation_steps,
        help="Micro-batches per optimiser step.",
    )
    parser.add_argument(
        "--resolution",
        type=int,
        nargs="+",
        default=list(d.resolutions),
        help="Bucket resolutions: every pair trains at each, in the aspect-ratio bucket of about side² pixels "
        f"(never upscaled). Default {' '.join(map(str, d.resolutions))}.",
    )
    parser.add_argument(
        "--guidance-scale",
        type=float,
        default=d.guidance_scale,
        help=f"Guidance embedding value while training (default {d.guidance_scale:g}, ai-toolkit's; the diffusers "
        "script uses 3.5).",
    )
    parser.add_argument(
        "--weighting-scheme",
        choices=TIMESTEP_SCHEMES,
        default=d.weighting_scheme,
        help="Timesteps: 'none' uniform; 'logit_normal'/'mode' sample that density; 'sigma_sqrt'/'cosmap' weight the "
        f"loss (diffusers); 'weighted' ai-toolkit's per-timestep loss weights. Default {d.weighting_scheme}.",
    )
    parser.add_argument("--logit-mean", type=float, default=d.logit_mean, help="Mean for logit_normal.")
    parser.add_argument("--logit-std", type=float, default=d.logit_std, help="Std for logit_normal.")
    parser.add_argument("--mode-scale", type=float, default=d.mode_scale, help="Scale for mode.")
    parser.add_argument(
        "--caption-dropout",
        type=float,
        default=d.caption_dropout,
        help=f"Share of samples trained with the trigger word alone as caption (default {d.caption_dropout:g}).",
    )
    parser.add_argument("--max-sequence-length", type=int, default=d.max_sequence_length, help="T5 tokens per caption.")
    parser.add_argument("--gradient-checkpointing", action="store_true", help="Trade compute for activation memory.")
    parser.add_argument("--use-8bit-adam", action="store_true", help=f"8-bit AdamW (needs {BITSANDBYTES_PIN}, CUDA).")
    parser.add_argument("--adam-weight-decay", type=float, default=d.adam_weight_decay, help="AdamW weight decay.")
    parser.add_argument(
        "--max-grad-norm", type=float, default=d.max_grad_norm, help="Gradient clipping norm (0 = off)."
    )
    parser.add_argument("--seed", type=int, default=d.seed, help="Seed of the LoRA init and of every step's draws.")


def _check_args(args: argparse.Namespace) -> None:
    positive = (
        "rank",
        "batch_size",
        "gradient_accumulation_steps",
        "checkpointing_steps",
        "checkpoints_total_limit",
        "held_in_pairs",
        "max_sequence_length",
    )
    for name in positive:
        if getattr(args, name) < 1:
            raise InvalidRequest(f"--{name.replace('_', '-')} must be at least 1")
    if args.out.suffix != ".safetensors":
        raise InvalidRequest(f"--out must be a .safetensors file, got {args.out.name}")
    if (args.steps is not None and args.steps < 1) or (args.epochs is not None and args.epochs < 1):
        raise InvalidRequest("--steps and --epochs must be at least 1")
    if args.steps is not None and args.epochs is not None:
        raise InvalidRequest("give --steps or --epochs, not both")
    if args.lr <= 0 or (args.alpha is not None and args.alpha <= 0):
        raise InvalidRequest("--lr and --alpha must be positive")
    if any(side < 16 or side % 16 for side in args.resolution):
        raise InvalidRequest(f"every --resolution must be a multiple of 16, got {args.resolution}")
    if not 0 <= args.caption_dropout < 1:
        raise InvalidRequest("--caption-dropout must be in [0, 1)")
    if args.guidance_scale < 0 or args.logit_std <= 0:
        raise InvalidRequest("--guidance-scale must be 0 or more and --logit-std positive")
    if args.resume and args.overwrite:
        raise InvalidRequest("--resume and --overwrite contradict each other: choose one")
    if args.out.exists() and not args.overwrite:
        raise InvalidRequest(f"{args.out} already exists; pass --overwrite to replace it")
    args.resolution = sorted(set(args.resolution))
    if args.work_dir is None:
        args.work_dir = args.out.with_name(f"{args.out.stem}-training")


def main(args: argparse.Namespace) -> int:
    """Train; 0 on success, 2 with a message on bad input, 3 on out-of-memory, 1 on other failures."""
    return report_errors(lambda: _train_and_log(args))


def _train_and_log(args: argparse.Namespace) -> int:
    _check_args(args)
    result = train(args)
    logger.info(
        "LoRA written to %s after %d steps (%.1f s); held-in loss %.4f -> %.4f; ai-toolkit config %s",
        result.out,
        result.steps,
        result.seconds,
        result.eval_loss_start,
        result.eval_loss_end,
        result.ai_toolkit_config,
    )
    return 0


# --- the run --------------------------------------------------------------------------------------------------


def train(args: argparse.Namespace) -> TrainResult:
    """The whole run, as numbered steps. ``args`` as from ``add_arguments`` (after ``_check_args``)."""
    import torch

    started = time.perf_counter()
    # 1. Read the pairs, bucket them, and load the Kontext pipeline (the transformer is the only trained module)
    records = read_records(args.data)
    samples = plan_samples(_target_sizes(args.data, records), tuple(args.resolution))
    work = _prepare_work_dir(args)  # refuses leftover checkpoints before the slow part
    recipe = TrainingRecipe.from_args(args)
    recipe = replace(recipe, steps=recipe.total_steps(len(samples)), epochs=None)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    weight_dtype = _weight_dtype(args.mixed_precision, device)
    pipe, kontext_id = _load_kontext(args.preset, weight_dtype)
    transformer = pipe.transformer
    transformer.requires_grad_(False)
    _check_rank(transformer, recipe)

    # 2. Cache the caption embeddings and the latents of both images of every sample
    largest = max(samples, key=lambda sample: sample.height * sample.width)
    with _oom_advice(args, (largest.height, largest.width)):
        cache = _cache_pairs(pipe, args.data, records, samples, device, weight_dtype, recipe.max_sequence_length)
    if not args.validation_steps:  # only validation images need the text encoders and the VAE again
        _park(pipe, device)

    # 3. Add the LoRA (seeded init), cast the base to the training dtype, optimiser
    torch.manual_seed(recipe.seed)
    transformer.to(device=device, dtype=weight_dtype)
    _add_lora(transformer, recipe)
    if recipe.gradient_checkpointing:
        transformer.enable_gradient_checkpointing()
    params = [p for p in transformer.parameters() if p.requires_grad]
    optimizer = _make_optimizer(params, recipe)

    # 4. Resume: LoRA weights, optimiser state and step from the latest checkpoint
    start_step = _resume(work, transformer, optimizer, run_identity(args)) if args.resume else 0

    # 5. Train
    scheduler = _flow_scheduler(pipe)
    writer = _tensorboard(work / "logs")
    assert recipe.steps is not None
    result = TrainResult(out=args.out, steps=recipe.steps, resumed_from=start_step, recipe=recipe, samples=len(cache))
    held_in = _held_in_samples(cache, args.held_in_pairs)
    result.eval_loss_start = _held_in_loss(transformer, cache, held_in, scheduler, recipe, device)
    writer.add_scalar("eval/held_in_loss", result.eval_loss_start, start_step)
    with _oom_advice(args, (largest.height, largest.width)):
        sample = _validation_sample(args.data, records[0], cache.samples[0]) if args.validation_steps else None
        _loop(pipe, cache, scheduler, optimizer, params, writer, work, result, args, start_step, sample)
    result.eval_loss_end = _held_in_loss(transformer, cache, held_in, scheduler, recipe, device)
    writer.add_scalar("eval/held_in_loss", result.eval_loss_end, recipe.steps)
    writer.close()

    # 6. Save the LoRA in diffusers' format (checked), and the same run as an ai-toolkit config
    save_lora(transformer, args.out, recipe, dtype=weight_dtype)
    result.ai_toolkit_config = write_ai_toolkit_export(
        args.data,
        recipe,
        work / CONFIG_NAME,
        model=kontext_id,
        validation=_validation_plan(args, cache.samples[0]),
        dtype="bf16" if weight_dtype == torch.bfloat16 else "fp32",
    )
    result.seconds = time.perf_counter() - started
    return result


def _loop(
    pipe: Any,
    cache: PairCache,
    scheduler: Any,
    optimizer: torch.optim.Optimizer,
    params: list[torch.nn.Parameter],
    writer: Any,
    work: Path,
    result: TrainResult,
    args: argparse.Namespace,
    start_step: int,
    sample: tuple[Any, str, tuple[int, int]] | None,
) -> None:
    import torch
    from tqdm.auto import tqdm

    recipe = result.recipe
    transformer = pipe.transformer
    device = _device_of(transformer)
    bar = tqdm(total=result.steps, initial=start_step, desc="training", unit="step")
    for step in range(start_step, result.steps):
        transformer.train()
        lr = _set_lr(optimizer, step, result.steps, recipe)
        loss_value = 0.0
        for micro in range(recipe.gradient_accumulation_steps):
            index = step * recipe.gradient_accumulation_steps + micro
            indices = _batch_indices(index, cache.samples, recipe)
            generator = _step_generator(recipe.seed, index)
            loss = kontext_loss(transformer, cache, scheduler, indices, generator, recipe, device)
            (loss / recipe.gradient_accumulation_steps).backward()
            loss_value += float(loss.detach()) / recipe.gradient_accumulation_steps
        if recipe.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(params, recipe.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        result.losses.append(loss_value)
        writer.add_scalar("train/loss", loss_value, step + 1)
        writer.add_scalar("train/lr", lr, step + 1)
        bar.update(1)
        bar.set_postfix(loss=f"{loss_value:.4f}", lr=f"{lr:.2e}")
        done = step + 1
        if done % args.checkpointing_steps == 0 and done < result.steps:
            save_checkpoint(work, done, transformer, optimizer, args, run_identity(args))
        if sample is not None and done % args.validation_steps == 0:
            _validate(pipe, work, done, writer, args, sample)
    bar.close()


# --- models ---------------------------------------------------------------------------------------------------


def _load_kontext(preset: str | None, dtype: torch.dtype) -> tuple[Any, str]:
    """The Kontext pipeline alone (no FLUX.1-dev transformer: training never needs it) in ``dtype``, and its id.

    Same sources as ``models.registry``: the VAE, text encoders, tokenizers and scheduler from the FLUX.1-dev repo
    (identical in the Kontext repo), the transformer from the Kontext repo; tiny or full.
    """
    import torch
    from diffusers import FluxKontextPipeline, FluxTransformer2DModel

    from ..config import Settings
    from ..errors import ModelLoadError
    from ..models.registry import model_ids_for, resolve_preset

    overrides: dict[str, Any] = {} if preset is None else {"preset": preset}
    settings = Settings(**overrides)
    flux_id, kontext_id = model_ids_for(settings, resolve_preset(settings.preset, torch.cuda.is_available()))
    try:
        transformer = FluxTransformer2DModel.from_pretrained(
            kontext_id, subfolder="transformer", dtype=dtype, use_safetensors=True
        )
        pipe = FluxKontextPipeline.from_pretrained(flux_id, transformer=transformer, dtype=dtype, use_safetensors=True)
    except (OSError, ValueError) as error:
        raise ModelLoadError(f"cannot load the Kontext pipeline ({flux_id}, {kontext_id}): {error}") from error
    pipe.set_progress_bar_config(disable=True)
    for module in (pipe.vae, pipe.text_encoder, pipe.text_encoder_2):
        module.requires_grad_(False)
        module.eval()
    return pipe, kontext_id


def _park(pipe: Any, device: torch.device) -> None:
    """Move the text encoders and the VAE off the GPU once their outputs are cached."""
    import torch

    if device.type != "cuda":
        return
    for module in (pipe.vae, pipe.text_encoder, pipe.text_encoder_2):
        module.to("cpu")
    torch.cuda.empty_cache()


def _weight_dtype(mixed_precision: str, device: torch.device) -> torch.dtype:
    import torch

    if mixed_precision == "bf16" or (mixed_precision == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return torch.float32


def target_layers(transformer: torch.nn.Module, recipe: TrainingRecipe) -> list[tuple[str, torch.nn.Linear]]:
    """The Linear layers a recipe's LoRA goes on, by PEFT's own matching of ``target_modules``."""
    import torch
    from peft import LoraConfig
    from peft.tuners.tuners_utils import check_target_module_exists

    config = LoraConfig(r=recipe.rank, target_modules=lora_target_modules(recipe.targets))
    return [
        (name, module)
        for name, module in transformer.named_modules()
        if isinstance(module, torch.nn.Linear) and check_target_module_exists(config, name)
    ]


def _check_rank(transformer: torch.nn.Module, recipe: TrainingRecipe) -> None:
    layers = target_layers(transformer, recipe)
    if not layers:
        raise InvalidRequest(f"the Kontext transformer has none of the layers --targets {recipe.targets} names")
    name, smallest = min(layers, key=lambda item: min(item[1].in_features, item[1].out_features))
    limit = min(smallest.in_features, smallest.out_features)
    if recipe.rank > limit:
        raise InvalidRequest(
            f"--rank {recipe.rank} does not fit this transformer: its smallest targeted layer {name} "
            f"({smallest.in_features}->{smallest.out_features}) allows at most rank {limit}"
        )


def _add_lora(transformer: Any, recipe: TrainingRecipe) -> None:
    from peft import LoraConfig

    config = LoraConfig(
        r=recipe.rank,
        lora_alpha=recipe.lora_alpha,  # type: ignore[arg-type]  # PEFT scales by alpha / r: a float alpha works
        init_lora_weights="gaussian",
        target_modules=lora_target_modules(recipe.targets),
    )
    transformer.add_adapter(config, adapter_name=ADAPTER_NAME)
    transformer.set_adapters([ADAPTER_NAME])
    for parameter in transformer.parameters():
        if parameter.requires_grad:
            parameter.data = parameter.data.float()  # LoRA weights train in fp32 even over a bf16 base


def _make_optimizer(params: list[torch.nn.Parameter], recipe: TrainingRecipe) -> torch.optim.Optimizer:
    import torch

    if not recipe.use_8bit_adam:
        return torch.optim.AdamW(params, lr=recipe.lr, weight_decay=recipe.adam_weight_decay)
    try:
        import bitsandbytes as bnb
    except ImportError as error:
        raise InvalidRequest(
            f"--use-8bit-adam needs bitsandbytes, which is not installed: pip install {BITSANDBYTES_PIN} "
            "(CUDA only), or train without --use-8bit-adam"
        ) from error
    optimizer: torch.optim.Optimizer = bnb.optim.AdamW8bit(params, lr=recipe.lr, weight_decay=recipe.adam_weight_decay)
    return optimizer


def _set_lr(optimizer: torch.optim.Optimizer, step: int, total: int, recipe: TrainingRecipe) -> float:
    """The learning rate of ``step`` — a pure function of the step, so a resumed run needs no scheduler state."""
    if recipe.lr_warmup_steps and step < recipe.lr_warmup_steps:
        factor = (step + 1) / recipe.lr_warmup_steps
    else:
        progress = (step - recipe.lr_warmup_steps) / max(1, total - recipe.lr_warmup_steps)
        factor = {
            "constant": 1.0,
            "linear": max(0.0, 1.0 - progress),
            "cosine": 0.5 * (1.0 + math.cos(math.pi * progress)),
        }[recipe.lr_scheduler]
    lr = float(recipe.lr * factor)
    for group in optimizer.param_groups:
        group["lr"] = lr
    return lr


def _flow_scheduler(pipe: Any) -> Any:
    from diffusers import FlowMatchEulerDiscreteScheduler

    # A fresh copy: the pipeline's own scheduler is overwritten by set_timesteps on every inference call.
    return FlowMatchEulerDiscreteScheduler.from_config(pipe.scheduler.config)


def _device_of(module: torch.nn.Module) -> torch.device:
    return next(module.parameters()).device


# --- caching --------------------------------------------------------------------------------------------------


def _target_sizes(data: Path, records: list[PairRecord]) -> list[tuple[int, int]]:
    """(width, height) of every pair's target image: the size its buckets are chosen from."""
    from PIL import Image

    sizes = []
    for record in records:
        assert record.transformed is not None  # read_records checked both images exist
        with Image.open(data / record.transformed) as image:
            sizes.append(image.size)
    return sizes


def _load_sample_pixels(pipe: Any, data: Path, record: PairRecord, sample: Sample) -> tuple[torch.Tensor, ...]:
    """Target and condition of one sample, both fitted to its bucket with the target's geometry."""
    from PIL import Image

    assert record.transformed is not None and record.original is not None
    with Image.open(data / record.transformed) as handle:
        target = handle.convert("RGB")
    with Image.open(data / record.original) as handle:
        condition = handle.convert("RGB")
    bucket = (sample.height, sample.width)
    return tuple(
        pipe.image_processor.preprocess(
            fit_to_bucket(image, target.size, bucket), height=sample.height, width=sample.width
        )
        for image in (target, condition)
    )


def _validation_sample(data: Path, record: PairRecord, sample: Sample) -> tuple[Any, str, tuple[int, int]]:
    """The first pair's original at its first bucket, its caption and the bucket (height, width)."""
    from PIL import Image

    assert record.original is not None and record.transformed is not None
    with Image.open(data / record.transformed) as handle:
        target_size = handle.size
    with Image.open(data / record.original) as handle:
        image = fit_to_bucket(handle, target_size, (sample.height, sample.width))
    return image, record.caption, (sample.height, sample.width)


def _encode_latents(vae: Any, pixels: torch.Tensor) -> torch.Tensor:
    import torch

    with torch.no_grad():
        latents: torch.Tensor = vae.encode(pixels.to(vae.device, vae.dtype)).latent_dist.mode()
    shift, scale = float(vae.config.shift_factor), float(vae.config.scaling_factor)
    return (latents - shift) * scale


def _encode_caption(pipe: Any, caption: str, device: torch.device, max_len: int) -> tuple[torch.Tensor, ...]:
    import torch

    with torch.no_grad():
        prompt_embeds, pooled, text_ids = pipe.encode_prompt(
            prompt=caption, prompt_2=None, device=device, max_sequence_length=max_len
        )
    return prompt_embeds, pooled, text_ids


def _cache_pairs(
    pipe: Any,
    data: Path,
    records: list[PairRecord],
    samples: list[Sample],
    device: torch.device,
    dtype: torch.dtype,
    max_len: int,
) -> PairCache:
    import torch
    from tqdm.auto import tqdm

    for module in (pipe.vae, pipe.text_encoder, pipe.text_encoder_2):
        module.to(device)
    targets, conds = [], []
    for sample in tqdm(samples, desc="caching latents", unit="sample"):
        target_pixels, cond_pixels = _load_sample_pixels(pipe, data, records[sample.pair], sample)
        targets.append(_encode_latents(pipe.vae, target_pixels)[0].to(device, dtype))
        conds.append(_encode_latents(pipe.vae, cond_pixels)[0].to(device, dtype))
    embeds, pooled = [], []
    for record in tqdm(records, desc="caching captions", unit="pair"):
        prompt_embeds, pooled_embeds, text_ids = _encode_caption(pipe, record.caption, device, max_len)
        embeds.append(prompt_embeds)
        pooled.append(pooled_embeds)
    # ai-toolkit's dropped caption when a trigger word is set: the trigger word alone (get_dropout_caption).
    dropout_embeds, dropout_pooled, _ids = _encode_caption(pipe, TRIGGER_WORD, device, max_len)
    return PairCache(
        samples=samples,
        target=targets,
        cond=conds,
        prompt_embeds=torch.cat(embeds).to(device, dtype),
        pooled=torch.cat(pooled).to(device, dtype),
        text_ids=text_ids.to(device, dtype),
        dropout_embeds=dropout_embeds.to(device, dtype),
        dropout_pooled=dropout_pooled.to(device, dtype),
    )


# --- sampling and the held-in loss ----------------------------------------------------------------------------


def _step_generator(seed: int, micro_index: int) -> torch.Generator:
    """The generator of one micro-batch's noise, timesteps and dropped captions, seeded by (seed, micro index)."""
    import torch

    return torch.Generator(device="cpu").manual_seed(seed * 1_000_003 + micro_index)


def _batch_indices(micro_index: int, samples: list[Sample], recipe: TrainingRecipe) -> list[int]:
    """Micro-batch ``micro_index`` of the endless stream of epochs: batch ``i % B`` of epoch ``i // B``."""
    per_epoch = len(epoch_batches(samples, recipe.batch_size, recipe.seed, 0))
    epoch, position = divmod(micro_index, per_epoch)
    return epoch_batches(samples, recipe.batch_size, recipe.seed, epoch)[position]


def _held_in_samples(cache: PairCache, pairs: int) -> list[int]:
    """The first sample (smallest bucket) of each of the first ``pairs`` pairs."""
    first: dict[int, int] = {}
    for index, sample in enumerate(cache.samples):
        if sample.pair < pairs:
            first.setdefault(sample.pair, index)
    return list(first.values())


def _held_in_loss(
    transformer: Any,
    cache: PairCache,
    held_in: list[int],
    scheduler: Any,
    recipe: TrainingRecipe,
    device: torch.device,
) -> float:
    """Plain MSE on the held-in samples at fixed noise and sigmas 0.25/0.5/0.75 (comparable across steps)."""
    import torch

    transformer.eval()
    total = 0.0
    sigmas = (0.25, 0.5, 0.75)
    for position, index in enumerate(held_in):
        for k, sigma in enumerate(sigmas):
            generator = torch.Generator(device="cpu").manual_seed(10_000 + position * len(sigmas) + k)
            with torch.no_grad():
                loss = kontext_loss(
                    transformer, cache, scheduler, [index], generator, recipe, device, torch.tensor([sigma])
                )
            total += float(loss)
    return total / (len(held_in) * len(sigmas))


# --- work folder, checkpoints and resume ----------------------------------------------------------------------


def _prepare_work_dir(args: argparse.Namespace) -> Path:
    work: Path = args.work_dir
    existing = list_checkpoints(work)
    if existing and not args.resume:
        if not args.overwrite:
            raise InvalidRequest(
                f"{work} holds checkpoints of an earlier run (latest {existing[-1].name}): pass --resume to continue "
                "it, or --overwrite to start again"
            )
        shutil.rmtree(work / "checkpoints")
    for sub in ("checkpoints", "logs", "validation"):
        (work / sub).mkdir(parents=True, exist_ok=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    return work


def list_checkpoints(work: Path) -> list[Path]:
    """Finished checkpoints, oldest first (a half-written one is a hidden ``.tmp`` folder and never listed)."""
    folder = work / "checkpoints"
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if p.is_dir() and p.name.startswith(CHECKPOINT_PREFIX)]
    return sorted(found, key=lambda p: int(p.name.removeprefix(CHECKPOINT_PREFIX)))


# What a resumed run must share with the interrupted one for the result to be the same training.
_IDENTITY = (
    "targets",
    "rank",
    "alpha",
    "seed",
    "batch_size",
    "gradient_accumulation_steps",
    "resolution",
    "guidance_scale",
    "weighting_scheme",
    "logit_mean",
    "logit_std",
    "mode_scale",
    "caption_dropout",
    "max_sequence_length",
)


def run_identity(args: argparse.Namespace, names: tuple[str, ...] = _IDENTITY) -> dict[str, Any]:
    """The options a resumed run must share with the checkpoint's (``names``: the trainer's own list)."""
    identity = {name: getattr(args, name) for name in names}
    identity["data"] = str(args.data.resolve())
    return identity


def save_checkpoint(
    work: Path,
    step: int,
    transformer: Any,
    optimizer: torch.optim.Optimizer,
    args: argparse.Namespace,
    identity: dict[str, Any],
) -> Path:
    """LoRA + optimiser state (safetensors) + step (JSON), written to a hidden folder and renamed into place."""
    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import save_file

    folder = work / "checkpoints"
    final = folder / f"{CHECKPOINT_PREFIX}{step:06d}"
    tmp = folder / f".{final.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    lora = get_peft_model_state_dict(transformer, adapter_name=ADAPTER_NAME)
    save_file({k: v.detach().cpu().contiguous() for k, v in lora.items()}, str(tmp / "lora.safetensors"))
    tensors, layout = _flatten_optimizer(optimizer.state_dict())
    save_file(tensors, str(tmp / "optimizer.safetensors"), metadata={"layout": json.dumps(layout)})
    state = {"step": step, "run": identity}
    (tmp / "state.json").write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    for old in list_checkpoints(work)[: -args.checkpoints_total_limit]:
        shutil.rmtree(old)
    logger.info("checkpoint %s", final)
    return final


def _flatten_optimizer(state_dict: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    import torch

    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {}
    for index, entries in state_dict["state"].items():
        for name, value in entries.items():
            key = f"{index}.{name}"
            if isinstance(value, torch.Tensor):
                tensors[f"state.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[key] = value
    return tensors, {"param_groups": state_dict["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], layout: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        index, name = key.removeprefix("state.").split(".", 1)
        state.setdefault(int(index), {})[name] = value
    for key, value in layout["scalars"].items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    return {"state": state, "param_groups": layout["param_groups"]}


def _resume(work: Path, transformer: Any, optimizer: torch.optim.Optimizer, identity: dict[str, Any]) -> int:
    from peft.utils import set_peft_model_state_dict
    from safetensors import safe_open
    from safetensors.torch import load_file

    checkpoints = list_checkpoints(work)
    if not checkpoints:
        logger.warning("--resume: no checkpoint in %s, starting a new run", work / "checkpoints")
        return 0
    latest = checkpoints[-1]
    state = json.loads((latest / "state.json").read_text(encoding="utf-8"))
    changed = sorted(k for k, v in identity.items() if state["run"].get(k) != v)
    if changed:
        raise InvalidRequest(
            f"cannot resume from {latest}: it was trained with different {', '.join(changed)}; "
            "use the same options, or --overwrite to start again"
        )
    result = set_peft_model_state_dict(
        transformer, load_file(str(latest / "lora.safetensors")), adapter_name=ADAPTER_NAME
    )
    unexpected = getattr(result, "unexpected_keys", [])
    if unexpected:
        raise InvalidRequest(f"checkpoint {latest} does not match this LoRA (unexpected keys, e.g. {unexpected[0]})")
    with safe_open(str(latest / "optimizer.safetensors"), framework="pt") as handle:
        layout = json.loads((handle.metadata() or {})["layout"])
    optimizer.load_state_dict(_unflatten_optimizer(load_file(str(latest / "optimizer.safetensors")), layout))
    step = int(state["step"])
    logger.info("resuming from %s (step %d)", latest, step)
    return step


# --- output ---------------------------------------------------------------------------------------------------


def save_lora(transformer: Any, out: Path, recipe: TrainingRecipe, dtype: torch.dtype | None = None) -> None:
    """Write the adapter in diffusers' format (``transformer.``-prefixed keys), atomically, and check it.

    ``alpha / rank`` is folded into ``lora_B`` and the adapter metadata says ``lora_alpha = r``: every loader then
    applies the LoRA exactly as trained, whether it reads that metadata (diffusers) or not (ComfyUI reads alpha only
    from ``.alpha`` tensors). The recipe, with the alpha it was trained at, is recorded under ``RECIPE_METADATA_KEY``.
    """
    import torch
    from diffusers import FluxKontextPipeline
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict
    from safetensors import safe_open
    from safetensors.torch import save_file

    dtype = dtype or torch.float32
    state = get_peft_model_state_dict(transformer, adapter_name=ADAPTER_NAME)
    layers = {
        key: (value.float() * recipe.lora_scale if "lora_B" in key else value.float()).to(dtype).detach().cpu()
        for key, value in state.items()
    }
    target_modules = lora_target_modules(recipe.targets)
    metadata = LoraConfig(r=recipe.rank, lora_alpha=recipe.rank, target_modules=target_modules).to_dict()
    if isinstance(metadata["target_modules"], (set, list)):
        metadata["target_modules"] = sorted(metadata["target_modules"])
    tmp = out.parent / f".{out.stem}.tmp.safetensors"
    FluxKontextPipeline.save_lora_weights(
        save_directory=str(out.parent),
        transformer_lora_layers={key: value.contiguous() for key, value in layers.items()},
        weight_name=tmp.name,
        transformer_lora_adapter_metadata=metadata,
    )
    with safe_open(str(tmp), framework="pt") as handle:
        header = dict(handle.metadata() or {})
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 - safe_open is not a dict
    recipe_record = {**recipe.to_json_dict(), "alpha_folded_into_lora_B": True}
    header[RECIPE_METADATA_KEY] = json.dumps(recipe_record, sort_keys=True)
    save_file(tensors, str(tmp), metadata=header)
    os.replace(tmp, out)
    check_saved_lora(out, expected_layers=sum(1 for key in layers if "lora_A" in key), recipe=recipe)


def check_saved_lora(path: Path, expected_layers: int, recipe: TrainingRecipe) -> None:
    """The file must hold ``transformer.``-prefixed LoRA keys (an unprefixed PEFT dict silently loads nothing) of
    the recipe's rank, and metadata that makes loaders apply them at scale 1 (alpha folded in)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        keys = list(handle.keys())
        header = handle.metadata() or {}
        ranks = {handle.get_slice(key).get_shape()[0] for key in keys if "lora_A" in key}
    unprefixed = [key for key in keys if not key.startswith("transformer.")]
    layers = sum(1 for key in keys if "lora_A" in key)
    adapter = json.loads(header.get("lora_adapter_metadata", "{}"))
    recorded = json.loads(header.get(RECIPE_METADATA_KEY, "{}"))
    problems = []
    if unprefixed or layers != expected_layers or not layers:
        problems.append(
            f"{len(unprefixed)} keys without the 'transformer.' prefix, {layers} of {expected_layers} layers"
        )
    if ranks != {recipe.rank} or adapter.get("transformer.r") != adapter.get("transformer.lora_alpha"):
        problems.append(f"ranks {sorted(ranks)} / adapter metadata {adapter} instead of rank {recipe.rank} at scale 1")
    if recorded.get("alpha") != recipe.lora_alpha or recorded.get("targets") != recipe.targets:
        problems.append(f"recipe record {recorded} does not match the run")
    if problems:
        raise InvalidLora(f"saved LoRA {path} is malformed: {'; '.join(problems)}")


def _tensorboard(folder: Path) -> Any:
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=str(folder))


def _validation_plan(args: argparse.Namespace, first: Sample) -> RunSchedule:
    return RunSchedule(
        checkpointing_steps=args.checkpointing_steps,
        checkpoints_total_limit=args.checkpoints_total_limit,
        validation_steps=args.validation_steps,
        validation_inference_steps=args.validation_inference_steps,
        validation_size=(first.height, first.width),
    )


def _validate(
    pipe: Any, work: Path, step: int, writer: Any, args: argparse.Namespace, sample: tuple[Any, str, tuple[int, int]]
) -> Path:
    """Edit the first pair's original with its caption and the LoRA being trained; save + log the image."""
    import numpy as np
    import torch

    image, caption, (height, width) = sample
    transformer = pipe.transformer
    transformer.eval()
    device = _device_of(transformer)
    generator = torch.Generator(device=device).manual_seed(args.seed)
    result = pipe(
        image=image,
        prompt=caption,
        height=height,
        width=width,
        num_inference_steps=args.validation_inference_steps,
        guidance_scale=SCHEDULE_DEFAULTS.validation_guidance,
        generator=generator,
        max_area=height * width,
        _auto_resize=False,
        max_sequence_length=args.max_sequence_length,
    )
    edited = result.images[0]
    path = work / "validation" / f"step_{step:06d}.png"
    edited.save(path)
    writer.add_image("validation", np.asarray(edited), step, dataformats="HWC")
    transformer.train()
    logger.info("validation image %s", path)
    return path


@contextmanager
def _oom_advice(args: argparse.Namespace, resolution: tuple[int, int]) -> Iterator[None]:
    """Turn CUDA out-of-memory into OutOfMemory naming the knobs still left to turn."""
    import torch

    try:
        yield
    except torch.OutOfMemoryError as error:
        knobs = []
        if args.batch_size > 1:
            effective = args.batch_size * args.gradient_accumulation_steps
            knobs.append(f"--batch-size 1 --gradient-accumulation-steps {effective} (same effective batch)")
        if max(resolution) > 512:
            knobs.append("--resolution 512 (the largest bucket is the memory peak)")
        if not args.gradient_checkpointing:
            knobs.append("--gradient-checkpointing")
        if not args.use_8bit_adam:
            knobs.append(f"--use-8bit-adam (pip install {BITSANDBYTES_PIN})")
        if args.rank > 8:
            knobs.append("--rank 8")
        advice = "; ".join(knobs) if knobs else "a GPU with more memory (every knob is already at its lightest)"
        raise OutOfMemory(
            f"CUDA ran out of memory training at {resolution[0]}x{resolution[1]}, batch size {args.batch_size}, "
            f"rank {args.rank}. Turn a knob: {advice}. ({str(error).splitlines()[0] if str(error) else 'OOM'})"
        ) from error


if __name__ == "__main__":  # pragma: no cover - python -m alch3mist.training.train
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    _parser = argparse.ArgumentParser(prog="alch3mist lora train", description=(__doc__ or "").splitlines()[0])
    add_arguments(_parser)
    sys.exit(main(_parser.parse_args()))
