"""``alch3mist lora train``: a LoRA on the FLUX.1 Kontext [dev] transformer, trained on (original, transformed) pairs.

The objective is the one of diffusers' ``examples/dreambooth/train_dreambooth_lora_flux_kontext.py``:

- flow matching on the *transformed* image's latents x0: ``x_t = (1 - sigma) x0 + sigma noise``, target
  ``noise - x0``, timesteps drawn as the FLUX scheduler's (uniform, logit-normal or mode weighting);
- the *original* image's latents are packed and appended to the noisy target's token sequence, their position ids
  marked with ``ids[..., 0] = 1`` (that is how Kontext tells the reference image from the image being made);
- the loss is taken on the target tokens only (the condition tokens' predictions are dropped).

Text embeddings (CLIP pooled + T5) and VAE latents are computed once and cached. Every random draw of a step
(batch, noise, timesteps) comes from a generator seeded by (seed, step), so a run resumed from a checkpoint
continues exactly as the uninterrupted run would have.

Outputs: the LoRA ``--out FILE.safetensors`` (diffusers format, keys prefixed ``transformer.``, alpha folded into
``lora_B`` so every loader applies it the same), and a work folder ``--work-dir`` (default ``<out>-training/``) with
``checkpoints/checkpoint-000250/`` (LoRA + optimizer state, safetensors only, no pickle), ``logs/`` (TensorBoard)
and ``validation/`` (images every ``--validation-steps``).
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InvalidRequest, OutOfMemory, report_errors
from .dataset import DatasetError, PairRecord, centre_crop_resize, read_records

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

__all__ = ["TARGET_MODULES", "TrainResult", "add_arguments", "main", "train"]

ADAPTER_NAME = "alch3mist_training"
# The attention projections of both block kinds: image stream (to_q/k/v, to_out.0) and text stream (add_*).
TARGET_MODULES = ["to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out"]
CHECKPOINT_PREFIX = "checkpoint-"
BITSANDBYTES_PIN = "bitsandbytes==0.50.2"


@dataclass
class PairCache:
    """Everything a step needs, computed once: latents of targets and conditions, and the caption embeddings."""

    target: torch.Tensor  # [N, C, h, w] transformed images, scaled and shifted like the pipeline does
    cond: torch.Tensor  # [N, C, h, w] original images
    prompt_embeds: torch.Tensor  # [N, L, D] T5
    pooled: torch.Tensor  # [N, P] CLIP
    text_ids: torch.Tensor  # [L, 3]

    def __len__(self) -> int:
        return int(self.target.shape[0])


@dataclass
class TrainResult:
    out: Path
    steps: int
    resumed_from: int
    losses: list[float] = field(default_factory=list)
    eval_loss_start: float = math.nan
    eval_loss_end: float = math.nan
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
    parser.add_argument("--rank", type=int, default=16, help="LoRA rank (8-16 suits 50-200 pairs).")
    parser.add_argument("--alpha", type=int, default=None, help="LoRA alpha (default: the rank, i.e. scale 1).")
    parser.add_argument("--lr", type=float, default=1e-4, help="Learning rate.")
    parser.add_argument(
        "--lr-scheduler", choices=("constant", "cosine", "linear"), default="constant", help="Learning-rate schedule."
    )
    parser.add_argument("--lr-warmup-steps", type=int, default=0, help="Linear warm-up steps.")
    parser.add_argument("--steps", type=int, default=None, help="Optimiser steps (default: from --epochs).")
    parser.add_argument("--epochs", type=int, default=None, help="Passes over the pairs, when --steps is not given.")
    parser.add_argument("--batch-size", type=int, default=1, help="Pairs per micro-batch.")
    parser.add_argument("--gradient-accumulation-steps", type=int, default=1, help="Micro-batches per optimiser step.")
    parser.add_argument(
        "--resolution", type=int, default=None, help="Square training side (default: the images' size)."
    )
    parser.add_argument(
        "--mixed-precision",
        choices=("auto", "no", "bf16"),
        default="auto",
        help="bf16 base weights (LoRA in fp32); auto = bf16 on CUDA, fp32 on the CPU.",
    )
    parser.add_argument("--gradient-checkpointing", action="store_true", help="Trade compute for activation memory.")
    parser.add_argument("--use-8bit-adam", action="store_true", help=f"8-bit AdamW (needs {BITSANDBYTES_PIN}, CUDA).")
    parser.add_argument("--adam-weight-decay", type=float, default=1e-4, help="AdamW weight decay.")
    parser.add_argument("--max-grad-norm", type=float, default=1.0, help="Gradient clipping norm (0 = off).")
    parser.add_argument("--guidance-scale", type=float, default=1.0, help="Guidance embedding value during training.")
    parser.add_argument(
        "--weighting-scheme",
        choices=("none", "logit_normal", "mode"),
        default="none",
        help="Timestep sampling density (diffusers' compute_density_for_timestep_sampling).",
    )
    parser.add_argument("--logit-mean", type=float, default=0.0, help="Mean for logit_normal weighting.")
    parser.add_argument("--logit-std", type=float, default=1.0, help="Std for logit_normal weighting.")
    parser.add_argument("--mode-scale", type=float, default=1.29, help="Scale for mode weighting.")
    parser.add_argument("--max-sequence-length", type=int, default=512, help="T5 tokens per caption.")
    parser.add_argument(
        "--held-in-pairs", type=int, default=16, help="Pairs the fixed-noise held-in loss is measured on (start/end)."
    )
    parser.add_argument("--seed", type=int, default=0, help="Seed of the LoRA init and of every step's draws.")
    parser.add_argument(
        "--checkpointing-steps", type=int, default=250, help="Save a resumable checkpoint every N steps."
    )
    parser.add_argument("--checkpoints-total-limit", type=int, default=3, help="Keep at most this many checkpoints.")
    parser.add_argument("--resume", action="store_true", help="Continue from the latest checkpoint in the work folder.")
    parser.add_argument("--validation-steps", type=int, default=0, help="Validation image every N steps (0 = off).")
    parser.add_argument(
        "--validation-inference-steps", type=int, default=20, help="Kontext steps per validation image."
    )
    parser.add_argument("--overwrite", action="store_true", help="Replace an existing --out and its checkpoints.")


def _check_args(args: argparse.Namespace) -> None:
    positive = (
        "rank",
        "batch_size",
        "gradient_accumulation_steps",
        "checkpointing_steps",
        "checkpoints_total_limit",
        "held_in_pairs",
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
    if args.resolution is not None and (args.resolution < 16 or args.resolution % 16):
        raise InvalidRequest("--resolution must be a multiple of 16")
    if args.resume and args.overwrite:
        raise InvalidRequest("--resume and --overwrite contradict each other: choose one")
    if args.out.exists() and not args.overwrite:
        raise InvalidRequest(f"{args.out} already exists; pass --overwrite to replace it")
    if args.work_dir is None:
        args.work_dir = args.out.with_name(f"{args.out.stem}-training")


def main(args: argparse.Namespace) -> int:
    """Train; 0 on success, 2 with a message on bad input, 3 on out-of-memory, 1 on other failures."""
    return report_errors(lambda: _train_and_log(args))


def _train_and_log(args: argparse.Namespace) -> int:
    _check_args(args)
    result = train(args)
    logger.info(
        "LoRA written to %s after %d steps (%.1f s); held-in loss %.4f -> %.4f",
        result.out,
        result.steps,
        result.seconds,
        result.eval_loss_start,
        result.eval_loss_end,
    )
    return 0


# --- the run --------------------------------------------------------------------------------------------------


def train(args: argparse.Namespace) -> TrainResult:
    """The whole run, as numbered steps. ``args`` as from ``add_arguments`` (after ``_check_args``)."""
    import torch

    started = time.perf_counter()
    # 1. Read the pairs and load the Kontext pipeline (the transformer is the only trained module)
    records = read_records(args.data)
    resolution = _training_size(args.data, records, args.resolution)
    work = _prepare_work_dir(args)  # refuses leftover checkpoints before the slow part
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    weight_dtype = _weight_dtype(args.mixed_precision, device)
    pipe = _load_kontext(args.preset, weight_dtype)
    transformer = pipe.transformer
    transformer.requires_grad_(False)
    _check_rank(transformer, args.rank)

    # 2. Cache the caption embeddings and the latents of both images of every pair
    with _oom_advice(args, resolution):
        cache = _cache_pairs(pipe, args.data, records, resolution, device, weight_dtype, args.max_sequence_length)
    if not args.validation_steps:  # only validation images need the text encoders and the VAE again
        _park(pipe, device)

    # 3. Add the LoRA (seeded init), cast the base to the training dtype, optimiser
    torch.manual_seed(args.seed)
    transformer.to(device=device, dtype=weight_dtype)
    _add_lora(transformer, args.rank, args.alpha)
    if args.gradient_checkpointing:
        transformer.enable_gradient_checkpointing()
    params = [p for p in transformer.parameters() if p.requires_grad]
    optimizer = _make_optimizer(params, args)
    steps_total = _total_steps(args, len(cache))

    # 4. Resume: LoRA weights, optimiser state and step from the latest checkpoint
    start_step = _resume(work, transformer, optimizer, args) if args.resume else 0

    # 5. Train
    scheduler = _flow_scheduler(pipe)
    writer = _tensorboard(work / "logs")
    result = TrainResult(out=args.out, steps=steps_total, resumed_from=start_step)
    result.eval_loss_start = _held_in_loss(transformer, cache, scheduler, args, device)
    writer.add_scalar("eval/held_in_loss", result.eval_loss_start, start_step)
    with _oom_advice(args, resolution):
        sample = _validation_sample(args.data, records[0], resolution) if args.validation_steps else None
        _loop(pipe, cache, scheduler, optimizer, params, writer, work, result, args, start_step, resolution, sample)
    result.eval_loss_end = _held_in_loss(transformer, cache, scheduler, args, device)
    writer.add_scalar("eval/held_in_loss", result.eval_loss_end, steps_total)
    writer.close()

    # 6. Save the LoRA in diffusers' format and check it says what we trained
    save_lora(transformer, args.out, args.rank, args.alpha, dtype=weight_dtype)
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
    resolution: tuple[int, int],
    sample: tuple[Any, str] | None,
) -> None:
    import torch
    from tqdm.auto import tqdm

    transformer = pipe.transformer
    device = _device_of(transformer)
    bar = tqdm(total=result.steps, initial=start_step, desc="training", unit="step")
    for step in range(start_step, result.steps):
        transformer.train()
        lr = _set_lr(optimizer, step, result.steps, args)
        loss_value = 0.0
        for micro in range(args.gradient_accumulation_steps):
            index = step * args.gradient_accumulation_steps + micro
            indices = _batch_indices(index, args.batch_size, len(cache), args.seed)
            loss = kontext_loss(transformer, cache, scheduler, indices, _step_generator(args.seed, index), args, device)
            (loss / args.gradient_accumulation_steps).backward()
            loss_value += float(loss.detach()) / args.gradient_accumulation_steps
        if args.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(params, args.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        result.losses.append(loss_value)
        writer.add_scalar("train/loss", loss_value, step + 1)
        writer.add_scalar("train/lr", lr, step + 1)
        bar.update(1)
        bar.set_postfix(loss=f"{loss_value:.4f}", lr=f"{lr:.2e}")
        done = step + 1
        if done % args.checkpointing_steps == 0 and done < result.steps:
            save_checkpoint(work, done, transformer, optimizer, args)
        if sample is not None and done % args.validation_steps == 0:
            _validate(pipe, work, done, writer, args, resolution, sample)
    bar.close()


# --- models ---------------------------------------------------------------------------------------------------


def _load_kontext(preset: str | None, dtype: torch.dtype) -> Any:
    """The Kontext pipeline alone (no FLUX.1-dev transformer: training never needs it), in ``dtype``.

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
    return pipe


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


def _target_layers(transformer: torch.nn.Module) -> list[tuple[str, torch.nn.Linear]]:
    import torch

    return [
        (name, module)
        for name, module in transformer.named_modules()
        if isinstance(module, torch.nn.Linear) and any(name.endswith(f".{target}") for target in TARGET_MODULES)
    ]


def _check_rank(transformer: torch.nn.Module, rank: int) -> None:
    layers = _target_layers(transformer)
    if not layers:
        raise InvalidRequest("the Kontext transformer has none of the attention projections the LoRA targets")
    name, smallest = min(layers, key=lambda item: min(item[1].in_features, item[1].out_features))
    limit = min(smallest.in_features, smallest.out_features)
    if rank > limit:
        raise InvalidRequest(
            f"--rank {rank} does not fit this transformer: its smallest targeted layer {name} "
            f"({smallest.in_features}->{smallest.out_features}) allows at most rank {limit}"
        )


def _add_lora(transformer: Any, rank: int, alpha: int | None) -> None:
    from peft import LoraConfig

    config = LoraConfig(
        r=rank,
        lora_alpha=alpha if alpha is not None else rank,
        init_lora_weights="gaussian",
        target_modules=TARGET_MODULES,
    )
    transformer.add_adapter(config, adapter_name=ADAPTER_NAME)
    transformer.set_adapters([ADAPTER_NAME])
    for parameter in transformer.parameters():
        if parameter.requires_grad:
            parameter.data = parameter.data.float()  # LoRA weights train in fp32 even over a bf16 base


