"""Aspect-ratio buckets: ai-toolkit's sizes, condition and target cut alike, deterministic bucket-pure batches."""

from __future__ import annotations

import numpy as np
import pytest
from alch3mist.training.buckets import Sample, bucket_size, epoch_batches, fit_to_bucket, plan_samples
from PIL import Image


@pytest.mark.parametrize(
    ("width", "height", "resolution", "expected"),
    [
        (1024, 1024, 512, (512, 512)),  # square: the resolution itself
        (1024, 1024, 1024, (1024, 1024)),
        # 3:2 at 1024: scale sqrt(1024² / (1536 x 1024)) = 0.8165 -> 1254.1 x 836.1 px = 78.38 x 52.26 units of 16;
        # of (78|79) x (52|53) units only 78 x 52 stays within 1024² pixels.
        (1536, 1024, 1024, (832, 1248)),
        (1024, 1536, 1024, (1248, 832)),  # portrait: the same bucket, turned
        (96, 96, 512, (96, 96)),  # smaller than the resolution: never upscaled
        (100, 60, 512, (64, 96)),  # ... but rounded to multiples of 16 at the nearest area (6144 for its 6000)
    ],
)
def test_buckets_are_ai_toolkits_sizes(width: int, height: int, resolution: int, expected: tuple[int, int]) -> None:
    assert bucket_size(width, height, resolution) == expected


def test_every_bucket_is_a_multiple_of_16_within_the_area_and_near_the_aspect_ratio() -> None:
    for width, height in [(640, 480), (480, 640), (1920, 1080), (1000, 1000), (777, 1333), (2048, 512)]:
        for resolution in (512, 768, 1024):
            bucket_h, bucket_w = bucket_size(width, height, resolution)
            assert bucket_h % 16 == 0 and bucket_w % 16 == 0
            assert bucket_h * bucket_w <= resolution**2
            assert abs(bucket_w / bucket_h - width / height) < 0.08 * width / height


def _halves(width: int, height: int) -> Image.Image:
    """Left half black, right half white: the edge must land in the middle of any centred crop."""
    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    pixels[:, width // 2 :] = 255
    return Image.fromarray(pixels)


def test_condition_and_target_are_resized_and_cropped_alike() -> None:
    target, condition = _halves(300, 100), _halves(150, 50)  # the condition at half the target's size
    bucket = bucket_size(300, 100, 64)  # 3:1 -> (32, 112)
    assert bucket == (32, 112)
    fitted_target = np.asarray(fit_to_bucket(target, target.size, bucket), dtype=np.int16)
    fitted_condition = np.asarray(fit_to_bucket(condition, target.size, bucket), dtype=np.int16)
    assert fitted_target.shape == fitted_condition.shape == (32, 112, 3)
    # Same geometry: the black/white edge sits at the same column in both, the middle of the bucket.
    for fitted in (fitted_target, fitted_condition):
        row = fitted[16, :, 0]
        assert row[:50].max() < 30 and row[62:].min() > 225
    assert np.abs(fitted_target - fitted_condition).mean() < 3


def test_a_wider_image_is_cropped_at_the_centre() -> None:
    image = _halves(200, 100)  # 2:1 into a square bucket: the side strips go, the edge stays in the middle
    fitted = np.asarray(fit_to_bucket(image, image.size, (64, 64)), dtype=np.int16)
    assert fitted.shape == (64, 64, 3)
    assert fitted[:, :30, 0].max() < 30 and fitted[:, 34:, 0].min() > 225


def test_each_pair_gets_one_sample_per_distinct_bucket() -> None:
    samples = plan_samples([(1024, 1024), (96, 96), (1536, 1024)], (1024, 512))
    assert samples == [
        Sample(0, 512, 512),
        Sample(0, 1024, 1024),
        Sample(1, 96, 96),  # its buckets at 512 and 1024 coincide: trained once
        Sample(2, 416, 624),
        Sample(2, 832, 1248),
    ]


def test_an_epochs_batches_cover_every_sample_once_each_batch_one_bucket_and_repeat_by_seed() -> None:
    samples = plan_samples([(64, 64), (64, 32), (32, 64), (64, 64), (64, 32), (64, 64), (48, 48)], (32, 64))
    batches = epoch_batches(samples, batch_size=2, seed=5, epoch=0)
    flat = sorted(index for batch in batches for index in batch)
    assert flat == list(range(len(samples)))
    for batch in batches:
        assert len({(samples[i].height, samples[i].width) for i in batch}) == 1
        assert 1 <= len(batch) <= 2
    assert epoch_batches(samples, 2, 5, 0) == batches  # a resumed run draws the same batches
    assert epoch_batches(samples, 2, 5, 1) != batches  # a new epoch, a new order
    assert epoch_batches(samples, 2, 6, 0) != batches
