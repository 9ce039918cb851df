"""Model-free image statistics, and CLIP similarity from a local model folder (a tiny CLIP built here)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
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