def _make_optimizer(params: list[torch.nn.Parameter], args: argparse.Namespace) -> torch.optim.Optimizer:
    import torch

    if not args.use_8bit_adam:
        return torch.optim.AdamW(params, lr=args.lr, weight_decay=args.adam_weight_decay)
    try:
        import bitsandbytes as bnb
    except ImportError as error:
        raise InvalidRequest(
            f"--use-8bit-adam needs bitsandbytes, which is not installed: pip install {BITSANDBYTES_PIN} "
            "(CUDA only), or train without --use-8bit-adam"
        ) from error
    optimizer: torch.optim.Optimizer = bnb.optim.AdamW8bit(params, lr=args.lr, weight_decay=args.adam_weight_decay)
    return optimizer


def _total_steps(args: argparse.Namespace, pairs: int) -> int:
    if args.steps is not None:
        return int(args.steps)
    per_epoch: int = math.ceil(pairs / (args.batch_size * args.gradient_accumulation_steps))
    epochs: int = args.epochs or 1
    return per_epoch * epochs


def _set_lr(optimizer: torch.optim.Optimizer, step: int, total: int, args: argparse.Namespace) -> float:
    """The learning rate of ``step`` — a pure function of the step, so a resumed run needs no scheduler state."""
    if args.lr_warmup_steps and step < args.lr_warmup_steps:
        factor = (step + 1) / args.lr_warmup_steps
    else:
        progress = (step - args.lr_warmup_steps) / max(1, total - args.lr_warmup_steps)
        factor = {
            "constant": 1.0,
            "linear": max(0.0, 1.0 - progress),
            "cosine": 0.5 * (1.0 + math.cos(math.pi * progress)),
        }[args.lr_scheduler]
    lr = float(args.lr * factor)
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


