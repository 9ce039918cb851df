"""The tiny Hunyuan3D-2 shape model: hy3dgen's own classes at toy sizes, written like the hub repo and loaded by
hy3dgen's own loader (``models.hunyuan3d.load_shape_pipeline``), never by a different code path.

Layout (the ``tencent/Hunyuan3D-2`` repo's, so ``smart_load_model(<root>, subfolder=SUBFOLDER)`` finds it)::

    <cache_dir>/tiny-hunyuan3d-v1/hunyuan3d-dit-v2-0/config.yaml        the five sections hy3dgen instantiates
    <cache_dir>/tiny-hunyuan3d-v1/hunyuan3d-dit-v2-0/model.safetensors  model.* / vae.* / conditioner.* tensors

The parts mirror the real config (``bench/gpu_shape.py`` holds it): a DINOv2 conditioner built from a config with
transformers' ``Dinov2Model`` (1 layer, width 32 — DINOv2 weights cannot be downloaded here), a flow-matching
``Hunyuan3DDiT`` with one double and one single block, and a ``ShapeVAE`` decoder (32 latents × 8 channels).

Only the ShapeVAE decoder is not left random: a random occupancy decoder has no surface, or one cut open by the
box, and the engine must hand out a closed mesh. So ``build_closed_shape_decoder`` sets its weights by hand so that it
decodes *every* latent into a closed, convex, rounded blob inside the box: the level set
``cos x + cos y + cos z = LEVEL_MID - LEVEL_SWING * m(latent)`` (the Fourier features' own cosines), whose size ``m``
reads from channel 0 of the latent tokens (a mean, through a query-independent cross-attention). The DiT and the
conditioner stay random: the meshes mean nothing, but they are closed, they depend on the image and the seed, and a
latent fitted to a blob decodes back to it (the 3D LoRA trainer relies on that).

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
        build_closed_shape_decoder(parts["vae"])
    tensors = {
        f"{name}.{key}": value.detach().contiguous()
        for name, module in parts.items()
        for key, value in module.state_dict().items()
    }
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(TINY_CONFIG, sort_keys=False), encoding="utf-8")
    save_file(tensors, str(folder / "model.safetensors"), metadata={"alch3mist": TINY_VERSION})


LEVEL_MID = 2.765  # sum of cosines at the surface for m = 0 (about a sphere of radius 0.69)
LEVEL_SWING = 0.05  # per unit of m (|m| < 4): the surface stays between radius ~0.3 and ~0.93
FIELD_GAIN = 10.0  # scale of the occupancy logits
TOKEN_BIAS = 1.0  # constant channels that keep LayerNorm from erasing the latent's magnitude


def build_closed_shape_decoder(vae: Any) -> None:
    """Set ``vae``'s decoder (post_kl → transformer → geo_decoder) so occupancy logits are
    ``FIELD_GAIN * (Σ cos(p_i) - LEVEL_MID) + FIELD_GAIN * LEVEL_SWING * m`` before the final LayerNorm (which keeps
    their sign), with ``m`` = the token mean of ``4 z0 / sqrt(z0² + 1)`` over channel 0 ``z0`` of the latents."""
    with torch.no_grad():
        for parameter in vae.parameters():
            parameter.zero_()
        for module in vae.modules():
            if isinstance(module, torch.nn.LayerNorm) and module.weight is not None:
                module.weight.fill_(1.0)
        # latent tokens -> [z0, -z0, b, -b, 0…]: LayerNorm then maps them to ±4 z0 / sqrt(z0² + b²)
        vae.post_kl.weight[0, 0], vae.post_kl.weight[1, 0] = 1.0, -1.0
        vae.post_kl.bias[2], vae.post_kl.bias[3] = TOKEN_BIAS, -TOKEN_BIAS
        # the transformer is an identity (its residual branches' output projections stay zero)
        decoder = vae.geo_decoder
        frequencies = decoder.fourier_embedder.num_freqs
        cos_f1 = [3 + 3 * frequencies + axis * frequencies for axis in range(3)]  # cos(1 * p_axis) in the embedding
        for axis_index in cos_f1:
            decoder.query_proj.weight[0, axis_index], decoder.query_proj.weight[1, axis_index] = FIELD_GAIN, -FIELD_GAIN
        decoder.query_proj.bias[0], decoder.query_proj.bias[1] = -FIELD_GAIN * LEVEL_MID, FIELD_GAIN * LEVEL_MID
        decoder.query_proj.bias[2], decoder.query_proj.bias[3] = TOKEN_BIAS, -TOKEN_BIAS
        attention = decoder.cross_attn_decoder.attn  # queries stay zero: every query averages all latent tokens
        head_width = attention.c_kv.out_features // attention.heads
        attention.c_kv.weight[head_width // 2, 0] = 1.0  # head 0's first value channel = the normalised z0
        gain = FIELD_GAIN * LEVEL_SWING
        attention.c_proj.weight[0, 0], attention.c_proj.weight[1, 0] = gain, -gain
        decoder.output_proj.weight[0, 0] = 1.0


def latent_size_signal(latents: torch.Tensor) -> torch.Tensor:
    """(B,) the ``m`` the tiny decoder reads from (B, num_latents, channels) latents: bigger m, bigger blob."""
    z0 = latents[..., 0]
    return (4.0 * z0 / torch.sqrt(z0**2 + TOKEN_BIAS**2)).mean(dim=1)
