"""Offscreen GLB rendering: GLBs written by hand (as other tools write them) and by trimesh (as we write them).

Every test renders for real in VTK's child process on Mesa EGL, small (≤128²) to stay fast.
"""

from __future__ import annotations

import ctypes.util
import io
import json
import math
import struct
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import trimesh
from alch3mist.errors import Cancelled, MeshError
from alch3mist.mesh.render import EGL_APT_PACKAGES, ViewSpec, fit_distance, render_glb, turntable
from PIL import Image

FRONT = ViewSpec(azimuth=0.0, elevation=0.0)
BACK = ViewSpec(azimuth=180.0, elevation=0.0)
RED, GREEN, BLUE = (230, 30, 30), (30, 200, 40), (30, 40, 230)


# ---------------------------------------------------------------------------------------------------------------------
# A minimal glTF 2.0 writer, so fixtures use features trimesh never writes (multi-primitive meshes, node hierarchies
# with TRS, COLOR_0, JPEG textures, the glTF UV convention written directly).
# ---------------------------------------------------------------------------------------------------------------------


class GltfBuilder:
    def __init__(self) -> None:
        self.binary = bytearray()
        self.doc: dict[str, Any] = {"asset": {"version": "2.0", "generator": "alch3mist tests"}, "scene": 0}

    def _add(self, key: str, item: dict[str, Any]) -> int:
        self.doc.setdefault(key, []).append(item)
        return len(self.doc[key]) - 1

    def _view(self, data: bytes, target: int | None = None) -> int:
        self.binary += b"\0" * (-len(self.binary) % 4)
        view = {"buffer": 0, "byteOffset": len(self.binary), "byteLength": len(data)}
        if target:
            view["target"] = target
        self.binary += data
        return self._add("bufferViews", view)

    def accessor(self, array: np.ndarray, kind: str) -> int:
        if kind == "SCALAR":
            data = array.astype(np.uint16)
            view = self._view(data.tobytes(), 34963)
            return self._add("accessors", {"bufferView": view, "componentType": 5123, "count": len(data), "type": kind})
        data = array.astype(np.float32)
        view = self._view(data.tobytes(), 34962)
        accessor = {"bufferView": view, "componentType": 5126, "count": len(data), "type": kind}
        accessor.update(min=data.min(axis=0).tolist(), max=data.max(axis=0).tolist())
        return self._add("accessors", accessor)

    def texture(self, image: Image.Image, fmt: str = "JPEG") -> int:
        encoded = io.BytesIO()
        image.save(encoded, format=fmt)
        view = self._view(encoded.getvalue())
        source = self._add("images", {"bufferView": view, "mimeType": f"image/{fmt.lower()}"})
        sampler = self._add("samplers", {"magFilter": 9729, "minFilter": 9729})
        return self._add("textures", {"source": source, "sampler": sampler})

    def material(self, color: tuple[int, int, int] = (255, 255, 255), texture: int | None = None) -> int:
        pbr: dict[str, Any] = {"baseColorFactor": [*(c / 255 for c in color), 1.0], "metallicFactor": 0.0}
        if texture is not None:
            pbr["baseColorTexture"] = {"index": texture}
        return self._add("materials", {"pbrMetallicRoughness": pbr, "doubleSided": True})

    def primitive(self, positions: np.ndarray, material: int | None = None, **attributes: np.ndarray) -> dict[str, Any]:
        """A quad or any triangle fan; extra attributes: uv=(n,2), colors=(n,4)."""
        fan = [i for k in range(1, len(positions) - 1) for i in (0, k, k + 1)]
        attrs = {"POSITION": self.accessor(positions, "VEC3")}
        attrs["NORMAL"] = self.accessor(np.tile([0.0, 0.0, 1.0], (len(positions), 1)), "VEC3")
        if "uv" in attributes:
            attrs["TEXCOORD_0"] = self.accessor(attributes["uv"], "VEC2")
        if "colors" in attributes:
            attrs["COLOR_0"] = self.accessor(attributes["colors"], "VEC4")
        primitive: dict[str, Any] = {"attributes": attrs, "indices": self.accessor(np.array(fan), "SCALAR")}
        if material is not None:
            primitive["material"] = material
        return primitive

    def mesh(self, *primitives: dict[str, Any]) -> int:
        return self._add("meshes", {"primitives": list(primitives)})

    def node(self, **fields: Any) -> int:
        return self._add("nodes", fields)

    def glb(self, roots: list[int]) -> bytes:
        self.doc["scenes"] = [{"nodes": roots}]
        self.binary += b"\0" * (-len(self.binary) % 4)
        self.doc["buffers"] = [{"byteLength": len(self.binary)}]
        text = json.dumps(self.doc).encode()
        text += b" " * (-len(text) % 4)
        chunks = struct.pack("<I4s", len(text), b"JSON") + text + struct.pack("<I4s", len(self.binary), b"BIN\0")
        chunks += bytes(self.binary)
        return struct.pack("<4sII", b"glTF", 2, 12 + len(chunks)) + chunks


