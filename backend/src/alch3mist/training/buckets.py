"""Aspect-ratio buckets: every pair is trained at each chosen resolution, at the bucket nearest its aspect ratio.

The rule is ai-toolkit's (``toolkit/buckets.py`` ``get_bucket_for_image_size`` and the crop in
``toolkit/dataloader_mixins.py`` ``BucketsMixin.setup_buckets``), so a dataset trains at the same sizes in both:

- a resolution R means an area of at most R² pixels; an image smaller than that keeps its own area (never upscaled);
- width and height are scaled by the same factor and rounded to multiples of 16 (Kontext: VAE factor 8 x 2x2
  packing), picking among the floor/ceil roundings the one whose area is nearest the target without exceeding R²;
- the image is resized (bicubic) so that it covers the bucket, then centre-cropped to it.

The condition (the original) is resized to the same size as the target and cropped with the same box, as ai-toolkit
does with its control images (``load_control_image``): condition and target stay aligned pixel for pixel.
Unlike ai-toolkit, a pair whose buckets coincide at two resolutions (a small image) is kept once, not twice.
Batches hold samples of one bucket only; their order is a pure function of (seed, epoch), so a resumed run draws
the same batches.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from PIL import Image

__all__ = ["DIVISIBILITY", "Sample", "bucket_size", "epoch_batches", "fit_to_bucket", "plan_samples"]

DIVISIBILITY = 16


@dataclass(frozen=True)
class Sample:
    """One training sample: pair ``pair`` (index into the dataset's records) at a ``height`` x ``width`` bucket."""

    pair: int
    height: int
    width: int


def bucket_size(width: int, height: int, resolution: int, divisibility: int = DIVISIBILITY) -> tuple[int, int]:
    """``(height, width)`` of the bucket a ``width`` x ``height`` image trains in at ``resolution``."""
    area, max_area = width * height, resolution * resolution
    target = min(area, max_area)
    scale = math.sqrt(target / area)
    w_units, h_units = width * scale / divisibility, height * scale / divisibility
    # Same candidate order as ai-toolkit, so ties resolve the same way.
    candidates = [
        (math.floor(w_units) * divisibility, math.floor(h_units) * divisibility),
        (math.floor(w_units) * divisibility, math.ceil(h_units) * divisibility),
        (math.ceil(w_units) * divisibility, math.floor(h_units) * divisibility),
        (math.ceil(w_units) * divisibility, math.ceil(h_units) * divisibility),
    ]
    fitting = [(w, h) for w, h in candidates if w > 0 and h > 0 and w * h <= max_area]
    if not fitting:  # thinner than one unit: the smallest bucket along that side
        fitting = [(max(divisibility, candidates[0][0]), max(divisibility, candidates[0][1]))]
    bucket_w, bucket_h = min(fitting, key=lambda wh: abs(wh[0] * wh[1] - target))
    return bucket_h, bucket_w


def fit_to_bucket(image: Image.Image, source_size: tuple[int, int], bucket: tuple[int, int]) -> Image.Image:
    """``image`` resized to cover ``bucket`` (height, width) as an image of ``source_size`` (width, height) would,
    then centre-cropped to it. Pass the target's size for the condition too: both get the same geometry."""
    width, height = source_size
    bucket_h, bucket_w = bucket
    scale = max(bucket_w / width, bucket_h / height)
    scaled_w, scaled_h = math.ceil(width * scale), math.ceil(height * scale)
    left, top = int((scaled_w - bucket_w) / 2), int((scaled_h - bucket_h) / 2)
    resized = image.convert("RGB").resize((scaled_w, scaled_h), Image.Resampling.BICUBIC)
    return resized.crop((left, top, left + bucket_w, top + bucket_h))


def plan_samples(target_sizes: list[tuple[int, int]], resolutions: tuple[int, ...]) -> list[Sample]:
    """Every pair (its target's (width, height)) at every resolution, pair by pair, smallest resolution first."""
    samples: list[Sample] = []
    for pair, (width, height) in enumerate(target_sizes):
        buckets = dict.fromkeys(bucket_size(width, height, resolution) for resolution in sorted(resolutions))
        samples.extend(Sample(pair, bucket_h, bucket_w) for bucket_h, bucket_w in buckets)
    return samples


def epoch_batches(samples: list[Sample], batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """The batches (sample indices, one bucket each) of one epoch, in training order: shuffled by (seed, epoch)."""
    rng = random.Random(seed * 7919 + epoch)  # noqa: S311 - a reproducible shuffle, not a secret
    groups: dict[tuple[int, int], list[int]] = {}
    for index, sample in enumerate(samples):
        groups.setdefault((sample.height, sample.width), []).append(index)
    batches: list[list[int]] = []
    for key in sorted(groups):
        members = groups[key]
        rng.shuffle(members)
        batches.extend(members[start : start + batch_size] for start in range(0, len(members), batch_size))
    rng.shuffle(batches)
    return batches
