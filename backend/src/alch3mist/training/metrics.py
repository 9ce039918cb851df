"""Image metrics for the LoRA evaluation.

Model-free statistics are always available:

- ``colourfulness``: Hasler & Süsstrunk (2003), on the opponent channels rg = R - G and yb = (R + G) / 2 - B
  (0 for a grey image; ~100+ for a very colourful one).
- ``hf_energy``: the fraction of the grey image's spectral energy (DC removed) above a quarter of the Nyquist
  frequency — how much fine texture there is (0..1).
- ``sharpness``: the variance of the 4-neighbour Laplacian of the grey image in [0, 255] (higher = crisper edges).

``ClipScorer`` adds CLIP image–text cosine similarity when a CLIP model folder is available locally (any
``transformers`` CLIPModel saved with its tokenizer and image processor; nothing is downloaded).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image

logger = logging.getLogger(__name__)

__all__ = ["IMAGE_STAT_NAMES", "ClipScorer", "colourfulness", "hf_energy", "image_stats", "sharpness"]

IMAGE_STAT_NAMES = ("colourfulness", "hf_energy", "sharpness")
_HF_CUTOFF = 0.25  # fraction of the Nyquist radius above which energy counts as "high frequency"


def _rgb(image: Image.Image) -> NDArray[np.float64]:
    return np.asarray(image.convert("RGB"), dtype=np.float64)


def _grey(image: Image.Image) -> NDArray[np.float64]:
    return np.asarray(image.convert("L"), dtype=np.float64)


def colourfulness(image: Image.Image) -> float:
    rgb = _rgb(image)
    rg = rgb[..., 0] - rgb[..., 1]
    yb = 0.5 * (rgb[..., 0] + rgb[..., 1]) - rgb[..., 2]
    spread = np.hypot(rg.std(), yb.std())
    mean = np.hypot(rg.mean(), yb.mean())
    return float(spread + 0.3 * mean)


def hf_energy(image: Image.Image) -> float:
    grey = _grey(image)
    spectrum = np.abs(np.fft.fftshift(np.fft.fft2(grey - grey.mean()))) ** 2
    height, width = grey.shape
    fy = np.fft.fftshift(np.fft.fftfreq(height))[:, None] / 0.5
    fx = np.fft.fftshift(np.fft.fftfreq(width))[None, :] / 0.5
    radius = np.hypot(fy, fx)
    total = float(spectrum.sum())
    if total <= 0.0:
        return 0.0
    return float(spectrum[radius > _HF_CUTOFF].sum() / total)


def sharpness(image: Image.Image) -> float:
    grey = _grey(image)
    if min(grey.shape) < 3:
        return 0.0
    laplacian = grey[:-2, 1:-1] + grey[2:, 1:-1] + grey[1:-1, :-2] + grey[1:-1, 2:] - 4.0 * grey[1:-1, 1:-1]
    return float(laplacian.var())


def image_stats(image: Image.Image) -> dict[str, float]:
    """All model-free statistics of one image, keyed by ``IMAGE_STAT_NAMES``."""
    return {"colourfulness": colourfulness(image), "hf_energy": hf_energy(image), "sharpness": sharpness(image)}


class ClipScorer:
    """CLIP image–text cosine similarity from a local model folder (``local_files_only``: never downloads)."""

    def __init__(self, model_path: Path, device: str = "cpu") -> None:
        import torch
        from transformers import AutoImageProcessor, AutoTokenizer, CLIPModel

        self.device = device
        model: Any = CLIPModel.from_pretrained(model_path, local_files_only=True)
        self.model: Any = model.to(device).eval()
        self.tokenizer: Any = AutoTokenizer.from_pretrained(model_path, local_files_only=True)
        self.processor: Any = AutoImageProcessor.from_pretrained(model_path, local_files_only=True)
        self._torch = torch

    @classmethod
    def try_load(cls, model_path: Path | None, device: str = "cpu") -> tuple[ClipScorer | None, str]:
        """``(scorer, "")`` or ``(None, why it is unavailable)`` — the report prints the reason."""
        if model_path is None:
            return None, "no CLIP model folder given (--clip-model)"
        if not model_path.is_dir():
            return None, f"CLIP model folder {model_path} does not exist"
        try:
            return cls(model_path, device), ""
        except (OSError, ValueError, KeyError) as exc:
            logger.warning("CLIP model at %s could not be loaded: %s", model_path, exc)
            return None, f"CLIP model at {model_path} could not be loaded: {exc}"

    def similarity(self, images: list[Image.Image], text: str) -> list[float]:
        """Cosine similarity of each image with ``text`` (-1..1)."""
        torch = self._torch
        max_length = getattr(self.model.config.text_config, "max_position_embeddings", 77)
        tokens = self.tokenizer(
            [text], padding="max_length", truncation=True, max_length=max_length, return_tensors="pt"
        ).to(self.device)
        pixels = self.processor(images=[im.convert("RGB") for im in images], return_tensors="pt")["pixel_values"]
        with torch.no_grad():
            text_features = self._features(self.model.get_text_features(**tokens))
            image_features = self._features(self.model.get_image_features(pixel_values=pixels.to(self.device)))
        text_features = torch.nn.functional.normalize(text_features, dim=-1)
        image_features = torch.nn.functional.normalize(image_features, dim=-1)
        return [float(v) for v in (image_features @ text_features.T).squeeze(-1).cpu()]

    @staticmethod
    def _features(output: Any) -> Any:
        # transformers 5 may return a model output object instead of the bare projected tensor.
        if hasattr(output, "pooler_output") and not hasattr(output, "shape"):
            return output.pooler_output
        return output