def quad(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    """Corners counter-clockwise seen from +Z: bottom-left, bottom-right, top-right, top-left."""
    return np.array([[x0, y0, 0.0], [x1, y0, 0.0], [x1, y1, 0.0], [x0, y1, 0.0]])


def two_band_image(top: tuple[int, int, int], bottom: tuple[int, int, int], size: int = 64) -> Image.Image:
    pixels = np.zeros((size, size, 3), np.uint8)
    pixels[: size // 2] = top  # image row 0 is the top
    pixels[size // 2 :] = bottom
    return Image.fromarray(pixels)


# ---------------------------------------------------------------------------------------------------------------------
# Reading the renders
# ---------------------------------------------------------------------------------------------------------------------


def load(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB")).astype(float)


def colour_at(image: np.ndarray, fx: float, fy: float, radius: int = 3) -> str:
    """Dominant hue of a small patch at (fx, fy) in image fractions: 'red', 'green', 'blue' or 'grey'."""
    h, w, _ = image.shape
    y, x = int(fy * h), int(fx * w)
    r, g, b = image[y - radius : y + radius + 1, x - radius : x + radius + 1].reshape(-1, 3).mean(axis=0)
    for name, (main, others) in {"red": (r, (g, b)), "green": (g, (r, b)), "blue": (b, (r, g))}.items():
        if main > max(others) + 40:
            return name
    return "grey"


def object_mask(image: np.ndarray) -> np.ndarray:
    """Pixels that differ from the neutral grey gradient background (which has no saturation)."""
    saturation = image.max(axis=2) - image.min(axis=2)
    return saturation > 40


def render_one(glb: Path, tmp_path: Path, view: ViewSpec = FRONT, size: int = 128) -> np.ndarray:
    (path,) = render_glb(glb, [view], size=size, out_dir=tmp_path / "out")
    return load(path)


# ---------------------------------------------------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------------------------------------------------


@pytest.fixture
def jpeg_textured_quad(tmp_path: Path) -> Path:
    """Embedded JPEG texture, red over blue, UVs in glTF's convention (v = 0 at the image's top row)."""
    gltf = GltfBuilder()
    material = gltf.material(texture=gltf.texture(two_band_image(RED, BLUE)))
    uv = np.array([[0.0, 1.0], [1.0, 1.0], [1.0, 0.0], [0.0, 0.0]])
    mesh = gltf.mesh(gltf.primitive(quad(-1, -1, 1, 1), material, uv=uv))
    path = tmp_path / "jpeg_quad.glb"
    path.write_bytes(gltf.glb([gltf.node(mesh=mesh)]))
    return path


@pytest.fixture
def two_primitive_mesh(tmp_path: Path) -> Path:
    """ONE mesh with two primitives and two materials: red on the left, green on the right."""
    gltf = GltfBuilder()
    left = gltf.primitive(quad(-2, -1, 0, 1), gltf.material(RED))
    right = gltf.primitive(quad(0, -1, 2, 1), gltf.material(GREEN))
    path = tmp_path / "two_primitives.glb"
    path.write_bytes(gltf.glb([gltf.node(mesh=gltf.mesh(left, right))]))
    return path


@pytest.fixture
def node_transforms(tmp_path: Path) -> Path:
    """Both quads are modelled at the origin; only node transforms (TRS, nested) put red left and green right.

    Green's parent rotates 180° about Z and scales by 0.5; its child translates by (−4, 0, 0): world x = +2, half size.
    """
    gltf = GltfBuilder()
    red = gltf.mesh(gltf.primitive(quad(-1, -1, 1, 1), gltf.material(RED)))
    green = gltf.mesh(gltf.primitive(quad(-1, -1, 1, 1), gltf.material(GREEN)))
    red_node = gltf.node(mesh=red, translation=[-2.0, 0.0, 0.0])
    green_child = gltf.node(mesh=green, translation=[-4.0, 0.0, 0.0])
    green_parent = gltf.node(children=[green_child], rotation=[0.0, 0.0, 1.0, 0.0], scale=[0.5, 0.5, 0.5])
    path = tmp_path / "node_transforms.glb"
    path.write_bytes(gltf.glb([red_node, green_parent]))
    return path


@pytest.fixture
def vertex_coloured_quad(tmp_path: Path) -> Path:
    """No texture, no material: COLOR_0 red at the top corners, blue at the bottom ones."""
    gltf = GltfBuilder()
    colors = np.array([[0.05, 0.05, 0.9, 1.0]] * 2 + [[0.9, 0.05, 0.05, 1.0]] * 2)
    mesh = gltf.mesh(gltf.primitive(quad(-1, -1, 1, 1), colors=colors))
    path = tmp_path / "vertex_colours.glb"
    path.write_bytes(gltf.glb([gltf.node(mesh=mesh)]))
    return path


def trimesh_two_tone_box(path: Path, *, metallic: float = 0.0) -> Path:
    """Our own kind of GLB: a trimesh PBR export with a PNG texture; front (+Z) corners map to red, back to blue."""
    box = trimesh.creation.box(extents=(1.0, 1.0, 1.0))
    uv = np.where(box.vertices[:, 2:3] > 0, [[0.5, 0.75]], [[0.5, 0.25]])  # trimesh UVs: v = 0 at the image bottom
    material = trimesh.visual.material.PBRMaterial(
        baseColorTexture=two_band_image(RED, BLUE), metallicFactor=metallic, roughnessFactor=0.4
    )
    box.visual = trimesh.visual.TextureVisuals(uv=uv, material=material)
    box.export(path)
    return path


# ---------------------------------------------------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------------------------------------------------


def test_embedded_jpeg_texture_is_upright(jpeg_textured_quad: Path, tmp_path: Path) -> None:
    image = render_one(jpeg_textured_quad, tmp_path)
    assert colour_at(image, 0.5, 0.35) == "red"
    assert colour_at(image, 0.5, 0.65) == "blue"


def test_several_primitives_keep_their_materials(two_primitive_mesh: Path, tmp_path: Path) -> None:
    image = render_one(two_primitive_mesh, tmp_path)
    assert colour_at(image, 0.3, 0.5) == "red"
    assert colour_at(image, 0.7, 0.5) == "green"


def test_node_transforms_are_applied(node_transforms: Path, tmp_path: Path) -> None:
    image = render_one(node_transforms, tmp_path)
    mask = object_mask(image)
    red_pixels = mask & (image[..., 0] > image[..., 1])
    green_pixels = mask & (image[..., 1] > image[..., 0])
    red_x, green_x = np.nonzero(red_pixels)[1].mean(), np.nonzero(green_pixels)[1].mean()
    assert red_x < 0.45 * image.shape[1] < 0.55 * image.shape[1] < green_x
    assert green_pixels.sum() / red_pixels.sum() == pytest.approx(0.25, abs=0.08)  # scaled by 0.5 → a quarter


def test_vertex_colours_without_texture(vertex_coloured_quad: Path, tmp_path: Path) -> None:
    image = render_one(vertex_coloured_quad, tmp_path)
    assert colour_at(image, 0.5, 0.25) == "red"
    assert colour_at(image, 0.5, 0.75) == "blue"


def test_trimesh_vertex_colours(tmp_path: Path) -> None:
    """trimesh writes COLOR_0 (as unsigned bytes) and no material at all: glTF's default material applies."""
    box = trimesh.creation.box(extents=(1.0, 1.0, 1.0))
    box.visual = trimesh.visual.ColorVisuals(box, vertex_colors=np.tile([30, 200, 40, 255], (len(box.vertices), 1)))
    box.export(tmp_path / "coloured.glb")
    assert colour_at(render_one(tmp_path / "coloured.glb", tmp_path, size=64), 0.5, 0.5) == "green"


def test_trimesh_pbr_glb_front_and_back(tmp_path: Path) -> None:
    glb = trimesh_two_tone_box(tmp_path / "box.glb")
    front, back = (load(p) for p in render_glb(glb, [FRONT, BACK], size=96, out_dir=tmp_path / "out"))
    assert colour_at(front, 0.5, 0.5) == "red"
    assert colour_at(back, 0.5, 0.5) == "blue"


def test_metallic_surface_reflects_the_environment(tmp_path: Path) -> None:
    """A fully metallic material is black without an environment to reflect; ours must stay bright."""
    glb = trimesh_two_tone_box(tmp_path / "metal.glb", metallic=1.0)
    image = render_one(glb, tmp_path, ViewSpec(azimuth=30.0, elevation=20.0), size=96)
    assert image[object_mask(image)].mean() > 60


def test_views_are_framed_and_named(jpeg_textured_quad: Path, tmp_path: Path) -> None:
    reported: list[tuple[int, str]] = []
    paths = render_glb(
        jpeg_textured_quad,
        turntable(4, elevation=10.0),
        size=64,
        out_dir=tmp_path / "views",
        on_view=lambda i, p: reported.append((i, p.name)),
    )
    assert [p.name for p in paths] == [f"view_{i:02d}.png" for i in range(4)]
    assert reported == [(i, p.name) for i, p in enumerate(paths)]
    front = load(paths[2])  # turntable(4) = −180, −90, 0, 90
    assert Image.open(paths[0]).size == (64, 64)
    rows, cols = np.nonzero(object_mask(front))
    assert rows.min() > 0 and cols.min() > 0 and rows.max() < 63 and cols.max() < 63  # margin all round
    assert cols.max() - cols.min() > 40  # and the object fills most of the frame


def test_on_view_exception_stops_the_renderer(jpeg_textured_quad: Path, tmp_path: Path) -> None:
    cancel = threading.Event()

    def on_view(index: int, path: Path) -> None:
        cancel.set()
        raise Cancelled("job cancelled")

    with pytest.raises(Cancelled):
        render_glb(jpeg_textured_quad, turntable(8), size=64, out_dir=tmp_path, on_view=on_view)
    assert cancel.is_set()
    assert len(list(tmp_path.glob("view_*.png"))) < 8


def test_cancel_kills_a_silent_renderer_quickly(jpeg_textured_quad: Path, tmp_path: Path) -> None:
    """Cancel is honoured while the child is still starting (no view yet), not only between views."""
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    started = time.monotonic()
    with pytest.raises(Cancelled):
        render_glb(jpeg_textured_quad, turntable(8), size=256, out_dir=tmp_path, cancel=cancel)
    assert time.monotonic() - started < 5.0  # generous: this machine is shared; raising Cancelled is the real check


def test_timeout_is_a_mesh_error(jpeg_textured_quad: Path, tmp_path: Path) -> None:
    with pytest.raises(MeshError, match="timed out after 0 of 8 views"):
        render_glb(jpeg_textured_quad, turntable(8), size=256, out_dir=tmp_path, timeout_s=0.2)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "not a binary glTF"),
        (b"<html>not a model</html>", "not a binary glTF"),
        (struct.pack("<4sII", b"glTF", 2, 64) + b"\x00" * 52, "no visible geometry"),
    ],
)
def test_bad_files_raise_mesh_error(content: bytes, message: str, tmp_path: Path) -> None:
    path = tmp_path / "bad.glb"
    path.write_bytes(content)
    with pytest.raises(MeshError, match=message):
        render_glb(path, [FRONT], size=32, out_dir=tmp_path)


def test_glb_without_meshes_raises_mesh_error(tmp_path: Path) -> None:
    gltf = GltfBuilder()
    path = tmp_path / "empty.glb"
    path.write_bytes(gltf.glb([gltf.node(name="nothing here")]))
    with pytest.raises(MeshError, match="no visible geometry"):
        render_glb(path, [FRONT], size=32, out_dir=tmp_path)


def test_missing_egl_names_the_packages(
    jpeg_textured_quad: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With glvnd pointed at no EGL vendor, VTK falls back to OSMesa; without that either, the error says what to do."""
    monkeypatch.setenv("__EGL_VENDOR_LIBRARY_FILENAMES", str(tmp_path / "no-such-vendor.json"))
    monkeypatch.delenv("DISPLAY", raising=False)
    if ctypes.util.find_library("OSMesa"):  # the fallback is installed here: it must then render
        assert render_glb(jpeg_textured_quad, [FRONT], size=32, out_dir=tmp_path)
        return
    with pytest.raises(MeshError) as raised:
        render_glb(jpeg_textured_quad, [FRONT], size=32, out_dir=tmp_path)
    assert EGL_APT_PACKAGES in str(raised.value)


def test_turntable_default_azimuths() -> None:
    assert [v.azimuth for v in turntable(8)] == [-180, -135, -90, -45, 0, 45, 90, 135]
    assert {v.elevation for v in turntable(8)} == {15.0}
    with pytest.raises(ValueError):
        turntable(0)


def test_fit_distance_keeps_every_corner_in_view() -> None:
    bounds = (-2.0, 2.0, -0.5, 0.5, -1.0, 1.0)
    corners = [(x, y, z) for x in bounds[0:2] for y in bounds[2:4] for z in bounds[4:6]]
    views = turntable(8)
    distance = fit_distance(np.array(corners), (0.0, 0.0, 0.0), views)
    half = math.tan(math.radians(15.0))
    for view in views:
        az, el = math.radians(view.azimuth), math.radians(view.elevation)
        back = np.array([math.sin(az) * math.cos(el), math.sin(el), math.cos(az) * math.cos(el)])
        right = np.cross([0, 1, 0], back)
        right /= np.linalg.norm(right)
        up = np.cross(back, right)
        for corner in corners:
            depth = distance - np.dot(corner, back)
            assert abs(np.dot(corner, right)) < half * depth and abs(np.dot(corner, up)) < half * depth


def test_round_objects_fill_the_frame(tmp_path: Path) -> None:
    """Framing fits the vertices, not the bounding box's corners: a sphere spans most of the image."""
    sphere = trimesh.creation.icosphere(subdivisions=3)
    sphere.visual = trimesh.visual.TextureVisuals(
        uv=np.full((len(sphere.vertices), 2), 0.5),
        material=trimesh.visual.material.PBRMaterial(baseColorFactor=[200, 40, 40, 255], metallicFactor=0.0),
    )
    sphere.export(tmp_path / "sphere.glb")
    image = render_one(tmp_path / "sphere.glb", tmp_path, ViewSpec(azimuth=45.0, elevation=15.0), size=96)
    cols = np.nonzero(object_mask(image))[1]
    assert 0.75 * 96 < cols.max() - cols.min() < 96
