"""Input images: real PNG/JPEG/WebP are accepted; anything else — other formats, bombs, broken files — is a clear
InvalidRequest, and no Pillow decoder but those three ever sees the bytes. Meshes: base64 decoded up to a cap that is
judged before decoding (413)."""

from __future__ import annotations

import base64
import io
import struct
import zlib
from collections.abc import Iterator
from typing import Any

import pytest
from alch3mist.api.uploads import decode_image
from alch3mist.errors import InvalidRequest
from PIL import Image, ImageFile


def _encode(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _png_claiming(width: int, height: int) -> bytes:
    """A valid PNG header (signature + IHDR with a correct CRC) for a huge image, and one tiny IDAT: a bomb."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_accepts_png_jpeg_webp(fmt: str) -> None:
    image = decode_image(_b64(_encode(Image.new("RGB", (96, 80), (200, 10, 10)), fmt)))
    assert image.size == (96, 80)


def test_accepts_data_url() -> None:
    data = "data:image/png;base64," + _b64(_encode(Image.new("RGBA", (64, 64)), "PNG"))
    assert decode_image(data).mode == "RGBA"


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ("not base64!!", "not valid base64"),
        ("", "empty"),
        (_b64(b"hello world, not an image"), "not a PNG, JPEG or WebP image"),
        ("data:image/png,abc", "must be base64"),
    ],
)
def test_refuses_non_images(data: str, needle: str) -> None:
    with pytest.raises(InvalidRequest, match=needle):
        decode_image(data)


@pytest.mark.parametrize(
    ("data", "name"),
    [
        (_encode(Image.new("RGB", (64, 64)), "GIF"), "GIF"),
        (b'<svg xmlns="http://www.w3.org/2000/svg" width="99999" height="99999"><rect/></svg>', "SVG"),
        (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>', "XML/SVG"),
        (_encode(Image.new("RGB", (64, 64)), "TIFF"), "TIFF"),
        (_encode(Image.new("RGB", (64, 64)), "BMP"), "BMP"),
    ],
)
def test_refuses_other_formats_by_name(data: bytes, name: str) -> None:
    with pytest.raises(InvalidRequest, match=f"looks like {name}"):
        decode_image(_b64(data))


@pytest.fixture
def spy_format() -> Iterator[list[str]]:
    """A Pillow format registered for the duration of a test, recording every time its decoder is asked to open
    something — as any of Pillow's ~40 built-in decoders would be without ``formats=``."""
    opened: list[str] = []

    class SpyImageFile(ImageFile.ImageFile):
        format = "SPY"

        def _open(self) -> None:
            opened.append("opened")
            raise SyntaxError("not a spy file")

    def accept(prefix: bytes) -> bool:
        return prefix.startswith(b"SPY!")

    Image.register_open("SPY", SpyImageFile, accept)  # type: ignore[arg-type]
    try:
        yield opened
    finally:
        Image.OPEN.pop("SPY", None)
        Image.ID.remove("SPY")


def test_no_other_decoder_ever_runs(spy_format: list[str]) -> None:
    """Issue 10 item 8: ``Image.open`` without ``formats=`` handed the bytes to every registered decoder."""
    with pytest.raises(InvalidRequest):
        decode_image(_b64(b"SPY!" + b"\0" * 64))
    assert spy_format == []


@pytest.mark.parametrize("side", [100_000, 20_000, 4097])
def test_decompression_bomb_is_refused_from_its_header(side: int) -> None:
    with pytest.raises(InvalidRequest, match=r"4096|not a readable"):
        decode_image(_b64(_png_claiming(side, side)))


def test_refuses_small_images() -> None:
    with pytest.raises(InvalidRequest, match="between 64 and 4096"):
        decode_image(_b64(_encode(Image.new("RGB", (32, 64)), "PNG")))


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_refuses_truncated_images(fmt: str) -> None:
    data = _encode(Image.effect_noise((256, 256), 50).convert("RGB"), fmt)
    with pytest.raises(InvalidRequest, match=r"not a readable|not a PNG"):
        decode_image(_b64(data[: len(data) // 2]))


def test_mutated_images_never_escape_as_other_errors() -> None:
    """Bytes flipped, cut and inserted all over real PNG/JPEG/WebP files: an image or an InvalidRequest, never else."""
    import random

    rng = random.Random(10)
    seeds = [_encode(Image.effect_noise((80, 72), 40).convert("RGB"), fmt) for fmt in ("PNG", "JPEG", "WEBP")]
    outcomes: dict[str, int] = {}
    for _ in range(600):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 6)):
            pos = rng.randrange(len(data))
            roll = rng.random()
            if roll < 0.6:
                data[pos] = rng.randrange(256)
            elif roll < 0.8:
                del data[pos : pos + rng.randint(1, 40)]
            else:
                data[pos:pos] = rng.randbytes(rng.randint(1, 16))
        outcome: Any
        try:
            outcome = decode_image(_b64(bytes(data)))
        except InvalidRequest:
            outcome = None
        kind = "refused" if outcome is None else "decoded"
        outcomes[kind] = outcomes.get(kind, 0) + 1
    assert outcomes.get("refused", 0) > 100  # the mutations really broke files


# --- meshes ---------------------------------------------------------------------------------------------------------


def test_a_mesh_is_decoded_from_base64_or_a_data_url_at_up_to_its_cap() -> None:
    from alch3mist.api.uploads import decode_mesh

    data = bytes(range(256)) * 4  # 1024 bytes
    assert decode_mesh(_b64(data), max_bytes=1024) == data
    assert decode_mesh("data:model/gltf-binary;base64," + _b64(data), max_bytes=1024) == data
    wrapped = "\n".join(_b64(data)[i : i + 76] for i in range(0, len(_b64(data)), 76))
    assert decode_mesh(wrapped, max_bytes=1024) == data  # line breaks do not count against the cap


def test_a_mesh_over_its_cap_is_413_before_decoding_and_bad_base64_is_422() -> None:
    from alch3mist.api.uploads import decode_mesh
    from alch3mist.errors import MeshTooLarge

    with pytest.raises(MeshTooLarge, match=r"the largest mesh file accepted is 0\.0 MB"):
        decode_mesh(_b64(bytes(1025)), max_bytes=1024)
    with pytest.raises(MeshTooLarge):  # judged from its length: never decoded (it is not even base64)
        decode_mesh("%" * 10_000_000, max_bytes=1024)
    assert MeshTooLarge.http_status == 413
    for bad, says in (("%%%", "mesh: not valid base64"), ("", "mesh: empty"), ("data:text/plain,abc", "base64")):
        with pytest.raises(InvalidRequest, match=says):
            decode_mesh(bad, max_bytes=1024)


def test_texture_options_have_the_texture_stages_bounds() -> None:
    from alch3mist.api.schemas import TextureOptions
    from alch3mist.chain import TextureRequest

    api, chain = TextureOptions.model_json_schema(), TextureRequest.model_json_schema()
    for name in ("views", "view_size", "elevation"):
        for bound in ("minimum", "maximum"):
            assert api["properties"][name][bound] == chain["properties"][name][bound], (name, bound)
    assert TextureOptions().model_dump() == TextureRequest().model_dump(exclude={"engine_options"})
