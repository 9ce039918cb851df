"""The tiny Hunyuan3D-2 shape model: hy3dgen's own classes at toy sizes, written like the hub repo and loaded by
hy3dgen's own loader (``models.hunyuan3d.load_shape_pipeline``), never by a different code path.

Layout (the ``tencent/Hunyuan3D-2`` repo's, so ``smart_load_model(<root>, subfolder=SUBFOLDER)`` finds it)::

    <cache_dir>/tiny-hunyuan3d-v1/hunyuan3d-dit-v2-0/config.yaml        the five sections hy3dgen instantiates
    <cache_dir>/tiny-hunyuan3d-v1/hunyuan3d-dit-v2-0/model.safetensors  model.* / vae.* / conditioner.* tensors

The parts mirror the real config (``bench/gpu_shape.py`` holds it): a DINOv2 conditioner built from a config with
transformers' ``Dinov2Model`` (1 layer, width 32 — DINOv2 weights cannot be downloaded here), a flow-matching
``Hunyuan3DDiT`` with one double and one single block, and a ``ShapeVAE`` decoder (32 latents × 8 channels).

Only the ShapeVAE decoder is not left random: a random occupancy decoder has no surface, or one cut open by the
box, and the engine must hand out a closed mesh. So the builder teaches it, in a few hundred seeded steps, to decode
*every* latent into a closed blob — an ellipsoid whose three radii (0.25–0.65) are read from the latent's mean
channels 0–2. The DiT and the conditioner stay random: the meshes mean nothing, but they are closed, they depend on
the image and the seed, and a latent fitted to an ellipsoid mesh decodes back to it (the 3D LoRA trainer uses that).

Bump ``TINY_VERSION`` whenever anything below changes, so stale caches are never reused.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from ..errors import ModelLoadError

logger = logging.getLogger(__name__)

TINY_VERSION = "tiny-hunyuan3d-v1"
SUBFOLDER = "hunyuan3d-dit-v2-0"
SEED = 20261201
DECODER_STEPS = 300
RADIUS_MEAN, RADIUS_SPREAD = 0.45, 0.2  # radii = RADIUS_MEAN + RADIUS_SPREAD * tanh(latent mean of channel k)

DINO_WIDTH = 32
LATENT_CHANNELS = 8
NUM_LATENTS = 32

TINY_CONFIG: dict[str, Any] = {
    "model": {
        "target": "hy3dgen.shapegen.models.Hunyuan3DDiT",
        "params": {
            "in_channels": LATENT_CHANNELS,
            "context_in_dim": DINO_WIDTH,
            "hidden_size": 32,
            "mlp_ratio": 2.0,
            "num_heads": 2,
            "depth": 1,
            "depth_single_blocks": 1,
            "axes_dim": [16],
            "theta": 10000,
            "qkv_bias": True,
            "guidance_embed": False,
        },
    },
    "vae": {
        "target": "hy3dgen.shapegen.models.ShapeVAE",
        "params": {
            "num_latents": NUM_LATENTS,
            "embed_dim": LATENT_CHANNELS,
            "num_freqs": 4,
            "include_pi": False,
            "heads": 2,
            "width": 32,
            "num_decoder_layers": 1,
            "qkv_bias": False,
            "qk_norm": True,
            "scale_factor": 1.0,
        },
    },
    "conditioner": {
        "target": "hy3dgen.shapegen.models.SingleImageEncoder",
        "params": {
            "main_image_encoder": {
                "type": "DinoImageEncoder",
                "kwargs": {
                    "config": {
                        "model_type": "dinov2",
                        "hidden_size": DINO_WIDTH,
                        "num_hidden_layers": 1,
                        "num_attention_heads": 2,
                        "mlp_ratio": 2,
                        "patch_size": 14,
                        "image_size": 56,
                        "num_channels": 3,
                        "qkv_bias": True,
                        "use_swiglu_ffn": True,
                        "layerscale_value": 1.0,
                        "layer_norm_eps": 1.0e-6,
                        "hidden_act": "gelu",
                        "attention_probs_dropout_prob": 0.0,
                        "hidden_dropout_prob": 0.0,
                        "drop_path_rate": 0.0,
                    },
                    "image_size": 56,  # 4x4 patches + the class token
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
        "params": {"size": 64, "border_ratio": 0.15},
    },
}


def tiny_shape_root(cache_dir: Path) -> Path:
    return cache_dir / TINY_VERSION


def ensure_tiny_shape_model(cache_dir: Path) -> Path:
    """Build and save the tiny model once; returns the root to pass to hy3dgen's loader as ``model_path``."""
    root = tiny_shape_root(cache_dir)
    if _is_complete(root):
        return root
    if root.exists():
        raise ModelLoadError(f"the tiny shape model cache {root} is incomplete (interrupted?); delete it to rebuild")
    root.parent.mkdir(parents=True, exist_ok=True)
    # Built in a private folder and renamed into place (atomic), so racing processes never see half a model.
    staging = Path(tempfile.mkdtemp(prefix=f".{TINY_VERSION}-", dir=root.parent))
    try:
        logger.info("building the tiny Hunyuan3D-2 shape model in %s (first use; a few seconds)", root)
        build_tiny_shape_model(staging / SUBFOLDER)
        try:
            os.rename(staging, root)
        except OSError:
            if not _is_complete(root):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return root


