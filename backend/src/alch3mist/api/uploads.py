"""Uploads in the JSON body, base64: input images → a verified Pillow image; meshes → their bytes, size-checked.

An image that is not one is refused with a clear 422.

Only Pillow's PNG, JPEG and WebP decoders ever see the bytes (``formats=``): a GIF, an SVG, a TIFF or any of Pillow's
other formats is refused by name before a decoder for it runs. The dimensions in the header are checked before any
pixel is decoded, so a decompression bomb (a tiny file claiming a huge image) costs nothing.

A mesh's size is checked from the length of its base64 before it is decoded (413 over ``ALCH3MIST_MESH_MAX_BYTES``);
what the bytes are is ``texturing.mesh_input.load_mesh``'s question (``jobs/service.py`` asks it).
"""

from __future__ import annotations

import base64
import binascii
import io

from PIL import Image, UnidentifiedImageError

from ..errors import InvalidRequest, MeshTooLarge

__all__ = ["ACCEPTED_FORMATS", "MAX_SIDE", "MIN_SIDE", "decode_image", "decode_mesh"]

ACCEPTED_FORMATS = ("PNG", "JPEG", "WEBP")
MAX_SIDE = 4096
MIN_SIDE = 64


def decode_image(data: str, field: str = "image") -> Image.Image:
    """Decode ``data`` (plain base64 or a ``data:image/...;base64,`` URL) and check it really is an image."""
    raw = _b64(data, field)
    try:
        with Image.open(io.BytesIO(raw), formats=ACCEPTED_FORMATS) as probe:
            _check_header(probe.size, field)
            probe.verify()
        image = Image.open(io.BytesIO(raw), formats=ACCEPTED_FORMATS)
        image.load()
    except InvalidRequest:
        raise
    except UnidentifiedImageError as exc:
        raise InvalidRequest(f"{field}: not a PNG, JPEG or WebP image ({_sniff(raw)}); send one of those") from exc
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise InvalidRequest(f"{field}: not a readable PNG, JPEG or WebP image ({exc})") from exc
    return image


def decode_mesh(data: str, max_bytes: int) -> bytes:
    """Decode a mesh file sent as base64 (or a ``data:...;base64,`` URL); ``MeshTooLarge`` (413) over ``max_bytes``,
    judged from the base64's length before anything is decoded."""
    payload = data.partition(",")[2] if data.startswith("data:") else data
    size = len("".join(payload.split())) // 4 * 3
    if size > max_bytes + 2:  # padding: the exact size is checked after decoding
        raise MeshTooLarge(f"mesh: about {_mb(size)}; the largest mesh file accepted is {_mb(max_bytes)}")
    raw = _b64(data, "mesh")
    if len(raw) > max_bytes:
        raise MeshTooLarge(f"mesh: {_mb(len(raw))}; the largest mesh file accepted is {_mb(max_bytes)}")
    return raw


def _mb(size: int) -> str:
    return f"{size / 1024 / 1024:.1f} MB"


def _b64(data: str, field: str) -> bytes:
    if data.startswith("data:"):
        header, _, data = data.partition(",")
        if ";base64" not in header:
            raise InvalidRequest(f"{field}: a data: URL must be base64-encoded (data:...;base64,...)")
    try:
        raw = base64.b64decode("".join(data.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidRequest(f"{field}: not valid base64 ({exc})") from exc
    if not raw:
        raise InvalidRequest(f"{field}: empty")
    return raw


def _sniff(raw: bytes) -> str:
    """What the bytes look like, for the error message (no decoder runs)."""
    head = raw[:256].lstrip().lower()
    for magic, name in ((b"gif8", "GIF"), (b"<svg", "SVG"), (b"<?xml", "XML/SVG"), (b"ii*\0", "TIFF"),
                        (b"mm\0*", "TIFF"), (b"bm", "BMP"), (b"%pdf", "PDF")):  # fmt: skip
        if head.startswith(magic):
            return f"it looks like {name}"
    return "format not recognised"


def _check_header(size: tuple[int, int], field: str) -> None:
    width, height = size
    if max(width, height) > MAX_SIDE or min(width, height) < MIN_SIDE:
        raise InvalidRequest(
            f"{field}: {width}x{height} pixels; each side must be between {MIN_SIDE} and {MAX_SIDE} pixels"
        )
