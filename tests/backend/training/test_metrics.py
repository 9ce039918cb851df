"""Model-free image statistics, and CLIP similarity from a local model folder (a tiny CLIP built here)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from alch3mist.models.registry import LoadedModels
from alch3mist.training.metrics import ClipScorer, colourfulness, hf_energy, image_stats, sharpness
from PIL import Image, ImageFilter


def _checkerboard(size: int = 64, cell: int = 2) -> Image.Image:
    y, x = np.indices((size, size))
    return Image.fromarray(((((x // cell) + (y // cell)) % 2) * 255).astype(np.uint8)).convert("RGB")


def test_image_statistics_rank_images_as_expected() -> None:
    grey = Image.new("RGB", (64, 64), (128, 128, 128))
    colourful = Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    board = _checkerboard()
    blurred = board.filter(ImageFilter.GaussianBlur(3))

    assert colourfulness(grey) == pytest.approx(0.0)
    assert colourfulness(colourful) > 50
    assert hf_energy(grey) == 0.0 and sharpness(grey) == 0.0
    assert hf_energy(board) > 0.9 > hf_energy(blurred)
    assert sharpness(board) > 10 * sharpness(blurred)
    assert set(image_stats(board)) == {"colourfulness", "hf_energy", "sharpness"}


@pytest.fixture(scope="module")
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


def test_clip_similarity_from_a_local_folder(tiny_clip_folder: Path) -> None:
    scorer, reason = ClipScorer.try_load(tiny_clip_folder)
    assert scorer is not None and reason == ""
    images = [_checkerboard(), Image.new("RGB", (40, 40), (200, 30, 30))]
    scores = scorer.similarity(images, "crocodile skin")
    assert len(scores) == 2 and all(-1.0 <= s <= 1.0 for s in scores) and scores[0] != scores[1]
    assert scorer.similarity(images, "crocodile skin") == scores


def test_clip_unavailable_says_why(tmp_path: Path) -> None:
    assert ClipScorer.try_load(None) == (None, "no CLIP model folder given (--clip-model)")
    scorer, reason = ClipScorer.try_load(tmp_path / "nowhere")
    assert scorer is None and "does not exist" in reason
    scorer, reason = ClipScorer.try_load(tmp_path)
    assert scorer is None and "could not be loaded" in reason
