"""GLB post-processing: world-space, y-up, centred, unit size, texture cap, simplify → unwrap → bake."""

from __future__ import annotations

import io
import json
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import trimesh
from alch3mist.engines.base import EngineParams
from alch3mist.engines.preview import PreviewEngine
from alch3mist.errors import MeshError
from alch3mist.mesh.glb import read_asset
from alch3mist.mesh.postprocess import PostprocessOptions, postprocess_glb
from alch3mist.mesh.validate import validate_glb, validator_available
from alch3mist.stages.progress import StageControl
from PIL import Image

from ..engines.servers import object_image

# --- a GLB written by hand (not by trimesh): two meshes, two materials, nested node transforms ----------------

PYRAMID = np.array([[-1, 0, -1], [1, 0, -1], [1, 0, 1], [-1, 0, 1], [0, 2, 0]], dtype=np.float32)
PYRAMID_FACES = np.array([[0, 1, 4], [1, 2, 4], [2, 3, 4], [3, 0, 4], [0, 2, 1], [0, 3, 2]], dtype=np.uint16)
PYRAMID_UV = np.array([[0, 0], [1, 0], [1, 1], [0, 1], [0.5, 0.5]], dtype=np.float32)
CUBE = np.array([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)], dtype=np.float32)
CUBE_FACES = trimesh.convex.convex_hull(CUBE).faces.astype(np.uint16)
ROOT = {"rotation": [0.7071068, 0, 0, 0.7071068], "scale": [2, 2, 2]}  # +90° about X, then x2
PYRAMID_NODE = {"translation": [3, 0, 0]}
CUBE_NODE = {"matrix": [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, -4, 1]}  # translate z -4 (column-major)


def _handmade_glb(texture_side: int) -> bytes:
    texture = io.BytesIO()
    Image.new("RGB", (texture_side, texture_side), (200, 30, 30)).save(texture, format="PNG")
    colours = np.tile(np.array([[0.1, 0.2, 0.9, 1.0]], dtype=np.float32), (8, 1))
    blobs = [
        PYRAMID.tobytes(),
        PYRAMID_UV.tobytes(),
        PYRAMID_FACES.tobytes(),
        CUBE.tobytes(),
        colours.tobytes(),
        CUBE_FACES.tobytes(),
        texture.getvalue(),
    ]
    views, binary = [], b""
    for blob in blobs:
        views.append({"buffer": 0, "byteOffset": len(binary), "byteLength": len(blob)})
        binary += blob + b"\0" * (-len(blob) % 4)

    def accessor(view: int, count: int, kind: str, component: int, extra: dict | None = None) -> dict:  # type: ignore[type-arg]
        return {"bufferView": view, "count": count, "type": kind, "componentType": component, **(extra or {})}

    tree = {
        "asset": {"version": "2.0", "generator": "handmade test writer"},
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{**ROOT, "children": [1, 2]}, {**PYRAMID_NODE, "mesh": 0}, {**CUBE_NODE, "mesh": 1}],
        "meshes": [
            {"primitives": [{"attributes": {"POSITION": 0, "TEXCOORD_0": 1}, "indices": 2, "material": 0}]},
            {"primitives": [{"attributes": {"POSITION": 3, "COLOR_0": 4}, "indices": 5, "material": 1}]},
        ],
        "materials": [
            {"pbrMetallicRoughness": {"baseColorTexture": {"index": 0}, "metallicFactor": 0.0}},
            {"pbrMetallicRoughness": {"metallicFactor": 0.0, "roughnessFactor": 0.5}},
        ],
        "textures": [{"source": 0}],
        "images": [{"bufferView": 6, "mimeType": "image/png"}],
        "accessors": [
            accessor(0, 5, "VEC3", 5126, {"min": PYRAMID.min(0).tolist(), "max": PYRAMID.max(0).tolist()}),
            accessor(1, 5, "VEC2", 5126),
            accessor(2, PYRAMID_FACES.size, "SCALAR", 5123),
            accessor(3, 8, "VEC3", 5126, {"min": CUBE.min(0).tolist(), "max": CUBE.max(0).tolist()}),
            accessor(4, 8, "VEC4", 5126),
            accessor(5, CUBE_FACES.size, "SCALAR", 5123),
        ],
        "bufferViews": views,
        "buffers": [{"byteLength": len(binary)}],
    }
    chunk = json.dumps(tree).encode()
    chunk += b" " * (-len(chunk) % 4)
    body = struct.pack("<I", len(chunk)) + b"JSON" + chunk + struct.pack("<I", len(binary)) + b"BIN\0" + binary
    return b"glTF" + struct.pack("<II", 2, 12 + len(body)) + body