def _is_complete(root: Path) -> bool:
    return (root / SUBFOLDER / "config.yaml").is_file() and (root / SUBFOLDER / "model.safetensors").is_file()


def build_tiny_shape_model(folder: Path) -> None:
    """Write ``config.yaml`` + ``model.safetensors`` for the tiny model into ``folder``."""
    import yaml
    from safetensors.torch import save_file

    from .hunyuan3d import import_hy3dgen

    import_hy3dgen()
    from hy3dgen.shapegen.pipelines import instantiate_from_config

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        parts = {name: instantiate_from_config(TINY_CONFIG[name]) for name in ("model", "vae", "conditioner")}
        teach_decoder_closed_shapes(parts["vae"], DECODER_STEPS)
    tensors = {
        f"{name}.{key}": value.detach().contiguous()
        for name, module in parts.items()
        for key, value in module.state_dict().items()
    }
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(TINY_CONFIG, sort_keys=False), encoding="utf-8")
    save_file(tensors, str(folder / "model.safetensors"), metadata={"alch3mist": TINY_VERSION})


def ellipsoid_radii(latents: torch.Tensor) -> torch.Tensor:
    """(B, 3) radii the taught decoder draws for (B, num_latents, channels) latents."""
    spread = latents[..., :3].mean(dim=1) * latents.shape[1] ** 0.5  # ~N(0, 1) for N(0, 1) latents
    return RADIUS_MEAN + RADIUS_SPREAD * torch.tanh(spread)


def teach_decoder_closed_shapes(vae: Any, steps: int, batch: int = 8, queries: int = 1024) -> None:
    """Train ``vae``'s decoder (post_kl → transformer → geo_decoder) so occupancy logits are positive exactly inside
    the ellipsoid ``ellipsoid_radii(latents)``, for latents of any scale from 0.5 to 2.5."""
    vae.train()
    optimiser = torch.optim.Adam(vae.parameters(), lr=3e-3)
    shape = (batch, *vae.latent_shape)
    for _ in range(steps):
        latents = torch.randn(shape) * (0.5 + 2.0 * torch.rand(batch, 1, 1))
        radii = ellipsoid_radii(latents)
        points = _query_points(radii, queries)
        inside = ((points / radii[:, None, :]) ** 2).sum(dim=-1) < 1.0
        logits = vae.geo_decoder(queries=points, latents=vae(latents)).squeeze(-1)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, inside.float())
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    vae.eval()
    logger.info("tiny shape decoder taught (final loss %.3f)", float(loss.detach()))


def _query_points(radii: torch.Tensor, count: int) -> torch.Tensor:
    """Half uniform in the [-1, 1] box, half within ±20% of each ellipsoid's surface (where the level set is)."""
    batch = radii.shape[0]
    uniform = torch.rand(batch, count // 2, 3) * 2.0 - 1.0
    directions = torch.nn.functional.normalize(torch.randn(batch, count - count // 2, 3), dim=-1)
    near = directions * radii[:, None, :] * (0.8 + 0.4 * torch.rand(batch, count - count // 2, 1))
    return torch.cat([uniform, near], dim=1)
