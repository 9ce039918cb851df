"""GPU benchmark of LoRA training on FLUX.1 Kontext [dev]: seconds per step and peak VRAM.

A real-size Kontext transformer (FLUX.1-Kontext-dev's published transformer config) with random bf16 weights,
the product's LoRA (``alch3mist.training.train``: rank 16 on the attention projections, fp32 LoRA weights) and the
product's Kontext objective (``kontext_loss``: condition latents appended, loss on the target tokens) on random
cached inputs of the real shapes (16-channel latents, 512 T5 tokens of 4096, CLIP pooled 768). Step = forward +
backward + AdamW step, batch size 1. Compute and memory do not depend on the weights' values.

    python -m bench.train                                   # 512² and 1024², with and without checkpointing
    python -m bench.train --sizes 1024 --rank 8 --use-8bit-adam
    python -m bench.train --tiny                            # CPU, tiny transformer at 32²/64²: exercises the script

Results on a GPU go in docs/benchmarks.md. Not yet measured on a GPU: the development machine has none.
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

from bench.gpu_flux import FLUX_TRANSFORMER

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


@dataclass
class Result:
    size: int
    gradient_checkpointing: bool
    rank: int
    optimizer: str
    seconds: list[float] = field(default_factory=list)
    peak_allocated_gib: float | None = None
    peak_reserved_gib: float | None = None
    trainable_params: int = 0
    note: str = ""

    @property
    def median(self) -> float | None:
        return statistics.median(self.seconds) if self.seconds else None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.train", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="The tiny transformer on the CPU (no GPU needed).")
    parser.add_argument("--sizes", type=int, nargs="+", default=None, help="Square image sides (default 512 1024).")
    parser.add_argument("--rank", type=int, default=16, help="LoRA rank.")
    parser.add_argument("--steps", type=int, default=5, help="Timed steps per configuration (after one warm-up).")
    parser.add_argument("--use-8bit-adam", action="store_true", help="bitsandbytes AdamW8bit instead of AdamW.")
    parser.add_argument("--json", type=Path, default=None, help="Also write the results to this JSON file.")
    args = parser.parse_args(argv)
    if args.sizes is None:
        args.sizes = [32, 64] if args.tiny else [512, 1024]
    if not args.tiny and not torch.cuda.is_available():
        parser.error("no CUDA device: run with --tiny to exercise the script on the CPU")
    return args


def main(argv: list[str] | None = None) -> list[Result]:
    args = parse_args(argv)
    device = torch.device("cpu" if args.tiny else "cuda")
    dtype = torch.float32 if args.tiny else torch.bfloat16
    transformer = build_transformer(args.tiny, device, dtype)
    lora_train._add_lora(transformer, args.rank, None)
    results = []
    for size in args.sizes:
        for checkpointing in (False, True):
            results.append(bench_one(transformer, size, checkpointing, args, device, dtype))
    print_table(results, args.tiny)
    if args.json is not None:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2) + "\n", encoding="utf-8")
    return results


def build_transformer(tiny: bool, device: torch.device, dtype: torch.dtype) -> Any:
    from diffusers import FluxTransformer2DModel

    config = TINY_TRANSFORMER if tiny else KONTEXT_TRANSFORMER
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            torch.manual_seed(0)
            transformer: Any = FluxTransformer2DModel(**config)
    finally:
        torch.set_default_dtype(previous)
    transformer.requires_grad_(False)
    return transformer


def random_cache(transformer: Any, size: int, device: torch.device, dtype: torch.dtype) -> lora_train.PairCache:
    """Inputs of the real shapes: one pair of latents at ``size``² (VAE factor 8, or 1 for tiny) and a caption."""
    config = transformer.config
    channels = config.in_channels // 4
    side = size // 8 if config.in_channels == 64 else size
    text_tokens = 512 if config.in_channels == 64 else 64
    generator = torch.Generator().manual_seed(0)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator).to(device, dtype)

    return lora_train.PairCache(
        target=randn(1, channels, side, side),
        cond=randn(1, channels, side, side),
        prompt_embeds=randn(1, text_tokens, config.joint_attention_dim),
        pooled=randn(1, config.pooled_projection_dim),
        text_ids=torch.zeros(text_tokens, 3, device=device, dtype=dtype),
    )


def bench_one(
    transformer: Any, size: int, checkpointing: bool, args: argparse.Namespace, device: torch.device, dtype: torch.dtype
) -> Result:
    from diffusers import FlowMatchEulerDiscreteScheduler

    if checkpointing:
        transformer.enable_gradient_checkpointing()
    else:
        transformer.disable_gradient_checkpointing()
    transformer.train()
    params = [p for p in transformer.parameters() if p.requires_grad]
    train_args = argparse.Namespace(
        use_8bit_adam=args.use_8bit_adam, lr=1e-4, adam_weight_decay=1e-4, weighting_scheme="none",
        logit_mean=0.0, logit_std=1.0, mode_scale=1.29, guidance_scale=1.0, seed=0,
    )  # fmt: skip
    optimizer = lora_train._make_optimizer(params, train_args)
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0)
    cache = random_cache(transformer, size, device, dtype)
    result = Result(
        size,
        checkpointing,
        args.rank,
        "AdamW8bit" if args.use_8bit_adam else "AdamW",
        trainable_params=sum(p.numel() for p in params),
    )

    def step(index: int) -> None:
        generator = lora_train._step_generator(0, index)
        loss = lora_train.kontext_loss(transformer, cache, scheduler, [0], generator, train_args, device)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    cuda = device.type == "cuda"
    try:
        step(0)  # warm-up: kernels, optimiser state
        _sync(cuda)
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        for index in range(1, args.steps + 1):
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
    columns = [
        "size",
        "grad. checkpointing",
        "rank",
        "optimiser",
        "s/step (median)",
        "peak alloc. GiB",
        "peak res. GiB",
    ]
    print("| " + " | ".join([*columns, "note"]) + " |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r.size}² | {'yes' if r.gradient_checkpointing else 'no'} | {r.rank} | {r.optimizer} | "
            f"{_fmt(r.median)} | {_fmt(r.peak_allocated_gib)} | {_fmt(r.peak_reserved_gib)} | {r.note} |"
        )


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


if __name__ == "__main__":
    main()
