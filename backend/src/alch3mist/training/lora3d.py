"""``alch3mist lora3d train``: a LoRA on Hunyuan3D-2's shape DiT (optionally its DINOv2 conditioner too), trained on
(image, mesh) pairs with the model's own flow-matching objective.

The objective is the one hy3dgen's ``Hunyuan3DDiTFlowMatchingPipeline`` samples with (its sigmas run from 0 = noise to
1 = data, and the model gets the sigma itself as its timestep): for a pair's shape latents ``x1`` (see
``lora3d_data``: decoder-inverted ShapeVAE latents, in the DiT's space) and noise ``x0``,
``x_t = (1 - t) x0 + t x1``, and the DiT, conditioned on the image's DINOv2 tokens, is trained to predict the velocity
``x1 - x0`` (mean squared error). ``t`` is uniform or logit-normal. The image tokens are dropped (replaced by the zeros
the pipeline's classifier-free guidance uses as "unconditional") with ``--cond-dropout``, so guidance keeps working.

Latents and image tokens are computed once per pair and cached in ``<work-dir>/cache`` (safetensors). Checkpoints,
resume, learning-rate schedule and the seeded per-step draws are the Kontext trainer's (``training.train``): a resumed
run continues exactly as the uninterrupted one. Output: ``--out FILE.safetensors`` in the format
``models.shape_lora`` loads (``model.*`` / ``conditioner.*`` keys, alpha folded into ``lora_B``).
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..errors import InvalidRequest, report_errors
from ..models.shape_lora import CONDITIONER_TARGETS, DIT_TARGETS, add_shape_lora, save_shape_lora
from .lora3d_data import (
    FIT_LOW_IOU,
    FitSettings,
    ShapePair,
    cache_key,
    condition,
    fit_latents,
    image_tensor,
    load_mesh,
    read_pairs,
)
from .recipe import TrainingRecipe
from .train import (
    ADAPTER_NAME,
    _make_optimizer,
    _prepare_work_dir,
    _resume,
    _set_lr,
    _step_generator,
    _tensorboard,
    run_identity,
    save_checkpoint,
)

logger = logging.getLogger(__name__)

# The options a resumed run must share with its checkpoint (what decides the adapter and the draws).
IDENTITY = (
    "targets", "train_conditioner", "rank", "alpha", "dropout", "seed", "batch_size", "gradient_accumulation_steps",
    "cond_dropout",
)  # fmt: skip

__all__ = ["Shape3DTrainResult", "ShapeCache", "add_arguments", "flow_matching_loss", "load_training_pipeline", "main"]


@dataclass
class ShapeCache:
    """Per pair, computed once: the shape latents and the prepared image (and its tokens when the conditioner is
    frozen)."""

    latents: torch.Tensor  # [N, L, C] in the DiT's space
    pixels: torch.Tensor  # [N, 3, H, W] prepared images, [-1, 1]
    tokens: torch.Tensor | None  # [N, T, D] conditioner output (None when the conditioner is trained)
    fit_iou: list[float]

    def __len__(self) -> int:
        return int(self.latents.shape[0])


@dataclass
class Shape3DTrainResult:
    out: Path
    steps: int
    resumed_from: int
    losses: list[float] = field(default_factory=list)
    eval_loss_start: float = math.nan
    eval_loss_end: float = math.nan
    seconds: float = 0.0


# --- command line ---------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, required=True, help="Pairs folder: train/<pair>/{image.png,model.glb}.")
    parser.add_argument("--out", type=Path, required=True, help="The LoRA file to write (.safetensors).")
    parser.add_argument(
        "--preset", choices=("tiny", "full", "auto"), default=None, help="Base model (default: settings)."
    )
    parser.add_argument(
        "--work-dir", type=Path, default=None, help="Cache, checkpoints, logs (default <out>-training)."
    )
    parser.add_argument("--rank", type=int, default=16, help="LoRA rank.")
    parser.add_argument("--alpha", type=int, default=16, help="LoRA alpha (folded into the saved weights).")
    parser.add_argument("--dropout", type=float, default=0.05, help="LoRA dropout.")
    parser.add_argument(
        "--targets",
        nargs="+",
        default=list(DIT_TARGETS),
        help="DiT modules to adapt (name suffixes): the attention projections by default.",
    )
    parser.add_argument(
        "--train-conditioner",
        action="store_true",
        help=f"Also adapt the DINOv2 image encoder's attention ({', '.join(CONDITIONER_TARGETS)}).",
    )
    parser.add_argument("--lr", type=float, default=1e-4, help="Learning rate.")
    parser.add_argument(
        "--lr-scheduler", choices=("constant", "cosine", "linear"), default="constant", help="Learning-rate schedule."
    )
    parser.add_argument("--lr-warmup-steps", type=int, default=0, help="Linear warm-up steps.")
    parser.add_argument("--steps", type=int, default=None, help="Optimiser steps (default: from --epochs).")
    parser.add_argument("--epochs", type=int, default=None, help="Passes over the pairs, when --steps is not given.")
    parser.add_argument("--batch-size", type=int, default=1, help="Pairs per micro-batch.")
    parser.add_argument("--gradient-accumulation-steps", type=int, default=1, help="Micro-batches per optimiser step.")
    parser.add_argument("--adam-weight-decay", type=float, default=1e-4, help="AdamW weight decay.")
    parser.add_argument("--use-8bit-adam", action="store_true", help="8-bit AdamW (bitsandbytes, CUDA only).")
    parser.add_argument("--max-grad-norm", type=float, default=1.0, help="Gradient clipping norm (0 = off).")
    parser.add_argument("--cond-dropout", type=float, default=0.1, help="Share of steps trained unconditionally.")
    parser.add_argument(
        "--timestep-sampling", choices=("uniform", "logit_normal"), default="logit_normal", help="How t is drawn."
    )
    parser.add_argument("--fit-steps", type=int, default=300, help="Adam steps fitting each mesh's latents.")
    parser.add_argument("--fit-points", type=int, default=4096, help="Occupancy samples per kind for the fit.")
    parser.add_argument("--held-in-pairs", type=int, default=16, help="Pairs the fixed-noise held-in loss uses.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the LoRA init, the fits and every step's draws.")
    parser.add_argument("--checkpointing-steps", type=int, default=250, help="Save a resumable checkpoint every N.")
    parser.add_argument("--checkpoints-total-limit", type=int, default=3, help="Keep at most this many checkpoints.")
    parser.add_argument("--resume", action="store_true", help="Continue from the latest checkpoint in the work folder.")
    parser.add_argument("--overwrite", action="store_true", help="Replace an existing --out and its checkpoints.")


def _check_args(args: argparse.Namespace) -> None:
    for name in ("rank", "alpha", "batch_size", "gradient_accumulation_steps", "checkpointing_steps", "fit_steps"):
        if getattr(args, name) < 1:
            raise InvalidRequest(f"--{name.replace('_', '-')} must be at least 1")
    for name in ("checkpoints_total_limit", "held_in_pairs", "fit_points"):
        if getattr(args, name) < 1:
            raise InvalidRequest(f"--{name.replace('_', '-')} must be at least 1")
    if args.out.suffix != ".safetensors":
        raise InvalidRequest(f"--out must be a .safetensors file, got {args.out.name}")
    if args.steps is not None and args.epochs is not None:
        raise InvalidRequest("give --steps or --epochs, not both")
    if (args.steps is not None and args.steps < 1) or (args.epochs is not None and args.epochs < 1):
        raise InvalidRequest("--steps and --epochs must be at least 1")
    if args.lr <= 0 or not 0 <= args.dropout < 1 or not 0 <= args.cond_dropout < 1:
        raise InvalidRequest("--lr must be positive; --dropout and --cond-dropout within [0, 1)")
    if args.resume and args.overwrite:
        raise InvalidRequest("--resume and --overwrite contradict each other: choose one")
    if args.out.exists() and not args.overwrite:
        raise InvalidRequest(f"{args.out} already exists; pass --overwrite to replace it")
    if args.work_dir is None:
        args.work_dir = args.out.with_name(f"{args.out.stem}-training")


def main(args: argparse.Namespace) -> int:
    """Train; 0 on success, 2 with a message on bad input, 1 on other failures."""
    return report_errors(lambda: _train_and_log(args))


def _train_and_log(args: argparse.Namespace) -> int:
    _check_args(args)
    result = train(args)
    logger.info(
        "3D LoRA written to %s after %d steps (%.1f s); held-in loss %.4f -> %.4f",
        result.out,
        result.steps,
        result.seconds,
        result.eval_loss_start,
        result.eval_loss_end,
    )
    return 0


# --- the run --------------------------------------------------------------------------------------------------


def train(args: argparse.Namespace) -> Shape3DTrainResult:
    """The whole run, as numbered steps. ``args`` as from ``add_arguments`` (after ``_check_args``)."""
    started = time.perf_counter()
    # 1. Read the pairs, load the shape model (hy3dgen's loader, as the engine does), freeze it
    pairs = read_pairs(args.data, "train")
    work = _prepare_work_dir(args)
    pipe, model_id = load_training_pipeline(args.preset)
    for module in (pipe.model, pipe.vae, pipe.conditioner):
        module.requires_grad_(False)

    # 2. Cache each pair's shape latents (decoder inversion) and image (tokens too when the conditioner is frozen)
    fit = FitSettings(steps=args.fit_steps, points=args.fit_points, seed=args.seed)
    cache = cache_pairs(pipe, pairs, work / "cache", model_id, fit, keep_tokens=not args.train_conditioner)

    # 3. LoRA on the DiT (and the conditioner), seeded; optimiser
    torch.manual_seed(args.seed)
    parts = _trained_parts(pipe, args)
    params = [p for module in parts.values() for p in module.parameters() if p.requires_grad]
    recipe = TrainingRecipe.from_args(args)  # the optimiser and schedule options shared with the Kontext trainer
    optimizer = _make_optimizer(params, recipe)
    steps_total = recipe.total_steps(len(cache))

    # 4. Resume: LoRA weights, optimiser state and step from the latest checkpoint
    trained = torch.nn.ModuleDict(parts)  # one module, so checkpoints carry model.* and conditioner.* keys
    trained.peft_config = pipe.model.peft_config  # read by PEFT's state-dict helpers (the injection set it on the DiT)
    start_step = _resume(work, trained, optimizer, run_identity(args, IDENTITY)) if args.resume else 0

    # 5. Train
    writer = _tensorboard(work / "logs")
    result = Shape3DTrainResult(out=args.out, steps=steps_total, resumed_from=start_step)
    result.eval_loss_start = held_in_loss(pipe, cache, args)
    writer.add_scalar("eval/held_in_loss", result.eval_loss_start, start_step)
    _loop(pipe, trained, cache, optimizer, params, writer, work, result, args, start_step)
    result.eval_loss_end = held_in_loss(pipe, cache, args)
    writer.add_scalar("eval/held_in_loss", result.eval_loss_end, steps_total)
    writer.close()

    # 6. Save in the format the engine loads, and check every layer is in it
    extra = {"targets": args.targets, "conditioner": args.train_conditioner, "steps": steps_total, "model": model_id}
    save_shape_lora(args.out, parts, args.rank, args.alpha, extra=extra, adapter=ADAPTER_NAME)
    result.seconds = time.perf_counter() - started
    return result


def _loop(
    pipe: Any,
    trained: torch.nn.Module,
    cache: ShapeCache,
    optimizer: torch.optim.Optimizer,
    params: list[torch.nn.Parameter],
    writer: Any,
    work: Path,
    result: Shape3DTrainResult,
    args: argparse.Namespace,
    start_step: int,
) -> None:
    from tqdm.auto import tqdm

    recipe = TrainingRecipe.from_args(args)
    bar = tqdm(total=result.steps, initial=start_step, desc="training", unit="step")
    for step in range(start_step, result.steps):
        trained.train()
        lr = _set_lr(optimizer, step, result.steps, recipe)
        loss_value = 0.0
        for micro in range(args.gradient_accumulation_steps):
            index = step * args.gradient_accumulation_steps + micro
            indices = _shuffled_batch(index, args.batch_size, len(cache), args.seed)
            torch.manual_seed(args.seed * 1_000_003 + index)  # LoRA dropout masks: a function of the step, too
            loss = flow_matching_loss(pipe, cache, indices, _step_generator(args.seed, index), args)
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
        if (step + 1) % args.checkpointing_steps == 0 and step + 1 < result.steps:
            save_checkpoint(work, step + 1, trained, optimizer, args, run_identity(args, IDENTITY))
    bar.close()


# --- model ----------------------------------------------------------------------------------------------------


def load_training_pipeline(preset: str | None) -> tuple[Any, str]:
    """The shape pipeline the engine would load for ``preset`` (fp32 LoRA over fp16 weights on CUDA); its id."""
    from ..config import Settings
    from ..models.hunyuan3d import FULL_MODEL_DTYPE, load_shape_pipeline, shape_source
    from ..models.registry import resolve_preset

    overrides: dict[str, Any] = {} if preset is None else {"preset": preset}
    settings = Settings(**overrides)
    cuda = torch.cuda.is_available()
    source = shape_source(settings, resolve_preset(settings.preset, cuda), cuda)
    device = torch.device("cuda" if cuda else "cpu")
    pipe = load_shape_pipeline(source, device, FULL_MODEL_DTYPE if cuda else torch.float32, settings.cache_dir)
    return pipe, f"{source.model}/{source.subfolder}"


def _trained_parts(pipe: Any, args: argparse.Namespace) -> dict[str, torch.nn.Module]:
    parts: dict[str, torch.nn.Module] = {"model": pipe.model}
    if args.train_conditioner:
        parts["conditioner"] = pipe.conditioner
    for group, module in parts.items():
        targets = args.targets if group == "model" else list(CONDITIONER_TARGETS)
        try:
            layers = add_shape_lora(module, targets, args.rank, args.alpha, args.dropout, adapter=ADAPTER_NAME)
        except ValueError as error:  # peft: none of the targets exists
            raise InvalidRequest(f"--targets {' '.join(targets)} match no {group} module: {error}") from error
        logger.info("LoRA rank %d on %d %s layers", args.rank, layers, group)
        for parameter in module.parameters():
            if parameter.requires_grad:
                parameter.data = parameter.data.float()  # LoRA weights train in fp32 over an fp16 base
    return parts


# --- data -----------------------------------------------------------------------------------------------------


def cache_pairs(
    pipe: Any, pairs: list[ShapePair], folder: Path, model_id: str, fit: FitSettings, keep_tokens: bool
) -> ShapeCache:
    """Each pair's latents, prepared image and tokens, from ``folder`` when cached for the same files/model/fit."""
    from PIL import Image
    from safetensors.torch import load_file, save_file
    from tqdm.auto import tqdm

    folder.mkdir(parents=True, exist_ok=True)
    latents, pixels, tokens, ious = [], [], [], []
    for pair in tqdm(pairs, desc="caching latents and images", unit="pair"):
        path = folder / f"{pair.name}-{cache_key(pair, model_id, fit)}.safetensors"
        if path.is_file():
            stored = load_file(str(path))
            iou = float(stored["fit_iou"])
        else:
            with Image.open(pair.image) as handle:
                prepared = image_tensor(pipe, handle.convert("RGBA"))
            fitted, iou = fit_latents(pipe, load_mesh(pair.mesh), fit)
            with torch.no_grad():
                pair_tokens = condition(pipe, prepared)
            stored = {"latents": fitted, "pixels": prepared, "tokens": pair_tokens, "fit_iou": torch.tensor(iou)}
            save_file({k: v.detach().cpu().contiguous() for k, v in stored.items()}, str(path))
        if iou < FIT_LOW_IOU:
            logger.warning("pair %s: its latents reproduce the mesh poorly (IoU %.2f)", pair.name, iou)
        latents.append(stored["latents"])
        pixels.append(stored["pixels"])
        tokens.append(stored["tokens"])
        ious.append(iou)
    device = next(pipe.model.parameters()).device
    return ShapeCache(
        latents=torch.cat(latents).to(device),
        pixels=torch.cat(pixels),
        tokens=torch.cat(tokens).to(device) if keep_tokens else None,
        fit_iou=ious,
    )