def _training_size(data: Path, records: list[PairRecord], resolution: int | None) -> tuple[int, int]:
    """(height, width) every pair is trained at: ``--resolution`` squares, else the (common) size of the targets."""
    from PIL import Image

    if resolution is not None:
        return resolution, resolution
    sizes = set()
    for record in records:
        assert record.transformed is not None
        with Image.open(data / record.transformed) as image:
            sizes.add(image.size)
    if len(sizes) > 1:
        raise DatasetError(f"the pairs have different sizes {sorted(sizes)}: pass --resolution to train at one size")
    width, height = sizes.pop()
    if width % 16 or height % 16:
        raise DatasetError(f"the images are {width}x{height}, not multiples of 16: pass --resolution")
    return height, width


def _load_pair_pixels(pipe: Any, data: Path, record: PairRecord, size: tuple[int, int]) -> tuple[torch.Tensor, ...]:
    from PIL import Image

    tensors = []
    for rel in (record.transformed, record.original):
        assert rel is not None
        with Image.open(data / rel) as handle:
            image = handle.convert("RGB")
        if image.size != (size[1], size[0]):
            image = centre_crop_resize(image, size[0]) if size[0] == size[1] else image.resize((size[1], size[0]))
        tensors.append(pipe.image_processor.preprocess(image, height=size[0], width=size[1]))
    return tuple(tensors)


