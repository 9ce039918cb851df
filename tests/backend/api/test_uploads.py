"""Input images: real images are accepted, anything else is a clear InvalidRequest."""

from __future__ import annotations

import base64
import io

import pytest
from alch3mist.api.uploads import decode_image
from alch3mist.errors import InvalidRequest
from PIL import Image


def _b64(image: Image.Image, fmt: str) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return base64.b64encode(buffer.getvalue()).decode()


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_accepts_png_jpeg_webp(fmt: str) -> None:
    image = decode_image(_b64(Image.new("RGB", (96, 80), (200, 10, 10)), fmt))
    assert image.size == (96, 80)


def test_accepts_data_url() -> None:
    data = "data:image/png;base64," + _b64(Image.new("RGBA", (64, 64)), "PNG")
    assert decode_image(data).mode == "RGBA"


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ("not base64!!", "not valid base64"),
        ("", "empty"),
        (base64.b64encode(b"hello world, not an image").decode(), "not a readable"),
        ("data:image/png,abc", "must be base64"),
    ],
)
def test_refuses_non_images(data: str, needle: str) -> None:
    with pytest.raises(InvalidRequest, match=needle):
        decode_image(data)


def test_refuses_other_formats_and_sizes() -> None:
    with pytest.raises(InvalidRequest, match="format GIF"):
        decode_image(_b64(Image.new("RGB", (64, 64)), "GIF"))
    with pytest.raises(InvalidRequest, match="between 64 and 4096"):
        decode_image(_b64(Image.new("RGB", (32, 64)), "PNG"))


def test_refuses_truncated_image() -> None:
    data = base64.b64decode(_b64(Image.new("RGB", (256, 256)), "PNG"))
    with pytest.raises(InvalidRequest, match="not a readable"):
        decode_image(base64.b64encode(data[: len(data) // 2]).decode())
