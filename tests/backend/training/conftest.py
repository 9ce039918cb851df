"""Shared fixtures: one 6-pair tiny dataset and one LoRA trained on it for 30 steps, made once per session.

Everything runs on the tiny preset (random toy FLUX / Kontext built locally), through the same loading code as the
real models. ``ALCH3MIST_CACHE_DIR`` points every in-process and subprocess load at the suite's tiny-model cache.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from alch3mist.models.registry import LoadedModels
from alch3mist.training import dataset, train

REPO_ROOT = Path(__file__).resolve().parents[3]
TINY_CACHE_DIR = REPO_ROOT / ".cache" / "alch3mist-tests"  # the suite's tiny-model cache (tests/conftest.py)
PAIRS = 6
TEST_SIZE = 2
# Small and quick on a CPU: 32x32 training images (256 target + 256 condition tokens), short captions.
TRAIN_ARGS = [
    "--preset", "tiny",
    "--rank", "4",
    "--steps", "30",
    "--lr", "1e-3",
    "--resolution", "32",
    "--max-sequence-length", "64",
    "--seed", "3",
]  # fmt: skip


def parse(module: object, argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)  # type: ignore[attr-defined]
    return parser.parse_args(argv)


@pytest.fixture(scope="session", autouse=True)
def _tiny_cache_env() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ALCH3MIST_CACHE_DIR", str(TINY_CACHE_DIR))
        patch.setenv("ALCH3MIST_PRESET", "tiny")
        yield


@pytest.fixture(scope="session")
def tiny_dataset(tiny_models: LoadedModels, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6 training pairs + 2 held-out prompts from the curated prompt set, made by the tiny FLUX and Kontext."""
    out = tmp_path_factory.mktemp("dataset") / "data"
    args = parse(dataset, ["--out", str(out), "--limit", str(PAIRS), "--test-size", str(TEST_SIZE), "--seed", "0"])
    assert dataset.build(args, models=tiny_models) == 0
    return out


@pytest.fixture(scope="session")
def trained(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> train.TrainResult:
    """30 steps of LoRA training on the 6 pairs, with checkpoints and validation images."""
    out = tmp_path_factory.mktemp("lora") / "alch3mist-test.safetensors"
    argv = ["--data", str(tiny_dataset), "--out", str(out), *TRAIN_ARGS, "--checkpointing-steps", "10"]
    argv += ["--validation-steps", "15", "--validation-inference-steps", "2"]
    args = parse(train, argv)
    train._check_args(args)
    return train.train(args)


def subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update({"ALCH3MIST_CACHE_DIR": str(TINY_CACHE_DIR), "ALCH3MIST_PRESET": "tiny", "PYTHONUNBUFFERED": "1"})
    return env


@pytest.fixture(scope="session")
def tiny_clip_folder(tiny_models: LoadedModels, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random tiny CLIPModel saved with the tiny preset's CLIP tokenizer and an image processor: a local folder."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    tokenizer = tiny_models.flux.tokenizer
    config = CLIPConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_hidden_layers": 1,
            "num_attention_heads": 4,
            "max_position_embeddings": 77,
            "bos_token_id": 0,
            "eos_token_id": 1,
            "pad_token_id": 1,
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_hidden_layers": 1,
            "num_attention_heads": 4,
            "image_size": 32,
            "patch_size": 8,
        },
        projection_dim=16,
    )
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-clip")
    CLIPModel(config).eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder
