"""The full-size configs of bench/gpu_flux.py, checked on the meta device (no memory, no GPU).

The memory-plan thresholds in alch3mist.models.memory rest on these sizes.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from alch3mist.models.memory import MODEL_OFFLOAD_MIN_FREE, RESIDENT_MIN_FREE
from diffusers import AutoencoderKL, FluxTransformer2DModel
from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

from bench.gpu_flux import CLIP_L, FLUX_TRANSFORMER, FLUX_VAE, T5_XXL, _default_dtype_and_device


def parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_full_size_components_have_the_published_sizes_and_fit_the_memory_plans() -> None:
    with _default_dtype_and_device(torch.bfloat16, "meta"):
        transformer = parameters(FluxTransformer2DModel(**FLUX_TRANSFORMER))
        t5 = parameters(T5EncoderModel(T5Config(**T5_XXL)))
        clip = parameters(CLIPTextModel(CLIPTextConfig(**CLIP_L)))
        vae = parameters(AutoencoderKL(**FLUX_VAE))
    assert round(transformer / 1e9, 1) == 11.9  # "a 12B parameter rectified flow transformer"
    assert round(t5 / 1e9, 2) == 4.76  # T5 v1.1 XXL encoder
    assert round(clip / 1e6) == 123  # CLIP ViT-L/14 text model
    assert round(vae / 1e6) == 84

    bf16 = 2
    resident = (2 * transformer + t5 + clip + vae) * bf16  # FLUX.1-dev and Kontext transformers + shared parts
    assert resident < RESIDENT_MIN_FREE - 8 * 1024**3  # room left for 1 MP activations and the VAE decode
    assert transformer * bf16 < MODEL_OFFLOAD_MIN_FREE - 4 * 1024**3
    assert transformer * bf16 > 22 * 1024**3  # why a 24 GB card gets group offload, not model offload


def test_the_gpu_benchmark_runs_on_the_cpu_with_the_tiny_preset(tmp_path: Path) -> None:
    from bench import gpu_flux

    out = tmp_path / "results.json"
    gpu_flux.main(["--tiny", "--runs", "1", "--first-block-cache", "0.05", "--out", str(out)])
    results = json.loads(out.read_text())
    assert [(r["plan"], r["stage"]) for r in results] == [("resident", "FLUX.1-dev"), ("resident", "Kontext")]
    assert all(r["median"] > 0 and r["options"] == "fp32 tiny + FBC 0.05" for r in results)