def _validation_sample(data: Path, record: PairRecord, size: tuple[int, int]) -> tuple[Any, str]:
    from PIL import Image

    assert record.original is not None
    with Image.open(data / record.original) as handle:
        image = handle.convert("RGB").resize((size[1], size[0]))
    return image, record.caption


def _encode_latents(vae: Any, pixels: torch.Tensor) -> torch.Tensor:
    import torch

    with torch.no_grad():
        latents: torch.Tensor = vae.encode(pixels.to(vae.device, vae.dtype)).latent_dist.mode()
    shift, scale = float(vae.config.shift_factor), float(vae.config.scaling_factor)
    return (latents - shift) * scale


def _cache_pairs(
    pipe: Any,
    data: Path,
    records: list[PairRecord],
    size: tuple[int, int],
    device: torch.device,
    dtype: torch.dtype,
    max_len: int,
) -> PairCache:
    import torch
    from tqdm.auto import tqdm

    for module in (pipe.vae, pipe.text_encoder, pipe.text_encoder_2):
        module.to(device)
    targets, conds, embeds, pooled = [], [], [], []
    text_ids = torch.zeros(0)
    for record in tqdm(records, desc="caching latents and captions", unit="pair"):
        target_pixels, cond_pixels = _load_pair_pixels(pipe, data, record, size)
        targets.append(_encode_latents(pipe.vae, target_pixels))
        conds.append(_encode_latents(pipe.vae, cond_pixels))
        with torch.no_grad():
            prompt_embeds, pooled_embeds, text_ids = pipe.encode_prompt(
                prompt=record.caption, prompt_2=None, device=device, max_sequence_length=max_len
            )
        embeds.append(prompt_embeds)
        pooled.append(pooled_embeds)
    return PairCache(
        target=torch.cat(targets).to(device, dtype),
        cond=torch.cat(conds).to(device, dtype),
        prompt_embeds=torch.cat(embeds).to(device, dtype),
        pooled=torch.cat(pooled).to(device, dtype),
        text_ids=text_ids.to(device, dtype),
    )


# --- the objective --------------------------------------------------------------------------------------------


def _step_generator(seed: int, micro_index: int) -> torch.Generator:
    """The generator of one micro-batch's noise and timesteps, seeded by (seed, micro-batch index)."""
    import torch

    return torch.Generator(device="cpu").manual_seed(seed * 1_000_003 + micro_index)


def _batch_indices(micro_index: int, batch_size: int, pairs: int, seed: int) -> list[int]:
    """Epoch-wise shuffled pair indices: position p of the endless stream is permutation(p // pairs)[p % pairs]."""
    import torch

    indices = []
    for position in range(micro_index * batch_size, (micro_index + 1) * batch_size):
        epoch, offset = divmod(position, pairs)
        permutation = torch.randperm(pairs, generator=torch.Generator().manual_seed(seed * 7919 + epoch))
        indices.append(int(permutation[offset]))
    return indices


