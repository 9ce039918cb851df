"""The one loader for meshes to texture: every bad input gets a clear InvalidMesh, the rest is handled and noted."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import trimesh
from alch3mist.errors import InvalidMesh, InvalidRequest, MeshTooLarge
from alch3mist.texturing.mesh_input import MeshLimits, load_mesh
from PIL import Image

from tests.backend.mesh.test_render import GREEN, RED, GltfBuilder, quad
from tests.backend.texturing.meshes import uv_box

LIMITS = MeshLimits(max_bytes=5_000_000, max_faces=20_000)


def glb(mesh: trimesh.Trimesh | trimesh.Scene) -> bytes:
    return bytes(mesh.export(file_type="glb"))


def textured_box() -> trimesh.Trimesh:
    box = uv_box()
    material = trimesh.visual.material.PBRMaterial(metallicFactor=0.25, roughnessFactor=0.6)
    visual = trimesh.visual.TextureVisuals(uv=box.uv, material=material)
    return trimesh.Trimesh(box.vertices, box.faces, visual=visual, process=False)


# --- refused, with a message that says why ----------------------------------------------------------------------


def png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("data", "name", "message"),
    [
        (b"", "empty.glb", "empty"),
        (png(), "photo.png", "not a mesh we can read"),
        (b"hello, I am text", "notes.txt", "not a mesh we can read"),
        (b"glTF\x02\x00\x00\x00garbage-garbage-garbage", "broken.glb", "not a readable glTF"),
        (b"v 0 0 0\nv 1 0 0\nf 1 2 9\n", "broken.obj", "cannot be read as OBJ"),
    ],
)
def test_files_that_are_not_meshes(data: bytes, name: str, message: str) -> None:
    with pytest.raises(InvalidMesh, match=message):
        load_mesh(data, limits=LIMITS, filename=name)


def test_a_glb_without_geometry() -> None:
    gltf = GltfBuilder()
    empty = gltf.glb([gltf.node(name="empty")])
    with pytest.raises(InvalidMesh, match="no geometry"):
        load_mesh(empty, limits=LIMITS, filename="empty.glb")


def test_a_point_cloud() -> None:
    cloud = trimesh.PointCloud(np.random.default_rng(0).random((200, 3))).export(file_type="ply")
    with pytest.raises(InvalidMesh, match=r"point cloud.*reconstruct"):
        load_mesh(cloud, limits=LIMITS, filename="scan.ply")


def test_over_the_face_limit_is_refused_with_an_offer_to_decimate_and_decimated_on_request() -> None:
    sphere = glb(trimesh.creation.icosphere(subdivisions=6))  # 81,920 faces
    with pytest.raises(MeshTooLarge, match=r"81,920 faces.*20,000.*--decimate") as refused:
        load_mesh(sphere, limits=LIMITS, filename="dense.glb")
    assert isinstance(refused.value, InvalidRequest) and refused.value.http_status == 413
    loaded = load_mesh(sphere, limits=MeshLimits(5_000_000, 20_000, decimate=True), filename="dense.glb")
    assert len(loaded.mesh.faces) <= 20_000 and loaded.source_faces == 81_920
    assert any("decimated from 81,920" in note for note in loaded.notes)


def test_over_the_size_limit(tmp_path: Path) -> None:
    path = tmp_path / "big.glb"
    path.write_bytes(glb(textured_box()) + b"\0" * 200)
    with pytest.raises(MeshTooLarge, match="largest mesh file"):
        load_mesh(path, limits=MeshLimits(max_bytes=1000, max_faces=100))
    with pytest.raises(MeshTooLarge):
        load_mesh(path.read_bytes(), limits=MeshLimits(max_bytes=1000, max_faces=100))


def test_a_gltf_never_reads_outside_files() -> None:
    document = {
        "asset": {"version": "2.0"},
        "buffers": [{"uri": "../../../etc/passwd", "byteLength": 10}],
        "scenes": [{"nodes": []}],
    }
    with pytest.raises(InvalidMesh, match="outside file"):
        load_mesh(json.dumps(document).encode(), limits=LIMITS, filename="scene.gltf")


def test_draco_compressed_files_are_named() -> None:
    gltf = GltfBuilder()
    mesh = gltf.mesh(gltf.primitive(quad(-1, -1, 1, 1)))
    gltf.doc["extensionsUsed"] = gltf.doc["extensionsRequired"] = ["KHR_draco_mesh_compression"]
    with pytest.raises(InvalidMesh, match="Draco"):
        load_mesh(gltf.glb([gltf.node(mesh=mesh)]), limits=LIMITS, filename="draco.glb")


def test_nan_vertices_and_all_degenerate_faces() -> None:
    nan_obj = b"v 0 0 0\nv 1 0 nan\nv 0 1 0\nf 1 2 3\n"
    with pytest.raises(InvalidMesh, match="NaN"):
        load_mesh(nan_obj, limits=LIMITS, filename="nan.obj")
    flat_obj = b"v 0 0 0\nv 1 0 0\nv 2 0 0\nf 1 2 3\n"
    with pytest.raises(InvalidMesh, match="degenerate"):
        load_mesh(flat_obj, limits=LIMITS, filename="line.obj")


# --- handled, nothing lost -----------------------------------------------------------------------------------------


def test_primitives_materials_and_node_transforms_are_merged_in_world_space() -> None:
    gltf = GltfBuilder()
    uv = np.array([[0.0, 1.0], [1.0, 1.0], [1.0, 0.0], [0.0, 0.0]])
    left = gltf.primitive(quad(-1, -1, 1, 1), gltf.material(RED), uv=uv)
    right = gltf.primitive(quad(-1, -1, 1, 1), gltf.material(GREEN), uv=uv)
    red, green = gltf.mesh(left), gltf.mesh(right)
    nodes = [
        gltf.node(mesh=red, translation=[-2.0, 0.0, 0.0]),
        gltf.node(children=[gltf.node(mesh=green, translation=[4.0, 0.0, 0.0])], scale=[0.5, 0.5, 0.5]),
    ]
    loaded = load_mesh(gltf.glb(nodes), limits=LIMITS, filename="two.glb")
    assert loaded.source_primitives == 2 and len(loaded.mesh.faces) == 4 and loaded.has_uv
    assert any("merged 2 primitives (2 materials)" in note for note in loaded.notes)
    # world space restored: the red quad spans x −3…−1, the green one 1.5…2.5
    world = trimesh.transformations.transform_points(loaded.mesh.vertices, loaded.to_source)
    assert sorted(np.unique(np.round(world[:, 0], 6))) == [-3.0, -1.0, 1.5, 2.5]


def test_far_away_and_huge_meshes_are_normalised_and_can_be_put_back() -> None:
    box = textured_box()
    original = box.vertices * 1000.0 + [2.5e5, -4.0e4, 7.0e3]
    box.vertices = original
    loaded = load_mesh(glb(box), limits=LIMITS, filename="huge.glb")
    assert np.allclose(loaded.mesh.bounds, [[-0.5] * 3, [0.5] * 3])
    assert any("far from the origin" in n for n in loaded.notes) and any("1000 units" in n for n in loaded.notes)
    back = trimesh.transformations.transform_points(loaded.mesh.vertices, loaded.to_source)
    np.testing.assert_allclose(np.sort(back, axis=0), np.sort(original, axis=0), rtol=1e-9, atol=1e-6)
    assert loaded.has_uv and loaded.material is not None and loaded.material.metallic == 0.25


def test_z_up_meshes_are_turned_y_up() -> None:
    tall = trimesh.creation.box(extents=[1.0, 1.0, 4.0])  # tall along z
    loaded = load_mesh(tall.export(file_type="obj").encode(), limits=LIMITS, filename="tall.obj", up_axis="z")
    extent = loaded.mesh.bounds[1] - loaded.mesh.bounds[0]
    assert extent[1] == pytest.approx(1.0) and extent[0] == pytest.approx(0.25)


def test_an_inside_out_mesh_is_turned_right_side_out() -> None:
    box = textured_box()
    box.invert()
    assert box.volume < 0
    loaded = load_mesh(glb(box), limits=LIMITS, filename="inverted.glb")
    assert loaded.mesh.volume > 0 and any("inside-out" in note for note in loaded.notes)


def test_non_manifold_and_open_meshes_are_kept_and_noted() -> None:
    # three triangles on one edge (non-manifold), open
    obj = b"v 0 0 0\nv 1 0 0\nv 0 1 0\nv 0 -1 0\nv 0 0 1\nf 1 2 3\nf 2 1 4\nf 1 2 5\n"
    loaded = load_mesh(obj, limits=LIMITS, filename="fin.obj")
    assert len(loaded.mesh.faces) == 3
    assert any("non-manifold" in note for note in loaded.notes) and any("open" in note for note in loaded.notes)


def test_degenerate_faces_are_dropped_with_their_uvs_kept_in_step() -> None:
    box = uv_box()
    faces = np.concatenate([box.faces, [[0, 0, 1]]])  # one zero-area face
    mesh = trimesh.Trimesh(box.vertices, faces, visual=trimesh.visual.TextureVisuals(uv=box.uv), process=False)
    loaded = load_mesh(glb(mesh), limits=LIMITS, filename="box.glb")
    assert len(loaded.mesh.faces) == 12 and loaded.has_uv
    assert any("degenerate" in note for note in loaded.notes)


@pytest.mark.parametrize("kind", ["glb", "obj", "ply"])
def test_each_format_loads_from_a_path_and_from_bytes(tmp_path: Path, kind: str) -> None:
    path = tmp_path / f"box.{kind}"
    data = textured_box().export(file_type=kind)
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    for source in (path, path.read_bytes()):
        loaded = load_mesh(source, limits=LIMITS, filename=path.name)
        assert loaded.source_format == kind and len(loaded.mesh.faces) == 12


@pytest.mark.parametrize("kind", ["glb", "obj", "ply"])
def test_corrupted_files_only_ever_raise_invalid_mesh(kind: str) -> None:
    """Random byte flips and truncations of a valid file: a clear InvalidMesh or a mesh, never another error."""
    data = textured_box().export(file_type=kind)
    original = data if isinstance(data, bytes) else data.encode()
    rng = np.random.default_rng(7)
    for _ in range(60):
        corrupt = bytearray(original)
        for position in rng.integers(0, len(corrupt), rng.integers(1, 9)):
            corrupt[position] = int(rng.integers(0, 256))
        if rng.random() < 0.2:
            corrupt = corrupt[: int(rng.integers(1, len(corrupt)))]
        try:
            loaded = load_mesh(bytes(corrupt), limits=LIMITS, filename=f"corrupt.{kind}")
        except InvalidMesh:
            continue
        assert len(loaded.mesh.faces) > 0 and np.isfinite(loaded.mesh.vertices).all()