# --- the objective --------------------------------------------------------------------------------------------


def flow_matching_loss(
    pipe: Any,
    cache: ShapeCache,
    indices: list[int],
    generator: torch.Generator,
    args: argparse.Namespace,
    t_override: torch.Tensor | None = None,
) -> torch.Tensor:
    """hy3dgen's flow matching: x_t = (1 - t) noise + t x1, the DiT predicts x1 - noise; MSE."""
    dit = pipe.model
    x1 = cache.latents[indices]
    batch = x1.shape[0]
    # 1. Noise, t and which samples lose their image (all from this micro-batch's generator)
    noise = torch.randn(x1.shape, generator=generator, dtype=torch.float32).to(x1.device, x1.dtype)
    if t_override is not None:
        t = t_override.to(torch.float32)
    elif args.timestep_sampling == "logit_normal":
        t = torch.sigmoid(torch.randn(batch, generator=generator))
    else:
        t = torch.rand(batch, generator=generator)
    drop = torch.rand(batch, generator=generator) < (0.0 if t_override is not None else args.cond_dropout)
    # 2. Image tokens (cached, or through the conditioner being trained); dropped ones become the zeros CFG uses
    tokens = cache.tokens[indices] if cache.tokens is not None else condition(pipe, cache.pixels[indices])
    tokens = torch.where(drop.to(tokens.device)[:, None, None], torch.zeros_like(tokens), tokens)
    # 3. Predict the velocity at x_t
    t_b = t.to(x1.device, x1.dtype)
    noisy = (1.0 - t_b[:, None, None]) * noise + t_b[:, None, None] * x1
    prediction = dit(noisy, t_b, {"main": tokens.to(x1.dtype)})
    return torch.nn.functional.mse_loss(prediction.float(), (x1 - noise).float())


