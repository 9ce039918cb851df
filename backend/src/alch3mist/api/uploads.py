"""Input images: base64 in the JSON body → a verified Pillow image, refused with a clear 422 when it is not one."""

from __future__ import annotations

import base64
import binascii
import io

from PIL import Image, UnidentifiedImageError

from ..errors import InvalidRequest

__all__ = ["ACCEPTED_FORMATS", "MAX_SIDE", "MIN_SIDE", "decode_image"]

ACCEPTED_FORMATS = ("PNG", "JPEG", "WEBP")
MAX_SIDE = 4096
MIN_SIDE = 64


def decode_image(data: str) -> Image.Image:
    """Decode ``data`` (plain base64 or a ``data:image/...;base64,`` URL) and check it really is an image."""
    raw = _b64(data)
    try:
        with Image.open(io.BytesIO(raw)) as probe:
            image_format, size = probe.format, probe.size
            probe.verify()
        _check_header(image_format, size)
        image = Image.open(io.BytesIO(raw))
        image.load()
    except InvalidRequest:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise InvalidRequest(f"image: not a readable PNG, JPEG or WebP image ({exc})") from exc
    return image


def _b64(data: str) -> bytes:
    if data.startswith("data:"):
        header, _, data = data.partition(",")
        if ";base64" not in header:
            raise InvalidRequest("image: a data: URL must be base64-encoded (data:image/png;base64,...)")
    try:
        raw = base64.b64decode("".join(data.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidRequest(f"image: not valid base64 ({exc})") from exc
    if not raw:
        raise InvalidRequest("image: empty")
    return raw


def _check_header(image_format: str | None, size: tuple[int, int]) -> None:
    if image_format not in ACCEPTED_FORMATS:
        raise InvalidRequest(f"image: format {image_format or 'unknown'} is not accepted; send PNG, JPEG or WebP")
    width, height = size
    if max(width, height) > MAX_SIDE or min(width, height) < MIN_SIDE:
        raise InvalidRequest(
            f"image: {width}x{height} pixels; each side must be between {MIN_SIDE} and {MAX_SIDE} pixels"
        )
