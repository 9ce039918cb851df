"""Input images: base64 in the JSON body → a verified Pillow image, refused with a clear 422 when it is not one.

Only Pillow's PNG, JPEG and WebP decoders ever see the bytes (``formats=``): a GIF, an SVG, a TIFF or any of Pillow's
other formats is refused by name before a decoder for it runs. The dimensions in the header are checked before any
pixel is decoded, so a decompression bomb (a tiny file claiming a huge image) costs nothing.
"""

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
        with Image.open(io.BytesIO(raw), formats=ACCEPTED_FORMATS) as probe:
            _check_header(probe.size)
            probe.verify()
        image = Image.open(io.BytesIO(raw), formats=ACCEPTED_FORMATS)
        image.load()
    except InvalidRequest:
        raise
    except UnidentifiedImageError as exc:
        raise InvalidRequest(f"image: not a PNG, JPEG or WebP image ({_sniff(raw)}); send one of those") from exc
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
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


def _sniff(raw: bytes) -> str:
    """What the bytes look like, for the error message (no decoder runs)."""
    head = raw[:256].lstrip().lower()
    for magic, name in ((b"gif8", "GIF"), (b"<svg", "SVG"), (b"<?xml", "XML/SVG"), (b"ii*\0", "TIFF"),
                        (b"mm\0*", "TIFF"), (b"bm", "BMP"), (b"%pdf", "PDF")):  # fmt: skip
        if head.startswith(magic):
            return f"it looks like {name}"
    return "format not recognised"


def _check_header(size: tuple[int, int]) -> None:
    width, height = size
    if max(width, height) > MAX_SIDE or min(width, height) < MIN_SIDE:
        raise InvalidRequest(
            f"image: {width}x{height} pixels; each side must be between {MIN_SIDE} and {MAX_SIDE} pixels"
        )