def _expected_world_bounds() -> np.ndarray:
    rotation = trimesh.transformations.rotation_matrix(np.pi / 2, [1, 0, 0])
    root = rotation @ np.diag([2.0, 2.0, 2.0, 1.0])
    pyramid = trimesh.transform_points(PYRAMID, root @ trimesh.transformations.translation_matrix([3, 0, 0]))
    cube = trimesh.transform_points(CUBE, root @ trimesh.transformations.translation_matrix([0, 0, -4]))
    points = np.concatenate([pyramid, cube])
    return np.array([points.min(0), points.max(0)])


@pytest.fixture
def handmade(tmp_path: Path) -> Path:
    path = tmp_path / "handmade.glb"
    path.write_bytes(_handmade_glb(texture_side=64))
    if validator_available():
        assert validate_glb(path).errors == 0  # the input itself is a valid glTF
    return path


def test_other_tools_glb_is_baked_to_world_space_centred_and_unit_sized(handmade: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.glb"
    report = postprocess_glb(handmade, out, tmp_path / "texture.png", extras={"alch3mist": {"engine": "test"}})

    assert report.primitives == 2 and report.faces_in == report.faces == 6 + len(CUBE_FACES)
    scene = _load(out, force="scene")
    bounds = scene.bounds
    assert np.allclose((bounds[0] + bounds[1]) / 2, 0, atol=1e-5)
    assert np.isclose((bounds[1] - bounds[0]).max(), 1.0, atol=1e-5)
    expected = _expected_world_bounds()
    expected_extent = expected[1] - expected[0]
    assert np.allclose(bounds[1] - bounds[0], expected_extent / expected_extent.max(), atol=1e-4)
    for node in json.loads(_json_chunk(out))["nodes"]:
        assert "rotation" not in node and "scale" not in node  # transforms were baked into the vertices
    kinds = sorted(type(g.visual).__name__ for g in scene.geometry.values())
    assert kinds == ["ColorVisuals", "TextureVisuals"]  # the vertex colours and the texture both survive
    coloured = next(g for g in scene.geometry.values() if isinstance(g.visual, trimesh.visual.ColorVisuals))
    assert np.allclose(coloured.visual.vertex_colors[0], [25, 51, 229, 255], atol=2)
    assert report.texture_map == "engine texture" and (tmp_path / "texture.png").is_file()
    assert read_asset(out)["extras"] == {"alch3mist": {"engine": "test"}}
    if validator_available():
        assert validate_glb(out).errors == 0


def test_z_up_engine_output_is_turned_y_up(handmade: Path, tmp_path: Path) -> None:
    y_up = postprocess_glb(handmade, tmp_path / "y.glb", None)
    z_up = postprocess_glb(handmade, tmp_path / "z.glb", None, PostprocessOptions(up_axis="z"))
    assert y_up.faces == z_up.faces
    extent_y = np.ptp(_load(tmp_path / "y.glb", force="scene").bounds, axis=0)
    extent_z = np.ptp(_load(tmp_path / "z.glb", force="scene").bounds, axis=0)
    assert np.allclose(extent_z, extent_y[[0, 2, 1]], atol=1e-5)  # old z became the height


def test_textures_are_capped(tmp_path: Path) -> None:
    source = tmp_path / "big.glb"
    source.write_bytes(_handmade_glb(texture_side=1024))
    report = postprocess_glb(source, tmp_path / "out.glb", tmp_path / "tex.png", PostprocessOptions(texture_cap=256))
    assert report.texture_size == [256, 256] and Image.open(tmp_path / "tex.png").size == (256, 256)
    assert any("capped" in note for note in report.notes)


def test_simplify_then_unwrap_in_a_subprocess_then_bake(tmp_path: Path) -> None:
    raw = tmp_path / "preview.glb"
    PreviewEngine().generate(object_image(256), EngineParams(), raw, StageControl())
    out, texture = tmp_path / "simple.glb", tmp_path / "baked.png"
    report = postprocess_glb(raw, out, texture, PostprocessOptions(target_faces=2_000, bake_size=256))

    assert report.simplified and report.unwrapped and report.texture_map == "baked"
    assert report.faces <= 2_000 < report.faces_in
    mesh = next(iter(_load(out, force="scene").geometry.values()))
    assert isinstance(mesh.visual, trimesh.visual.TextureVisuals) and len(mesh.visual.uv) == len(mesh.vertices)
    baked = np.asarray(Image.open(texture).convert("RGB"), dtype=np.float64)
    assert baked.shape == (256, 256, 3)
    # the object is mostly green body with brown legs and a yellow head: so is the baked map, and no white
    assert baked[..., 1].mean() > baked[..., 2].mean() and (baked.min(axis=2) > 235).mean() < 0.02
    if validator_available():
        assert validate_glb(out).errors == 0


def test_unreadable_or_empty_glb_is_a_mesh_error(tmp_path: Path) -> None:
    empty, junk = tmp_path / "empty.glb", tmp_path / "junk.glb"
    empty.write_bytes(b"")
    junk.write_bytes(b"glTF" + b"\0" * 40)
    for path in (empty, junk):
        with pytest.raises(MeshError):
            postprocess_glb(path, tmp_path / "out.glb", None)


def _json_chunk(path: Path) -> bytes:
    data = path.read_bytes()
    (length,) = struct.unpack_from("<I", data, 12)
    return data[20 : 20 + length]


def _load(path: Path, **kwargs: Any) -> Any:
    """trimesh.load, untyped (its declared return type is the Geometry base class)."""
    return trimesh.load(path, **kwargs)


def test_webp_textures_come_out_as_png_and_validate(tmp_path: Path) -> None:
    """TRELLIS.2 exports with EXT_texture_webp (its app_texturing.py and example.py): what we hand out is PNG."""
    checker = np.kron(np.indices((8, 8)).sum(axis=0) % 2, np.ones((16, 16)))[..., None] * [200, 40, 40] + 30
    texture = Image.fromarray(checker.astype(np.uint8))
    roughness = Image.new("RGB", texture.size, (0, 150, 0))
    box = trimesh.creation.box()
    uv = (box.vertices[:, :2] + 0.5).clip(0, 1)
    material = trimesh.visual.material.PBRMaterial(baseColorTexture=texture, metallicRoughnessTexture=roughness)
    box.visual = trimesh.visual.TextureVisuals(uv=uv, material=material)
    source = tmp_path / "webp.glb"
    source.write_bytes(bytes(trimesh.Scene(box).export(file_type="glb", extension_webp=True)))
    document = json.loads(_json_chunk(source))
    assert "EXT_texture_webp" in document["extensionsUsed"]  # the input really is WebP-textured

    out, png = tmp_path / "out.glb", tmp_path / "texture.png"
    report = postprocess_glb(source, out, png)

    written = json.loads(_json_chunk(out))
    assert "EXT_texture_webp" not in json.dumps(written)
    assert [image["mimeType"] for image in written["images"]] == ["image/png", "image/png"]
    assert report.texture_map == "engine texture"
    with Image.open(png) as albedo:
        assert albedo.format == "PNG" and albedo.size == texture.size
        difference = np.abs(np.asarray(albedo.convert("RGB"), dtype=float) - np.asarray(texture, dtype=float))
    assert np.median(difference) <= 1 and difference.mean() < 8  # the pixels survive (WebP is lossy at edges)
    if validator_available():
        assert validate_glb(out).errors == 0
