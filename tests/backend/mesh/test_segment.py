"""Finding the object: plain backgrounds, alpha, all-background pictures and pictures with no background at all."""

from __future__ import annotations

import numpy as np
import pytest
from alch3mist.errors import InvalidRequest
from alch3mist.mesh.segment import segment_object
from PIL import Image, ImageDraw


def test_an_object_on_a_plain_background_is_found_by_its_border_colour() -> None:
    image = Image.new("RGB", (200, 200), (235, 235, 235))
    ImageDraw.Draw(image).ellipse((50, 40, 150, 160), fill=(120, 60, 30))

    silhouette = segment_object(image)

    assert silhouette.method == "border-colour"
    assert silhouette.coverage == pytest.approx(np.pi * 50 * 60 / 200**2, rel=0.1)


def test_a_plain_picture_is_refused_as_all_background() -> None:
    with pytest.raises(InvalidRequest, match="no object found"):
        segment_object(Image.new("RGB", (200, 200), (240, 240, 240)))


def test_a_picture_with_no_plain_background_becomes_the_whole_frame() -> None:
    noise = np.random.default_rng(0).integers(0, 256, size=(96, 96, 3), dtype=np.uint8)

    silhouette = segment_object(Image.fromarray(noise))

    assert silhouette.method == "whole-frame"
    assert silhouette.coverage == 1.0 and silhouette.mask.all()
