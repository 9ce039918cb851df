"""Benchmark of the hunyuan3d-local engine's model: sizes, and peak memory of chunked volume decoding.

Three parts:

1. ``sizes`` — the real Hunyuan3D-2 shape model (``tencent/Hunyuan3D-2``, ``hunyuan3d-dit-v2-0/config.yaml``, written
   below as ``FULL_CONFIG``) built by hy3dgen's own ``instantiate_from_config`` on the meta device: parameters and
   weight bytes of the DiT, the ShapeVAE and the DINOv2-giant conditioner (no memory, no GPU).
2. ``decoding`` — the ShapeVAE's volume decoding (hy3dgen's ``VanillaVolumeDecoder``: one geometry-decoder call per
   ``num_chunks`` query points of an (octree_resolution + 1)³ grid) for each octree resolution × num_chunks, each in a
   fresh child process: peak CUDA memory on a GPU, peak RSS on the CPU, above what the loaded decoder already held.
   ``--decoder full`` uses the real geometry decoder (width 1024, 3072 latents, random weights: memory and time do
   not depend on the values) on random post-transformer latents; ``--decoder tiny`` the tiny preset's whole ShapeVAE
   plus marching cubes.
3. ``pipeline`` — one whole generation through the engine's pipeline (``--tiny``: the tiny model; on a GPU the real
   config with random fp16 weights, DiT steps only — random weights decode noise, not a surface).

    python -m bench.gpu_shape                       # GPU: full decoder, octree 256/384/512 × chunks 8k/50k/200k
    python -m bench.gpu_shape --tiny                # CPU: the tiny model — exercises this script (tested)
    python -m bench.gpu_shape --decoder full --octrees 16 --chunks 1000 2000 4913 --no-pipeline   # CPU, full decoder
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

# tencent/Hunyuan3D-2, hunyuan3d-dit-v2-0/config.yaml: the DiT and ShapeVAE numbers as published (1.1B DiT, 3072
# latents x 64), the conditioner's DINOv2-giant config as it is inlined there (hidden 1536 = the DiT's context_in_dim).
FULL_CONFIG: dict[str, Any] = {
    "model": {
        "target": "hy3dgen.shapegen.models.Hunyuan3DDiT",
        "params": {
            "in_channels": 64,
            "context_in_dim": 1536,
            "hidden_size": 1024,
            "mlp_ratio": 4.0,
            "num_heads": 16,
            "depth": 16,
            "depth_single_blocks": 32,
            "axes_dim": [64],
            "theta": 10000,
            "qkv_bias": True,
            "guidance_embed": False,
        },
    },
    "vae": {
        "target": "hy3dgen.shapegen.models.ShapeVAE",
        "params": {
            "num_latents": 3072,
            "embed_dim": 64,
            "num_freqs": 8,
            "include_pi": False,
            "heads": 16,
            "width": 1024,
            "num_decoder_layers": 16,
            "qkv_bias": False,
            "qk_norm": True,
            "scale_factor": 0.9990943042622529,
        },
    },
    "conditioner": {
        "target": "hy3dgen.shapegen.models.SingleImageEncoder",
        "params": {
            "main_image_encoder": {
                "type": "DinoImageEncoder",
                "kwargs": {
                    "config": {
                        "attention_probs_dropout_prob": 0.0,
                        "drop_path_rate": 0.0,
                        "hidden_act": "gelu",
                        "hidden_dropout_prob": 0.0,
                        "hidden_size": 1536,
                        "image_size": 518,
                        "initializer_range": 0.02,
                        "layer_norm_eps": 1.0e-6,
                        "layerscale_value": 1.0,
                        "mlp_ratio": 4,
                        "model_type": "dinov2",
                        "num_attention_heads": 24,
                        "num_channels": 3,
                        "num_hidden_layers": 40,
                        "patch_size": 14,
                        "qkv_bias": True,
                        "use_swiglu_ffn": True,
                    },
                    "image_size": 518,
                },
            }
        },
    },
    "scheduler": {
        "target": "hy3dgen.shapegen.schedulers.FlowMatchEulerDiscreteScheduler",
        "params": {"num_train_timesteps": 1000},
    },
    "image_processor": {
        "target": "hy3dgen.shapegen.preprocessors.ImageProcessorV2",
        "params": {"size": 512, "border_ratio": 0.15},
    },
}
GiB = 1024**3
MiB = 1024**2


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.child is not None:
        print(json.dumps(_decode_once(json.loads(args.child))), flush=True)
        return
    results: dict[str, Any] = {"device": _device_name(), "sizes": model_sizes()}
    _print_sizes(results["sizes"])
    results["decoding"] = [_decode_in_child(args, o, c) for o in args.octrees for c in args.chunks]
    _print_decoding(results["decoding"])
    if args.pipeline:
        results["pipeline"] = _pipeline(args)
        print(f"\npipeline: {results['pipeline']}")
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="CPU run on the tiny model (small sweep).")
    parser.add_argument(
        "--decoder", choices=("full", "tiny"), default=None, help="Decoder to sweep (default by --tiny)."
    )
    parser.add_argument("--octrees", type=int, nargs="+", default=None, help="Octree resolutions to sweep.")
    parser.add_argument("--chunks", type=int, nargs="+", default=None, help="num_chunks values to sweep.")
    parser.add_argument("--no-pipeline", dest="pipeline", action="store_false", help="Skip the whole-generation run.")
    parser.add_argument("--cache-dir", type=Path, default=Path(".cache/alch3mist-tests"), help="Tiny model cache.")
    parser.add_argument("--out", type=Path, default=None, help="Write the results as JSON here.")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)  # one decoding run, in a fresh process
    args = parser.parse_args(argv)
    args.decoder = args.decoder or ("tiny" if args.tiny else "full")
    args.octrees = args.octrees or ([32, 48] if args.tiny else [256, 384, 512])
    args.chunks = args.chunks or ([2000, 8000] if args.tiny else [8000, 50_000, 200_000])
    return args


# --- 1. sizes on the meta device --------------------------------------------------------------------------------


def model_sizes() -> dict[str, dict[str, float]]:
    """Parameters (millions) and fp16 / fp32 weight GiB of each part of the real config, built on the meta device."""
    from alch3mist.models.hunyuan3d import import_hy3dgen

    import_hy3dgen()
    from hy3dgen.shapegen.pipelines import instantiate_from_config

    sizes = {}
    with torch.device("meta"):
        for part in ("model", "vae", "conditioner"):
            module = instantiate_from_config(FULL_CONFIG[part])
            count = sum(p.numel() for p in module.parameters())
            sizes[part] = {"params_m": round(count / 1e6, 1), "fp16_gib": count * 2 / GiB, "fp32_gib": count * 4 / GiB}
    return sizes


def _print_sizes(sizes: dict[str, dict[str, float]]) -> None:
    print("part         params (M)   fp16 GiB   fp32 GiB")
    for part, size in sizes.items():
        print(f"{part:<12} {size['params_m']:>10.1f} {size['fp16_gib']:>10.2f} {size['fp32_gib']:>10.2f}")
    total = sum(size["fp16_gib"] for size in sizes.values())
    print(f"{'total':<12} {'':>10} {total:>10.2f} {2 * total:>10.2f}")


# --- 2. decoding sweep -----------------------------------------------------------------------------------------


def _decode_in_child(args: argparse.Namespace, octree: int, chunks: int) -> dict[str, Any]:
    job = {"decoder": args.decoder, "octree": octree, "chunks": chunks, "cache_dir": str(args.cache_dir)}
    completed = subprocess.run(
        [sys.executable, "-m", "bench.gpu_shape", "--child", json.dumps(job)],
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"decoding run {job} failed:\n{completed.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return result


def _decode_once(job: dict[str, Any]) -> dict[str, Any]:
    """One decoding run; memory is measured above what this process held once the decoder was built."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    decoder, latents, surface = _decoder(job["decoder"], Path(job["cache_dir"]), device)
    from hy3dgen.shapegen.models.autoencoders import VanillaVolumeDecoder

    before = _memory_now(device)
    started = time.perf_counter()
    with torch.no_grad():
        grid = VanillaVolumeDecoder()(
            latents, decoder, bounds=1.01, num_chunks=job["chunks"], octree_resolution=job["octree"], enable_pbar=False
        )
    if device.type == "cuda":
        torch.cuda.synchronize()
    decode_s = time.perf_counter() - started
    faces = None
    if surface is not None:  # the tiny ShapeVAE decodes a closed blob: time marching cubes too
        mesh = surface(grid, bounds=1.01, octree_resolution=job["octree"], mc_level=0.0)[0]
        faces = None if mesh is None else len(mesh.mesh_f)
    peak = _memory_peak(device)
    return {
        **{key: job[key] for key in ("decoder", "octree", "chunks")},
        "points": (job["octree"] + 1) ** 3,
        "chunk_calls": -(-((job["octree"] + 1) ** 3) // job["chunks"]),
        "peak_mib": round((peak - before) / MiB, 1),
        "decode_s": round(decode_s, 3),
        "seconds": round(time.perf_counter() - started, 3),
        "faces": faces,
        "memory": "CUDA peak allocated" if device.type == "cuda" else "RSS high-water mark",
    }


def _decoder(kind: str, cache_dir: Path, device: torch.device) -> tuple[Any, torch.Tensor, Any]:
    """(geometry decoder, the latents it attends to, surface extractor or None)."""
    from alch3mist.models.hunyuan3d import ShapeSource, import_hy3dgen, load_shape_pipeline

    import_hy3dgen()
    from hy3dgen.shapegen.pipelines import instantiate_from_config

    generator = torch.Generator().manual_seed(0)
    if kind == "tiny":
        from alch3mist.models.tiny_hunyuan3d import SUBFOLDER, ensure_tiny_shape_model

        root = ensure_tiny_shape_model(cache_dir)
        pipe = load_shape_pipeline(ShapeSource(str(root), SUBFOLDER, None, "tiny"), device, torch.float32, cache_dir)
        with torch.no_grad():
            latents = pipe.vae(torch.randn((1, *pipe.vae.latent_shape), generator=generator).to(device))
        return pipe.vae.geo_decoder, latents, pipe.vae.surface_extractor
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    vae = instantiate_from_config(FULL_CONFIG["vae"]).to(device, dtype).eval()
    width = FULL_CONFIG["vae"]["params"]["width"]
    latents = torch.randn((1, FULL_CONFIG["vae"]["params"]["num_latents"], width), generator=generator)
    return vae.geo_decoder, latents.to(device, dtype), None


def _memory_now(device: torch.device) -> int:
    """The current allocation, with the peak counter reset to it (building the decoder peaked higher)."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        return int(torch.cuda.memory_allocated())
    with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
        handle.write("5")  # Linux: reset this process's RSS high-water mark (VmHWM) to its current RSS
    return _proc_status_bytes("VmRSS")


def _memory_peak(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated())
    return _proc_status_bytes("VmHWM")


def _proc_status_bytes(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024  # reported in kB
    raise RuntimeError(f"/proc/self/status has no {field}")


def _print_decoding(rows: list[dict[str, Any]]) -> None:
    print(f"\ndecoding ({rows[0]['memory'] if rows else ''}, above the loaded decoder)")
    print("decoder  octree  num_chunks   points   calls   peak MiB   decode s")
    for row in rows:
        print(
            f"{row['decoder']:<8} {row['octree']:>6} {row['chunks']:>11} {row['points']:>8} {row['chunk_calls']:>7} "
            f"{row['peak_mib']:>10.1f} {row['decode_s']:>10.3f}"
        )


# --- 3. one whole generation -----------------------------------------------------------------------------------


def _pipeline(args: argparse.Namespace) -> dict[str, Any]:
    from alch3mist.config import Settings
    from alch3mist.engines.base import EngineParams
    from alch3mist.engines.hunyuan3d_local import Hunyuan3DLocalEngine
    from alch3mist.stages.progress import StageControl
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (512, 512), (255, 255, 255))
    ImageDraw.Draw(image).ellipse((128, 96, 384, 448), fill=(180, 60, 40))
    if not args.tiny:
        return _full_pipeline_steps(image)
    settings = Settings(preset="tiny", cache_dir=args.cache_dir, hunyuan3d_local=True)
    engine = Hunyuan3DLocalEngine(settings)
    engine.generate_shape(image, EngineParams(seed=0), StageControl())  # load + warm-up
    started = time.perf_counter()
    shape = engine.generate_shape(image, EngineParams(seed=1), StageControl())
    return {
        "model": "tiny",
        "seconds": round(time.perf_counter() - started, 3),
        "steps": shape.steps,
        "octree": shape.octree_resolution,
        "faces": len(shape.mesh.faces),
    }


def _full_pipeline_steps(image: Any) -> dict[str, Any]:
    """The real config with random fp16 weights on the GPU: conditioner + 30 DiT steps with CFG (latents out)."""
    from alch3mist.models.hunyuan3d import import_hy3dgen

    shapegen = import_hy3dgen()
    from hy3dgen.shapegen.pipelines import instantiate_from_config

    device = torch.device("cuda")
    parts = {name: instantiate_from_config(FULL_CONFIG[name]) for name in FULL_CONFIG}
    pipe = shapegen.Hunyuan3DDiTFlowMatchingPipeline(
        vae=parts["vae"],
        model=parts["model"],
        scheduler=parts["scheduler"],
        conditioner=parts["conditioner"],
        image_processor=parts["image_processor"],
        device=device,
        dtype=torch.float16,
    )
    torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    pipe(image=image.convert("RGBA"), num_inference_steps=30, output_type="latent", enable_pbar=False)
    torch.cuda.synchronize()
    return {
        "model": "full config, random fp16 weights",
        "dit_30_steps_s": round(time.perf_counter() - started, 2),
        "peak_gib": round(torch.cuda.max_memory_allocated() / GiB, 2),
    }


def _device_name() -> str:
    if torch.cuda.is_available():
        return str(torch.cuda.get_device_name())
    return f"cpu ({torch.get_num_threads()} threads)"


if __name__ == "__main__":
    main()