def kontext_loss(
    transformer: Any,
    cache: PairCache,
    scheduler: Any,
    indices: list[int],
    generator: torch.Generator,
    args: argparse.Namespace,
    device: torch.device,
    sigma_override: torch.Tensor | None = None,
) -> torch.Tensor:
    """Flow-matching loss of one batch, Kontext-style: condition tokens appended, loss on target tokens only."""
    import torch
    from diffusers import FluxKontextPipeline
    from diffusers.training_utils import compute_density_for_timestep_sampling, compute_loss_weighting_for_sd3

    # 1. The batch: which pairs, their noise and their timesteps (all from this micro-batch's generator)
    x0, cond = cache.target[indices], cache.cond[indices]
    bsz, channels, height, width = x0.shape
    noise = torch.randn(x0.shape, generator=generator, dtype=torch.float32).to(device, x0.dtype)
    if sigma_override is None:
        u = compute_density_for_timestep_sampling(
            args.weighting_scheme, bsz, args.logit_mean, args.logit_std, args.mode_scale, generator=generator
        )
        step_indices = (u * scheduler.config.num_train_timesteps).long()
        timesteps = scheduler.timesteps[step_indices].to(device)
        sigmas = scheduler.sigmas[step_indices].to(device, x0.dtype)
    else:
        sigmas = sigma_override.to(device, x0.dtype)
        timesteps = sigmas * scheduler.config.num_train_timesteps
    sigmas_4d = sigmas.view(bsz, 1, 1, 1)

    # 2. Noisy target, packed; the original's latents packed and appended with their ids marked (ids[..., 0] = 1)
    noisy = (1.0 - sigmas_4d) * x0 + sigmas_4d * noise
    packed = FluxKontextPipeline._pack_latents(noisy, bsz, channels, height, width)
    packed_cond = FluxKontextPipeline._pack_latents(cond, bsz, channels, cond.shape[2], cond.shape[3])
    target_tokens = packed.shape[1]
    image_ids = FluxKontextPipeline._prepare_latent_image_ids(bsz, height // 2, width // 2, device, x0.dtype)
    cond_ids = FluxKontextPipeline._prepare_latent_image_ids(
        bsz, cond.shape[2] // 2, cond.shape[3] // 2, device, x0.dtype
    )
    cond_ids[..., 0] = 1
    hidden = torch.cat([packed, packed_cond], dim=1)
    ids = torch.cat([image_ids, cond_ids], dim=0)

    # 3. Predict the velocity; keep the target tokens only
    guidance = None
    if transformer.config.guidance_embeds:
        guidance = torch.full((bsz,), args.guidance_scale, device=device, dtype=torch.float32)
    prediction = transformer(
        hidden_states=hidden,
        timestep=timesteps / 1000,
        guidance=guidance,
        pooled_projections=cache.pooled[indices],
        encoder_hidden_states=cache.prompt_embeds[indices],
        txt_ids=cache.text_ids,
        img_ids=ids,
        return_dict=False,
    )[0][:, :target_tokens]
    prediction = FluxKontextPipeline._unpack_latents(prediction, height, width, 1)

    # 4. Flow-matching target and (scheme-weighted) MSE
    weighting = compute_loss_weighting_for_sd3(args.weighting_scheme, sigmas_4d)
    error: torch.Tensor = (weighting.float() * (prediction.float() - (noise - x0).float()) ** 2).reshape(bsz, -1)
    return error.mean(dim=1).mean()


def _held_in_loss(
    transformer: Any, cache: PairCache, scheduler: Any, args: argparse.Namespace, device: torch.device
) -> float:
    """The loss on the first ``--held-in-pairs`` pairs at fixed noise and sigmas 0.25/0.5/0.75 (comparable)."""
    import torch

    transformer.eval()
    total = 0.0
    sigmas = (0.25, 0.5, 0.75)
    pairs: int = min(len(cache), args.held_in_pairs)
    for index in range(pairs):
        for k, sigma in enumerate(sigmas):
            generator = torch.Generator(device="cpu").manual_seed(10_000 + index * len(sigmas) + k)
            with torch.no_grad():
                loss = kontext_loss(
                    transformer, cache, scheduler, [index], generator, args, device, torch.tensor([sigma])
                )
            total += float(loss)
    return total / (pairs * len(sigmas))


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


def _run_identity(args: argparse.Namespace) -> dict[str, Any]:
    """What a resumed run must share with the interrupted one for the result to be the same training."""
    return {
        "rank": args.rank,
        "alpha": args.alpha,
        "seed": args.seed,
        "batch_size": args.batch_size,
        "gradient_accumulation_steps": args.gradient_accumulation_steps,
        "resolution": args.resolution,
        "data": str(args.data.resolve()),
    }


def save_checkpoint(
    work: Path, step: int, transformer: Any, optimizer: torch.optim.Optimizer, args: argparse.Namespace
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
    state = {"step": step, "run": _run_identity(args)}
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


def _resume(work: Path, transformer: Any, optimizer: torch.optim.Optimizer, args: argparse.Namespace) -> int:
    from peft.utils import set_peft_model_state_dict
    from safetensors import safe_open
    from safetensors.torch import load_file

    checkpoints = list_checkpoints(work)
    if not checkpoints:
        logger.warning("--resume: no checkpoint in %s, starting a new run", work / "checkpoints")
        return 0
    latest = checkpoints[-1]
    state = json.loads((latest / "state.json").read_text(encoding="utf-8"))
    changed = sorted(k for k, v in _run_identity(args).items() if state["run"].get(k) != v)
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


def save_lora(transformer: Any, out: Path, rank: int, alpha: int | None, dtype: torch.dtype | None = None) -> None:
    """Write the adapter in diffusers' format (``transformer.``-prefixed keys), atomically, and check it.

    ``alpha / rank`` is folded into ``lora_B``: loaders that ignore alpha metadata (or read none) then apply the
    LoRA exactly as trained.
    """
    import torch
    from diffusers import FluxKontextPipeline
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    dtype = dtype or torch.float32
    scale = (alpha if alpha is not None else rank) / rank
    state = get_peft_model_state_dict(transformer, adapter_name=ADAPTER_NAME)
    layers = {
        key: (value.float() * scale if "lora_B" in key else value.float()).to(dtype).detach().cpu().contiguous()
        for key, value in state.items()
    }
    metadata = LoraConfig(r=rank, lora_alpha=rank, target_modules=TARGET_MODULES).to_dict()
    metadata["target_modules"] = sorted(metadata["target_modules"])
    tmp_name = f".{out.stem}.tmp.safetensors"
    FluxKontextPipeline.save_lora_weights(
        save_directory=str(out.parent),
        transformer_lora_layers=layers,
        weight_name=tmp_name,
        transformer_lora_adapter_metadata=metadata,
    )
    os.replace(out.parent / tmp_name, out)
    check_saved_lora(out, expected_layers=sum(1 for key in layers if "lora_A" in key))


def check_saved_lora(path: Path, expected_layers: int) -> None:
    """The file must hold ``transformer.``-prefixed LoRA keys (an unprefixed PEFT dict silently loads nothing)."""
    from safetensors import safe_open

    from ..errors import InvalidLora

    with safe_open(str(path), framework="pt") as handle:
        keys = list(handle.keys())
    unprefixed = [key for key in keys if not key.startswith("transformer.")]
    layers = sum(1 for key in keys if "lora_A" in key)
    if unprefixed or layers != expected_layers or not layers:
        raise InvalidLora(
            f"saved LoRA {path} is malformed: {len(unprefixed)} keys without the 'transformer.' prefix, "
            f"{layers} of {expected_layers} layers"
        )


def _tensorboard(folder: Path) -> Any:
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=str(folder))


def _validate(
    pipe: Any,
    work: Path,
    step: int,
    writer: Any,
    args: argparse.Namespace,
    resolution: tuple[int, int],
    sample: tuple[Any, str],
) -> Path:
    """Edit the first pair's original with its caption and the LoRA being trained; save + log the image."""
    import numpy as np
    import torch

    image, caption = sample
    transformer = pipe.transformer
    transformer.eval()
    device = _device_of(transformer)
    generator = torch.Generator(device=device).manual_seed(args.seed)
    result = pipe(
        image=image,
        prompt=caption,
        height=resolution[0],
        width=resolution[1],
        num_inference_steps=args.validation_inference_steps,
        guidance_scale=2.5,
        generator=generator,
        max_area=resolution[0] * resolution[1],
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
            knobs.append("--resolution 512")
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