def held_in_loss(pipe: Any, cache: ShapeCache, args: argparse.Namespace) -> float:
    """The loss on the first ``--held-in-pairs`` pairs at fixed noise and t = 0.25 / 0.5 / 0.75 (comparable)."""
    pipe.model.eval()
    pipe.conditioner.eval()
    total, times = 0.0, (0.25, 0.5, 0.75)
    pairs = min(len(cache), args.held_in_pairs)
    for index in range(pairs):
        for k, t in enumerate(times):
            generator = torch.Generator().manual_seed(10_000 + index * len(times) + k)
            with torch.no_grad():
                total += float(flow_matching_loss(pipe, cache, [index], generator, args, torch.tensor([t])))
    return float(total / (pairs * len(times)))


if __name__ == "__main__":  # pragma: no cover - python -m alch3mist.training.lora3d
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    _parser = argparse.ArgumentParser(prog="alch3mist lora3d train", description=(__doc__ or "").splitlines()[0])
    add_arguments(_parser)
    sys.exit(main(_parser.parse_args()))


def _shuffled_batch(micro_index: int, batch_size: int, pairs: int, seed: int) -> list[int]:
    """Epoch-wise shuffled pair indices: position p of the endless stream is permutation(p // pairs)[p % pairs]."""
    indices = []
    for position in range(micro_index * batch_size, (micro_index + 1) * batch_size):
        epoch, offset = divmod(position, pairs)
        permutation = torch.randperm(pairs, generator=torch.Generator().manual_seed(seed * 7919 + epoch))
        indices.append(int(permutation[offset]))
    return indices
