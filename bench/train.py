"""Benchmarks of LoRA training on FLUX.1 Kontext [dev]: what each ``--targets`` trains, and step time / peak VRAM.

``--targets-table`` (no GPU needed): for each target set, the layers that get a LoRA, their trainable parameters
and the LoRA file's size, at the real Kontext transformer's shapes (its published config, built on the meta device:
no memory) and on the tiny preset's transformer. This is the size side of the ``--targets`` default in
docs/training.md.

Step time (GPU): a real-size Kontext transformer with random bf16 weights, the product's LoRA
(``alch3mist.training.train``: fp32 LoRA weights on the recipe's targets) and the product's Kontext objective
(``objective.kontext_loss``: condition latents appended, loss on the target tokens) on random cached inputs of the
real shapes (16-channel latents, 512 T5 tokens of 4096, CLIP pooled 768). Step = forward + backward + AdamW step,
batch size 1. Compute and memory do not depend on the weights' values.

    python -m bench.train --targets-table                   # sizes per target set (CPU, a second)
    python -m bench.train                                   # 512² and 1024², with and without checkpointing
    python -m bench.train --sizes 1024 --rank 8 --targets attention --use-8bit-adam
    python -m bench.train --tiny                            # CPU, tiny transformer at 32²/64²: exercises the script

Results on a GPU go in docs/benchmarks.md. Step times not yet measured on a GPU: the development machine has none.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from alch3mist.training import train as lora_train
from alch3mist.training.buckets import Sample
from alch3mist.training.objective import PairCache, kontext_loss
from alch3mist.training.recipe import DEFAULTS, TARGET_SETS, TrainingRecipe

from bench.gpu_flux import FLUX_TRANSFORMER, _default_dtype_and_device

# The real Kontext transformer's config (identical to FLUX.1-dev's), kept in one place.
KONTEXT_TRANSFORMER = FLUX_TRANSFORMER
# The tiny preset's transformer (alch3mist.models.tiny.build_transformer).
TINY_TRANSFORMER = {
    "patch_size": 1,
    "in_channels": 16,
    "num_layers": 1,
    "num_single_layers": 1,
    "attention_head_dim": 16,
    "num_attention_heads": 2,
    "joint_attention_dim": 32,
    "pooled_projection_dim": 32,
    "guidance_embeds": True,
    "axes_dims_rope": (4, 4, 8),
}
SAVED_BYTES_PER_PARAMETER = 2  # the LoRA file is saved in the training dtype: bf16 on a GPU


@dataclass
class Result:
    size: int
    gradient_checkpointing: bool
    rank: int
    targets: str
    optimizer: str
    seconds: list[float] = field(default_factory=list)
    peak_allocated_gib: float | None = None
    peak_reserved_gib: float | None = None
    trainable_params: int = 0
    note: str = ""

    @property
    def median(self) -> float | None:
        return statistics.median(self.seconds) if self.seconds else None


@dataclass
class TargetsRow:
    """What one target set trains on one transformer, at one rank."""

    model: str
    targets: str
    layers: int  # Linear layers with a LoRA
    trainable_params: int  # sum of r * (in + out) over those layers
    file_mib: float  # the LoRA file's tensors in bf16


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.train", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="The tiny transformer on the CPU (no GPU needed).")
    parser.add_argument(
        "--targets-table", action="store_true", help="Only the per-target-set sizes (real and tiny shapes; no GPU)."
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=None, help="Square image sides (default 512 1024).")
    parser.add_argument("--rank", type=int, default=DEFAULTS.rank, help="LoRA rank.")
    parser.add_argument("--targets", choices=tuple(TARGET_SETS), default=DEFAULTS.targets, help="LoRA target set.")
    parser.add_argument("--steps", type=int, default=5, help="Timed steps per configuration (after one warm-up).")
    parser.add_argument("--use-8bit-adam", action="store_true", help="bitsandbytes AdamW8bit instead of AdamW.")
    parser.add_argument("--json", type=Path, default=None, help="Also write the results to this JSON file.")
    args = parser.parse_args(argv)
    if args.sizes is None:
        args.sizes = [32, 64] if args.tiny else [512, 1024]
    if not args.tiny and not args.targets_table and not torch.cuda.is_available():
        parser.error("no CUDA device: run with --tiny to exercise the script on the CPU, or --targets-table")
    return args


def main(argv: list[str] | None = None) -> list[Result] | list[TargetsRow]:
    args = parse_args(argv)
    if args.targets_table:
        rows = targets_table(args.rank)
        print_targets_table(rows, args.rank)
        _write_json(args.json, [asdict(row) for row in rows])
        return rows
    device = torch.device("cpu" if args.tiny else "cuda")
    dtype = torch.float32 if args.tiny else torch.bfloat16
    transformer = build_transformer(args.tiny, device, dtype)
    recipe = TrainingRecipe(rank=args.rank, targets=args.targets, use_8bit_adam=args.use_8bit_adam)
    lora_train._add_lora(transformer, recipe)
    results = []
    for size in args.sizes:
        for checkpointing in (False, True):
            results.append(bench_one(transformer, size, checkpointing, recipe, args.steps, device, dtype))
    print_table(results, args.tiny)
    _write_json(args.json, [asdict(r) for r in results])
    return results


def _write_json(path: Path | None, data: list[dict[str, Any]]) -> None:
    if path is not None:
        path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


# --- what each target set trains ------------------------------------------------------------------------------


def targets_table(rank: int) -> list[TargetsRow]:
    """Every target set on the real Kontext transformer (meta device) and on the tiny one, at ``rank``."""
    from diffusers import FluxTransformer2DModel

    with _default_dtype_and_device(torch.bfloat16, "meta"):
        real = FluxTransformer2DModel(**KONTEXT_TRANSFORMER)
    tiny = FluxTransformer2DModel(**TINY_TRANSFORMER)
    rows = []
    for model_name, model in (("FLUX.1 Kontext [dev]", real), ("tiny preset", tiny)):
        for targets in TARGET_SETS:
            layers = lora_train.target_layers(model, TrainingRecipe(rank=rank, targets=targets))
            params = sum(rank * (layer.in_features + layer.out_features) for _name, layer in layers)
            file_mib = params * SAVED_BYTES_PER_PARAMETER / 1024**2
            rows.append(TargetsRow(model_name, targets, len(layers), params, file_mib))
    return rows


def print_targets_table(rows: list[TargetsRow], rank: int) -> None:
    print(f"LoRA target sets at rank {rank}: layers, trainable parameters, file size (bf16 tensors)")
    print("| transformer | --targets | LoRA layers | trainable params | file MiB |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(f"| {row.model} | {row.targets} | {row.layers} | {row.trainable_params:,} | {row.file_mib:.2f} |")


# --- step time and memory -------------------------------------------------------------------------------------


def build_transformer(tiny: bool, device: torch.device, dtype: torch.dtype) -> Any:
    from diffusers import FluxTransformer2DModel

    config = TINY_TRANSFORMER if tiny else KONTEXT_TRANSFORMER
    with _default_dtype_and_device(dtype, str(device)):
        torch.manual_seed(0)
        transformer: Any = FluxTransformer2DModel(**config)
    transformer.requires_grad_(False)
    return transformer


def random_cache(transformer: Any, size: int, device: torch.device, dtype: torch.dtype) -> PairCache:
    """Inputs of the real shapes: one pair of latents at ``size``² (VAE factor 8, or 1 for tiny) and a caption."""
    config = transformer.config
    channels = config.in_channels // 4
    side = size // 8 if config.in_channels == 64 else size
    text_tokens = 512 if config.in_channels == 64 else 64
    generator = torch.Generator().manual_seed(0)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator).to(device, dtype)

    return PairCache(
        samples=[Sample(pair=0, height=size, width=size)],
        target=[randn(channels, side, side)],
        cond=[randn(channels, side, side)],
        prompt_embeds=randn(1, text_tokens, config.joint_attention_dim),
        pooled=randn(1, config.pooled_projection_dim),
        text_ids=torch.zeros(text_tokens, 3, device=device, dtype=dtype),
        dropout_embeds=randn(1, text_tokens, config.joint_attention_dim),
        dropout_pooled=randn(1, config.pooled_projection_dim),
    )


def bench_one(
    transformer: Any,
    size: int,
    checkpointing: bool,
    recipe: TrainingRecipe,
    steps: int,
    device: torch.device,
    dtype: torch.dtype,
) -> Result:
    from diffusers import FlowMatchEulerDiscreteScheduler

    if checkpointing:
        transformer.enable_gradient_checkpointing()
    else:
        transformer.disable_gradient_checkpointing()
    transformer.train()
    params = [p for p in transformer.parameters() if p.requires_grad]
    optimizer = lora_train._make_optimizer(params, recipe)
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0)
    cache = random_cache(transformer, size, device, dtype)
    result = Result(
        size,
        checkpointing,
        recipe.rank,
        recipe.targets,
        "AdamW8bit" if recipe.use_8bit_adam else "AdamW",
        trainable_params=sum(p.numel() for p in params),
    )

    def step(index: int) -> None:
        generator = lora_train._step_generator(0, index)
        loss = kontext_loss(transformer, cache, scheduler, [0], generator, recipe, device)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    cuda = device.type == "cuda"
    try:
        step(0)  # warm-up: kernels, optimiser state
        _sync(cuda)
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        for index in range(1, steps + 1):
            started = time.perf_counter()
            step(index)
            _sync(cuda)
            result.seconds.append(time.perf_counter() - started)
    except torch.OutOfMemoryError:
        result.note = "CUDA out of memory"
    if cuda:
        result.peak_allocated_gib = torch.cuda.max_memory_allocated() / 1024**3
        result.peak_reserved_gib = torch.cuda.max_memory_reserved() / 1024**3
        del optimizer
        torch.cuda.empty_cache()
    else:
        result.note = result.note or "CPU: no VRAM"
    return result


def _sync(cuda: bool) -> None:
    if cuda:
        torch.cuda.synchronize()


def print_table(results: list[Result], tiny: bool) -> None:
    label = "tiny transformer, fp32, CPU" if tiny else "FLUX.1 Kontext [dev] size, random bf16 weights"
    print(f"LoRA training step ({label}), batch 1, forward + backward + optimiser step")
    columns = ["size", "grad. checkpointing", "rank", "targets", "optimiser", "s/step (median)"]
    columns += ["peak alloc. GiB", "peak res. GiB"]
    print("| " + " | ".join([*columns, "note"]) + " |")
    print("|" + "---|" * (len(columns) + 1))
    for r in results:
        print(
            f"| {r.size}² | {'yes' if r.gradient_checkpointing else 'no'} | {r.rank} | {r.targets} | {r.optimizer} | "
            f"{_fmt(r.median)} | {_fmt(r.peak_allocated_gib)} | {_fmt(r.peak_reserved_gib)} | {r.note} |"
        )


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


if __name__ == "__main__":
    main()
