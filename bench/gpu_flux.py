"""GPU benchmark of the two FLUX stages: seconds per image and peak VRAM for each memory plan.

The models are FLUX.1-dev and FLUX.1 Kontext [dev] at full size — the transformers, VAE, T5-XXL and CLIP-L built
from their published configs (written below) — with random bf16 weights: compute and memory do not depend on the
values, and the real weights are gated downloads. The tokenizers are the tiny preset's (the ids they produce fit the
real vocabularies; prompts are padded to the same 512/77 tokens, so the compute is the same). The stages, memory
plans and pipelines are the product's own code (``alch3mist.stages`` / ``alch3mist.models.memory``).

    python -m bench.gpu_flux                         # all plans, 1024², 28 steps
    python -m bench.gpu_flux --plans resident --compile --first-block-cache 0.08
    python -m bench.gpu_flux --tiny                  # CPU: the tiny preset, 64², 2 steps — exercises this script

Caveats: with random weights First Block Cache's skip decisions are not the real ones (they depend on how much the
first block's output changes between steps), so its speed-up here is indicative only.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from alch3mist.config import Settings
from alch3mist.models.lora import LoraManager
from alch3mist.models.memory import PLANS, apply_memory_plan, unique_modules
from alch3mist.models.registry import FULL_DEFAULTS, LoadedModels, kontext_from_flux, load_models
from alch3mist.stages.base_image import BaseImageStage
from alch3mist.stages.material_edit import MaterialEditStage
from alch3mist.stages.progress import StageControl
from PIL import Image

PROMPT = "a single cow standing, centred, whole object in view, plain light background, soft studio light, no text"
EDIT = "Alch3mist turn its skin into crocodile leather with a mane of flames, keep the shape and pose"

# black-forest-labs/FLUX.1-dev and FLUX.1-Kontext-dev, transformer/config.json (the two are identical).
FLUX_TRANSFORMER = {
    "patch_size": 1,
    "in_channels": 64,
    "num_layers": 19,
    "num_single_layers": 38,
    "attention_head_dim": 128,
    "num_attention_heads": 24,
    "joint_attention_dim": 4096,
    "pooled_projection_dim": 768,
    "guidance_embeds": True,
    "axes_dims_rope": (16, 56, 56),
}
# black-forest-labs/FLUX.1-dev, vae/config.json
FLUX_VAE = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "block_out_channels": (128, 256, 512, 512),
    "layers_per_block": 2,
    "latent_channels": 16,
    "norm_num_groups": 32,
    "sample_size": 1024,
    "scaling_factor": 0.3611,
    "shift_factor": 0.1159,
    "use_quant_conv": False,
    "use_post_quant_conv": False,
    "force_upcast": True,
}
# google/t5-v1_1-xxl encoder (FLUX.1-dev text_encoder_2/config.json)
T5_XXL = {
    "vocab_size": 32128,
    "d_model": 4096,
    "d_kv": 64,
    "d_ff": 10240,
    "num_layers": 24,
    "num_heads": 64,
    "relative_attention_num_buckets": 32,
    "relative_attention_max_distance": 128,
    "feed_forward_proj": "gated-gelu",
    "layer_norm_epsilon": 1e-6,
}
# openai/clip-vit-large-patch14 text model (FLUX.1-dev text_encoder/config.json)
CLIP_L = {
    "vocab_size": 49408,
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "max_position_embeddings": 77,
    "projection_dim": 768,
    "hidden_act": "quick_gelu",
}


@dataclass
class Result:
    plan: str
    options: str
    stage: str
    seconds: list[float] = field(default_factory=list)
    peak_allocated_gib: float | None = None
    peak_reserved_gib: float | None = None
    warmup_seconds: float | None = None
    note: str = ""

    @property
    def median(self) -> float | None:
        return statistics.median(self.seconds) if self.seconds else None


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    started = time.perf_counter()
    models = build_tiny(args) if args.tiny else build_full(args)
    print(f"models ready in {time.perf_counter() - started:.1f} s on {models.device} ({models.dtype})", flush=True)
    apply_options(models, args)

    results: list[Result] = []
    for plan in args.plans:
        results.extend(bench_plan(models, plan, args))
        print_table(results)
    if args.out:
        args.out.write_text(json.dumps([asdict(r) | {"median": r.median} for r in results], indent=2))
        print(f"results: {args.out}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="CPU run on the tiny preset (64², 2 steps).")
    parser.add_argument(
        "--plans",
        type=lambda text: text.split(","),
        default=None,
        help=f"Comma-separated memory plans (default: all of {','.join(PLANS)}; --tiny: resident).",
    )
    parser.add_argument("--steps", type=int, default=None, help="Denoising steps (default 28; --tiny: 2).")
    parser.add_argument("--size", type=int, default=None, help="Image side in pixels (default 1024; --tiny: 64).")
    parser.add_argument("--runs", type=int, default=2, help="Timed runs per stage, after one warm-up run.")
    parser.add_argument(
        "--compile", action="store_true", help="Regional torch.compile of both transformers (meant for resident)."
    )
    parser.add_argument(
        "--first-block-cache", type=float, default=None, metavar="THRESHOLD", help="Enable First Block Cache."
    )
    parser.add_argument(
        "--fp8-storage", action="store_true", help="Store transformer weights in float8_e4m3fn, compute in bf16."
    )
    parser.add_argument("--cache-dir", type=Path, default=Path(".cache/alch3mist-tests"), help="Tiny models cache.")
    parser.add_argument("--out", type=Path, default=None, help="Write the results as JSON here.")
    args = parser.parse_args(argv)

    args.steps = args.steps or (2 if args.tiny else FULL_DEFAULTS.steps)
    args.size = args.size or (64 if args.tiny else FULL_DEFAULTS.size)
    args.plans = args.plans or (["resident"] if args.tiny else list(PLANS))
    if unknown := set(args.plans) - set(PLANS):
        parser.error(f"unknown plans {sorted(unknown)}; choose from {', '.join(PLANS)}")
    if not args.tiny and not torch.cuda.is_available():
        parser.error("the full-size benchmark needs a CUDA GPU; use --tiny to exercise it on the CPU")
    if args.tiny and args.plans != ["resident"]:
        parser.error("on the CPU the only memory plan is resident")
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    return args


def build_tiny(args: argparse.Namespace) -> LoadedModels:
    data_dir = Path(tempfile.mkdtemp(prefix="alch3mist-bench-"))
    settings = Settings(preset="tiny", cache_dir=args.cache_dir, data_dir=data_dir, memory_plan="resident")
    return load_models(settings)


def build_full(args: argparse.Namespace) -> LoadedModels:
    """Full-size components with random weights, initialised directly on the GPU in bf16 (seconds, not minutes)."""
    from alch3mist.models.tiny import build_clip_tokenizer, build_scheduler, build_t5_tokenizer
    from diffusers import AutoencoderKL, FluxPipeline, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    dtype = torch.bfloat16
    scheduler, tokenizer, tokenizer_2 = build_scheduler(), build_clip_tokenizer(), build_t5_tokenizer()
    with _default_dtype_and_device(dtype, "cuda"):
        flux = FluxPipeline(
            scheduler=scheduler,
            vae=AutoencoderKL(**FLUX_VAE),
            text_encoder=CLIPTextModel(CLIPTextConfig(**CLIP_L)),
            tokenizer=tokenizer,
            text_encoder_2=T5EncoderModel(T5Config(**T5_XXL)),
            tokenizer_2=tokenizer_2,
            transformer=FluxTransformer2DModel(**FLUX_TRANSFORMER),
        )
        kontext_transformer = FluxTransformer2DModel(**FLUX_TRANSFORMER)
    kontext = kontext_from_flux(flux, kontext_transformer, dtype)
    for pipe in (flux, kontext):
        pipe.set_progress_bar_config(disable=True)
    models = LoadedModels(
        preset="full",
        device="cuda",
        dtype=dtype,
        memory_plan="resident",
        flux=flux,
        kontext=kontext,
        loras=LoraManager(kontext, Path(tempfile.mkdtemp(prefix="alch3mist-bench-loras-"))),
        model_ids={"flux": "random FLUX.1-dev config", "kontext": "random FLUX.1-Kontext-dev config"},
        defaults=FULL_DEFAULTS,
    )
    for module in unique_modules(models):
        module.eval()
    return models


@contextmanager
def _default_dtype_and_device(dtype: torch.dtype, device: str) -> Iterator[None]:
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            yield
    finally:
        torch.set_default_dtype(previous)


def apply_options(models: LoadedModels, args: argparse.Namespace) -> None:
    from diffusers.hooks import FirstBlockCacheConfig

    for transformer in (models.flux.transformer, models.kontext.transformer):
        if args.fp8_storage:
            transformer.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=models.dtype)
        if args.first_block_cache is not None:
            transformer.enable_cache(FirstBlockCacheConfig(threshold=args.first_block_cache))
        if args.compile:
            transformer.compile_repeated_blocks(fullgraph=True)


def options_label(args: argparse.Namespace) -> str:
    parts = ["bf16" if not args.tiny else "fp32 tiny"]
    if args.fp8_storage:
        parts.append("fp8 storage")
    if args.compile:
        parts.append("regional compile")
    if args.first_block_cache is not None:
        parts.append(f"FBC {args.first_block_cache}")
    return " + ".join(parts)


def bench_plan(models: LoadedModels, plan: str, args: argparse.Namespace) -> list[Result]:
    apply_memory_plan(models, plan)  # undoes the previous plan's hooks and placement
    base_stage, edit_stage = BaseImageStage(models), MaterialEditStage(models)
    control = StageControl()
    holder: dict[str, Image.Image] = {}

    def base() -> None:
        holder["base"] = base_stage.run(
            PROMPT, seed=0, steps=args.steps, guidance=FULL_DEFAULTS.guidance, size=args.size, control=control
        )

    def edit() -> None:
        edit_stage.run(
            holder["base"],
            EDIT,
            seed=0,
            steps=args.steps,
            guidance=FULL_DEFAULTS.edit_guidance,
            lora=None,
            lora_scale=0.0,
            control=control,
        )

    label = options_label(args)
    return [
        measure(Result(plan, label, "FLUX.1-dev"), base, args.runs, models.device),
        measure(Result(plan, label, "Kontext"), edit, args.runs, models.device),
    ]


def measure(result: Result, call: Callable[[], None], runs: int, device: str) -> Result:
    cuda = device == "cuda"
    started = time.perf_counter()
    call()  # warm-up: CUDA kernels, compilation, offload hooks
    _sync(cuda)
    result.warmup_seconds = time.perf_counter() - started
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    for _ in range(runs):
        started = time.perf_counter()
        call()
        _sync(cuda)
        result.seconds.append(time.perf_counter() - started)
    if cuda:
        result.peak_allocated_gib = torch.cuda.max_memory_allocated() / 1024**3
        result.peak_reserved_gib = torch.cuda.max_memory_reserved() / 1024**3
    else:
        result.note = "CPU: no VRAM"
    return result


def _sync(cuda: bool) -> None:
    if cuda:
        torch.cuda.synchronize()


def print_table(results: list[Result]) -> None:
    print("\n| plan | options | stage | s/image (median) | warm-up s | peak allocated GiB | peak reserved GiB |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r.plan} | {r.options} | {r.stage} | {_fmt(r.median)} | {_fmt(r.warmup_seconds)} "
            f"| {_fmt(r.peak_allocated_gib)} | {_fmt(r.peak_reserved_gib)} |",
            flush=True,
        )


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.2f}"


if __name__ == "__main__":
    main()
