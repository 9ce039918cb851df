"""Session fixtures shared by the whole suite: the tiny preset, loaded once, and a real LoRA file for it.

The tiny models are built on first use into ``<repo>/.cache/alch3mist-tests`` and reused by later runs; they are
loaded through the same ``load_models`` code as the real weights.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from alch3mist.config import Settings
from alch3mist.models.registry import LoadedModels, load_models
from PIL import Image

from tests.servers.postgres import postgres_server  # noqa: F401  (a real PostgreSQL server: store and cluster tests)

REPO_ROOT = Path(__file__).resolve().parents[1]
TINY_CACHE_DIR = REPO_ROOT / ".cache" / "alch3mist-tests"

LoraFactory = Callable[..., Path]


@pytest.fixture(scope="session")
def tiny_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Settings for the tiny preset; the data dir (and so the LoRA folder ``data_dir/loras``) is a fresh tmp dir."""
    return Settings(
        _env_file=None,  # type: ignore[call-arg]  # a developer's .env must not change the tests
        preset="tiny",
        memory_plan="auto",
        cache_dir=TINY_CACHE_DIR,
        data_dir=tmp_path_factory.mktemp("alch3mist-data"),
        lora_dir=None,
        llm_url=None,
        trellis_url=None,
        hunyuan3d_url=None,
    )


@pytest.fixture(scope="session")
def tiny_models(tiny_settings: Settings) -> LoadedModels:
    return load_models(tiny_settings)


@pytest.fixture(scope="session")
def tiny_lora_factory(tiny_models: LoadedModels, tmp_path_factory: pytest.TempPathFactory) -> LoraFactory:
    """``make(path, seed=0, rank=4)`` writes a real LoRA for the tiny Kontext transformer and returns the path."""

    def make(path: Path, seed: int = 0, rank: int = 4) -> Path:
        return write_tiny_lora(tiny_models, path, seed=seed, rank=rank)

    return make


@pytest.fixture(scope="session")
def tiny_lora_file(tiny_lora_factory: LoraFactory, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small LoRA in diffusers format (``transformer.`` prefix) with non-zero B matrices: it changes the output."""
    return tiny_lora_factory(tmp_path_factory.mktemp("loras") / "tiny-alch3mist.safetensors", seed=0)


def write_tiny_lora(
    models: LoadedModels, path: Path, *, seed: int, rank: int = 4, prefix: str = "transformer."
) -> Path:
    """Train-free LoRA: a PEFT adapter with random (non-zero) A and B on a copy of the tiny Kontext transformer."""
    from diffusers import FluxTransformer2DModel
    from peft import LoraConfig, get_peft_model_state_dict
    from safetensors.torch import save_file

    transformer = FluxTransformer2DModel.from_pretrained(models.model_ids["kontext"], subfolder="transformer")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        transformer.add_adapter(
            LoraConfig(
                r=rank, lora_alpha=rank, init_lora_weights=False, target_modules=["to_q", "to_k", "to_v", "to_out.0"]
            )
        )
    state_dict = get_peft_model_state_dict(transformer)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({f"{prefix}{key}": value.contiguous() for key, value in state_dict.items()}, str(path))
    return path


def transformer_probe(transformer: torch.nn.Module, seed: int = 0) -> torch.Tensor:
    """The tiny Kontext transformer's output on fixed random inputs (64 image tokens, 8 text tokens): what a LoRA
    changes, compared without the noise of a whole sampling loop."""
    config = transformer.config  # type: ignore[attr-defined]
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        output: torch.Tensor = transformer(
            hidden_states=torch.randn(1, 64, config.in_channels, generator=generator),
            encoder_hidden_states=torch.randn(1, 8, config.joint_attention_dim, generator=generator),
            pooled_projections=torch.randn(1, config.pooled_projection_dim, generator=generator),
            timestep=torch.tensor([0.5]),
            guidance=torch.tensor([2.5]),
            img_ids=torch.zeros(64, 3),
            txt_ids=torch.zeros(8, 3),
            return_dict=False,
        )[0]
    return output


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
