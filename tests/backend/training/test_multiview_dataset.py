"""``alch3mist dataset multiview`` against known geometry, read back the way MV-Adapter's trainer reads it.

One dataset is built once for the module through the command line (real VTK renders in child processes, small
images): a unit cube GLB placed by a node transform, each face its own flat colour, and a sphere given as OBJ (the
non-GLB path), plus a broken file. The analytic answers — where each camera ray of ``meta.json`` meets the cube or
the sphere, its normal, its depth — are computed here from ``meta.json`` alone, with the trainer's conventions written
out again independently (``mvadapter/data/multiview.py``, ``mvadapter/utils/geometry.py``).
"""

from __future__ import annotations

import json
import math
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import trimesh
from alch3mist import cli
from alch3mist.chain import Manifest, Parameters
from alch3mist.prompting.schema import MaterialPrompt
from alch3mist.training import multiview_dataset as mv
from alch3mist.training.multiview_layout import (
    DEPTH_BACKGROUND,
    LAYOUTS,
    ORTHO_SCALE,
    VIEW_COUNTS,
    layout_views,
    read_depth_exr,
)
from numpy.typing import NDArray
from PIL import Image

from tests.backend.texturing.meshes import uv_box

SIZE = 96
TEXEL = ORTHO_SCALE / SIZE  # one pixel of an Ortho10View camera, in world units
QUANTUM = 1.0 / 255.0  # one step of an 8-bit encoded position (world units: position_scale = 1)
# The cube's faces in the mesh's own frame (glTF: y up, +z front) → flat colours, and the Ortho10View view that sees
# each face head-on: front (azimuth 0) sees +z, azimuth 90 sees +x, 180 sees −z, 270 sees −x, top +y, bottom −y.
FACE_COLOURS = {
    (0, 1): (220, 40, 40),
    (0, -1): (40, 200, 200),
    (1, 1): (40, 200, 40),
    (1, -1): (200, 40, 200),
    (2, 1): (40, 40, 220),
    (2, -1): (210, 200, 40),
}
HEAD_ON = {"0000": (2, 1), "0001": (0, 1), "0002": (2, -1), "0003": (0, -1), "0008": (1, 1), "0009": (1, -1)}
BOX_CELLS = {(0, 1): (0, 0), (0, -1): (1, 0), (1, 1): (2, 0), (1, -1): (0, 1), (2, 1): (1, 1), (2, -1): (2, 1)}


# --------------------------------------------------------------------------------------------------------------------
# Fixtures: meshes with known answers, one dataset
# --------------------------------------------------------------------------------------------------------------------


def face_colour_texture(size: int = 96) -> Image.Image:
    """uv_box's 3×2 atlas with each chart one flat colour (v up: chart row 0 is the image's lower half)."""
    pixels = np.zeros((size, size, 3), dtype=np.uint8)
    for face, (column, row) in BOX_CELLS.items():
        top = size - (row + 1) * size // 2
        pixels[top : top + size // 2, column * size // 3 : (column + 1) * size // 3] = FACE_COLOURS[face]
    return Image.fromarray(pixels)


def write_cube_glb(path: Path) -> None:
    """A unit cube scaled ×3 and moved away from the origin by its node: the dataset must undo both."""
    box = uv_box(1.0)
    material = trimesh.visual.material.PBRMaterial(
        baseColorTexture=face_colour_texture(), metallicFactor=0.0, roughnessFactor=0.9
    )
    mesh = trimesh.Trimesh(
        box.vertices,
        box.faces,
        vertex_normals=box.vertex_normals,
        visual=trimesh.visual.TextureVisuals(uv=box.uv, material=material),
        process=False,
    )
    scene = trimesh.Scene()
    placement = np.diag([3.0, 3.0, 3.0, 1.0])
    placement[:3, 3] = [4.0, -2.0, 1.5]
    scene.add_geometry(mesh, transform=placement)
    path.write_bytes(trimesh.exchange.gltf.export_glb(scene))


def write_sphere_obj(path: Path) -> None:
    """An icosphere of radius 2 (normalised to 0.5 by the dataset) with its analytic normals, as OBJ."""
    sphere = trimesh.creation.icosphere(subdivisions=5, radius=2.0)
    sphere.vertex_normals = sphere.vertices / 2.0
    path.write_text(trimesh.exchange.obj.export_obj(sphere, include_normals=True))


def run_cli(argv: list[str]) -> tuple[int, dict[str, Any]]:
    import contextlib
    import io

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = cli.main(["dataset", "multiview", *argv])
    text = buffer.getvalue()
    return code, json.loads(text) if text.strip().startswith("{") else {}


@pytest.fixture(scope="module")
def meshes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("meshes")
    write_cube_glb(folder / "cube.glb")
    write_sphere_obj(folder / "sphere.obj")
    (folder / "broken.glb").write_bytes(b"glTF not really")
    return folder


@pytest.fixture(scope="module")
def dataset_argv(meshes: Path, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    out = tmp_path_factory.mktemp("multiview") / "out"
    captions = meshes.parent / "captions.json"
    captions.write_text(json.dumps({"cube": "a cube with six coloured faces", "sphere": "a grey ball"}))
    return ["--meshes", str(meshes), "--out", str(out), "--size", str(SIZE), "--captions", str(captions), "--seed", "7"]


@pytest.fixture(scope="module")
def dataset(dataset_argv: list[str]) -> Path:
    out = Path(dataset_argv[3])
    code, summary = run_cli(dataset_argv)
    # The broken file is reported and costs nothing else: exit 1, the two good meshes finished and indexed
    assert code == 1
    assert set(summary["failed"]) == {"broken"}
    assert summary["rendered"] == 2 and summary["finished"] == 2
    return out


# --------------------------------------------------------------------------------------------------------------------
# The trainer's conventions, written out again from upstream (independently of the code under test)
# --------------------------------------------------------------------------------------------------------------------


def scene_folder(root: Path, scene_id: str) -> Path:
    """``_parse_scene_list_single``: an id without "/" lives at ``root/p[:2]/p``."""
    return root / scene_id[:2] / scene_id


def load_rgba(path: Path) -> NDArray[np.float64]:
    """``load_image``: RGBA / 255 (the alpha composites the background)."""
    with Image.open(path) as image:
        assert image.mode == "RGBA"
        return np.asarray(image, dtype=np.float64) / 255.0


def opencv_c2w(location: dict[str, Any]) -> NDArray[np.float64]:
    """``__getitem__``: ``c2w_[:, :, 1:3] *= -1`` turns Blender's camera-to-world into OpenCV's."""
    c2w = np.array(location["transform_matrix"], dtype=np.float64)
    c2w[:3, 1:3] *= -1.0
    return c2w


def pixel_rays(location: dict[str, Any], width: int, height: int) -> tuple[NDArray, NDArray, NDArray]:
    """World rays through every pixel centre (row-major), and each ray's unit step along the view axis."""
    c2w = opencv_c2w(location)
    rows, cols = np.mgrid[0:height, 0:width]
    u, v = cols.ravel() + 0.5, rows.ravel() + 0.5
    if location["projection_type"] == "ORTHO":
        scale = location["ortho_scale"]
        local = np.stack([(u - width / 2) * scale / width, (v - height / 2) * scale / height, np.zeros_like(u)], 1)
        origins = local @ c2w[:3, :3].T + c2w[:3, 3]
        directions = np.broadcast_to(c2w[:3, 2], origins.shape)
    else:
        focal = 0.5 * width / math.tan(0.5 * location["camera_angle_x"])  # the trainer's focal
        local = np.stack([(u - width / 2) / focal, (v - height / 2) / focal, np.ones_like(u)], 1)
        directions = local @ c2w[:3, :3].T
        directions = directions / np.linalg.norm(directions, axis=1, keepdims=True)
        origins = np.broadcast_to(c2w[:3, 3], directions.shape)
    axial = directions @ c2w[:3, 2]  # depth gained per unit along the ray
    return origins, directions, axial


def ray_box(origins: NDArray, directions: NDArray, half: float = 0.5) -> tuple[NDArray, NDArray]:
    """Slab method: distance to the first hit on the centred cube (NaN for a miss), and the outward normal there."""
    with np.errstate(divide="ignore", invalid="ignore"):
        inverse = 1.0 / directions
        near = np.minimum((-half - origins) * inverse, (half - origins) * inverse)
        far = np.maximum((-half - origins) * inverse, (half - origins) * inverse)
    entry, leave = near.max(axis=1), far.min(axis=1)
    hit = np.where(entry <= leave, entry, np.nan)
    axis = near.argmax(axis=1)
    normal = np.zeros_like(origins)
    normal[np.arange(len(axis)), axis] = -np.sign(directions[np.arange(len(axis)), axis])
    return hit, normal


def ray_sphere(origins: NDArray, directions: NDArray, radius: float = 0.5) -> NDArray:
    b = np.einsum("ij,ij->i", origins, directions)
    c = np.einsum("ij,ij->i", origins, origins) - radius**2
    with np.errstate(invalid="ignore"):
        return np.where(b * b - c >= 0, -b - np.sqrt(b * b - c), np.nan)


def views_of(folder: Path) -> list[tuple[dict[str, Any], dict[str, NDArray]]]:
    """Each camera of ``meta.json`` with its decoded images (flattened) and depth."""
    meta = json.loads((folder / "meta.json").read_text())
    width, height = meta["width"], meta["height"]
    out = []
    for location in meta["locations"]:
        index = location["index"]
        images = {m: load_rgba(folder / f"{m}_{index}.webp").reshape(-1, 4) for m in ("color", "normal", "position")}
        images["depth"] = read_depth_exr(folder / f"depth_{index}.exr").reshape(-1)
        out.append(({**location, "width": width, "height": height}, images))
    return out


def angle_deg(a: NDArray, b: NDArray) -> NDArray:
    cosine = np.einsum("ij,ij->i", a, b) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    return np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0)))


# --------------------------------------------------------------------------------------------------------------------
# Layout, files, index
# --------------------------------------------------------------------------------------------------------------------


def test_every_id_has_every_file_where_the_trainer_looks(dataset: Path) -> None:
    ids = json.loads((dataset / "ids.json").read_text())
    assert sorted(ids) == ["cube", "sphere"]
    for layout in LAYOUTS:
        for scene_id in ids:
            folder = scene_folder(dataset / layout / "data", scene_id)
            meta = json.loads((folder / "meta.json").read_text())
            assert meta["width"] == meta["height"] == SIZE
            assert [loc["index"] for loc in meta["locations"]] == [f"{i:04d}" for i in range(VIEW_COUNTS[layout])]
            for location in meta["locations"]:
                for name in ("color", "normal", "position"):
                    assert (folder / f"{name}_{location['index']}.webp").is_file()
                assert (folder / f"depth_{location['index']}.exr").is_file()
    assert not list(dataset.glob("*/data/*/.*"))  # no unfinished folder left behind


def test_captions_and_split_are_what_the_config_needs(dataset: Path) -> None:
    ids = json.loads((dataset / "ids.json").read_text())
    captions = json.loads((dataset / "captions.json").read_text())
    split = json.loads((dataset / "split.json").read_text())
    assert captions == {"cube": "a cube with six coloured faces", "sphere": "a grey ball"}
    assert split["train"] + split["val"] + split["test"] == ids  # upstream slices ids.json with the *_indices
    train_start, train_end = split["train_indices"]
    assert ids[train_start:train_end] == split["train"]
    assert ids[split["val_indices"][0] : split["val_indices"][1]] == split["val"]
    assert ids[split["test_indices"][0] :] == split["test"]


def test_split_fractions_and_stability() -> None:
    ids = [f"id{i:03d}" for i in range(200)]
    split = mv.split_ids(ids, (0.8, 0.1, 0.1), seed=5)
    assert [len(split[name]) for name in ("train", "val", "test")] == [160, 20, 20]
    assert sorted(split["train"] + split["val"] + split["test"]) == ids
    assert split == mv.split_ids(list(reversed(ids)), (0.8, 0.1, 0.1), seed=5)  # order of listing does not matter
    assert split != mv.split_ids(ids, (0.8, 0.1, 0.1), seed=6)


def test_meta_json_has_bpy_renderers_fields(dataset: Path) -> None:
    meta = json.loads((scene_folder(dataset / "ortho10" / "data", "cube") / "meta.json").read_text())
    front = meta["locations"][0]
    assert {
        "index",
        "projection_type",
        "ortho_scale",
        "camera_angle_x",
        "elevation",
        "azimuth",
        "transform_matrix",
    } <= set(front)
    assert front["projection_type"] == "ORTHO" and front["ortho_scale"] == pytest.approx(1.1)
    # bpy-renderer stores radians, azimuth shifted by −90° ("forward issue"): the front camera sits on −y
    assert front["azimuth"] == pytest.approx(math.radians(-90.0)) and front["elevation"] == pytest.approx(0.0)
    c2w = np.array(front["transform_matrix"])
    assert np.allclose(c2w[:3, 3] / np.linalg.norm(c2w[:3, 3]), [0, -1, 0], atol=1e-9)
    assert np.allclose(c2w[:3, 2], [0, -1, 0], atol=1e-9)  # Blender cameras look down −z: +z points back at −y
    assert np.allclose(c2w[:3, 1], [0, 0, 1], atol=1e-9)  # image up = world up (z)
    top = meta["locations"][8]
    assert top["elevation"] == pytest.approx(math.radians(89.99))


# --------------------------------------------------------------------------------------------------------------------
# Known geometry: the cube
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", LAYOUTS)
def test_cube_depth_normals_positions_are_analytic(dataset: Path, layout: str) -> None:
    for location, images in views_of(scene_folder(dataset / layout / "data", "cube")):
        origins, directions, axial = pixel_rays(location, location["width"], location["height"])
        distance, normal = ray_box(origins, directions)
        seen = images["color"][:, 3] > 0.5
        hit = ~np.isnan(distance)
        # Coverage: the same pixels, but for rasteriser edge rules on the silhouette
        assert (seen != hit).sum() <= 2 * location["width"], location["index"]
        both = seen & hit
        # Depth = camera-space z of the hit; 65535 where empty (the trainer masks > 1000)
        assert np.abs(images["depth"][both] - distance[both] * axial[both]).max() < 1e-4
        assert np.all(images["depth"][~seen] == DEPTH_BACKGROUND)
        # Reprojecting the depth with meta.json's camera lands on the cube's surface
        points = origins[both] + (images["depth"][both] / axial[both])[:, None] * directions[both]
        assert np.abs(np.abs(points).max(axis=1) - 0.5).max() < 1e-4
        # Normals: world space, n / 2 + 0.5 — away from the edges (a pixel there may straddle two faces)
        hits = origins + np.nan_to_num(distance)[:, None] * directions
        inner = both & (np.sort(np.abs(hits), axis=1)[:, 1] < 0.5 - 0.05)
        decoded = images["normal"][inner, :3] * 2.0 - 1.0
        assert inner.sum() > 100 and angle_deg(decoded, normal[inner]).max() < 2.0
        # Positions: (p + 0.5) / 1.0 in 8 bits = the analytic hit within one texel (+ the 8-bit step)
        stored = images["position"][both, :3] - 0.5
        assert np.abs(stored - hits[both]).max() <= footprint(location, images) + QUANTUM


def footprint(location: dict[str, Any], images: dict[str, NDArray]) -> float:
    """One texel of this view in world units (perspective: at the farthest depth the view sees)."""
    if location["projection_type"] == "ORTHO":
        return float(location["ortho_scale"]) / location["width"]
    far = float(images["depth"][images["depth"] <= 1000.0].max())
    return far * 2.0 * math.tan(location["camera_angle_x"] / 2.0) / location["width"]


def test_cube_known_pixels(dataset: Path) -> None:
    """Named pixels of named views hold the surface point they must: the image centre of the front view is the
    centre of the front face (world −y: the glTF +z face), of the top view the centre of the top face (world +z)."""
    folder = scene_folder(dataset / "ortho10" / "data", "cube")
    centre = SIZE // 2
    expected = {"0000": (0.0, -0.5, 0.0), "0001": (0.5, 0.0, 0.0), "0002": (0.0, 0.5, 0.0), "0008": (0.0, 0.0, 0.5)}
    for index, point in expected.items():
        position = load_rgba(folder / f"position_{index}.webp")[centre, centre, :3] - 0.5
        assert np.abs(position - point).max() <= TEXEL + QUANTUM, index
    # A corner pixel of the front face: column 3 px in from the face's left edge, row 3 px down from its top
    left = round(SIZE / 2 - 0.5 / TEXEL)
    pixel = load_rgba(folder / "position_0000.webp")[left + 3, left + 3, :3] - 0.5
    assert np.abs(pixel - (-0.5 + 3.5 * TEXEL, -0.5, 0.5 - 3.5 * TEXEL)).max() <= TEXEL + QUANTUM


def test_cube_colour_is_the_face_each_view_sees(dataset: Path) -> None:
    """The colour render is aligned with the geometry and the world frame is the trainer's: each head-on view shows
    the glTF face it must, in that face's colour (lit: the hue stays, the brightness changes)."""
    folder = scene_folder(dataset / "ortho10" / "data", "cube")
    colours = {face: np.array(rgb, dtype=np.float64) for face, rgb in FACE_COLOURS.items()}
    for index, face in HEAD_ON.items():
        colour = load_rgba(folder / f"color_{index}.webp")
        assert np.all(colour[..., 3][SIZE // 2 - 10 : SIZE // 2 + 10, SIZE // 2 - 10 : SIZE // 2 + 10] == 1.0)
        seen = colour[SIZE // 2 - 10 : SIZE // 2 + 10, SIZE // 2 - 10 : SIZE // 2 + 10, :3].reshape(-1, 3).mean(0)
        similarity = {f: float(seen @ c / np.linalg.norm(seen) / np.linalg.norm(c)) for f, c in colours.items()}
        assert max(similarity, key=similarity.__getitem__) == face, (index, similarity)
        assert similarity[face] > 0.95


def test_camera_space_normals_follow_upstreams_conversion(dataset: Path) -> None:
    """``use_camera_space_normal: true`` turns our world normals into camera space with ``inv(c2w)``: the face a view
    sees head-on then points straight at the camera (+z of Blender's camera) in every head-on view."""
    folder = scene_folder(dataset / "ortho10" / "data", "cube")
    meta = json.loads((folder / "meta.json").read_text())
    for location in meta["locations"]:
        if location["index"] not in HEAD_ON:
            continue
        w2c = np.linalg.inv(np.array(location["transform_matrix"]))[:3, :3]
        normal = load_rgba(folder / f"normal_{location['index']}.webp")[SIZE // 2, SIZE // 2, :3] * 2 - 1
        camera_space = w2c @ normal
        assert angle_deg(camera_space[None], np.array([[0.0, 0.0, 1.0]]))[0] < 2.0, location["index"]


# --------------------------------------------------------------------------------------------------------------------
# Known geometry: the sphere (given as OBJ)
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", LAYOUTS)
def test_sphere_depth_normals_positions_are_analytic(dataset: Path, layout: str) -> None:
    tessellation = 0.5 * 4e-4  # an icosphere of 5 subdivisions is within 4e-4 radii of the sphere
    for location, images in views_of(scene_folder(dataset / layout / "data", "sphere")):
        origins, directions, axial = pixel_rays(location, location["width"], location["height"])
        distance = ray_sphere(origins, directions)
        seen = images["color"][:, 3] > 0.5
        both = seen & ~np.isnan(distance)
        assert (seen != ~np.isnan(distance)).sum() <= 2 * location["width"], location["index"]
        points = origins[both] + (images["depth"][both] / axial[both])[:, None] * directions[both]
        radial = np.abs(np.linalg.norm(points, axis=1) - 0.5)
        texel = footprint(location, images)
        # Every pixel within a texel of the sphere; all but a few at grazing incidence (an edge pixel's hit clamped
        # onto the face the rasteriser chose) within the tessellation's own error
        assert radial.max() < texel and np.quantile(radial, 0.99) < 2 * tessellation + 1e-5
        facing = -np.einsum("ij,ij->i", points / 0.5, directions[both]) > 0.3
        depth_error = np.abs(images["depth"][both] - (distance * axial)[both])
        assert depth_error[facing].max() < texel and np.quantile(depth_error[facing], 0.99) < 4 * tessellation
        decoded = images["normal"][both, :3] * 2.0 - 1.0
        assert angle_deg(decoded[facing], points[facing]).max() < 2.0
        stored = images["position"][both, :3] - 0.5
        assert np.abs(stored - points).max() <= footprint(location, images) + QUANTUM


def test_upstreams_position_reconstruction_lands_on_the_surface(dataset: Path) -> None:
    """``get_position_map_from_depth_ortho`` (integer pixel coordinates, ``(u − W/2)·ortho_scale/W``) applied to our
    depth and cameras gives the surface we rendered, within one texel (it samples half a pixel off the centres)."""
    for location, images in views_of(scene_folder(dataset / "ortho10" / "data", "cube")):
        width = height = SIZE
        mask = images["depth"] <= 1000.0  # load_depth's mask
        rows, cols = np.mgrid[0:height, 0:width]
        scale = location["ortho_scale"]
        local = np.stack(
            [(cols.ravel() - width / 2) * scale / width, (rows.ravel() - height / 2) * scale / height,
             images["depth"]], 1
        )  # fmt: skip
        world = local @ opencv_c2w(location)[:3, :3].T + opencv_c2w(location)[:3, 3]
        stored = images["position"][:, :3] - 0.5
        assert np.abs(world[mask] - stored[mask]).max() <= TEXEL + QUANTUM, location["index"]


# --------------------------------------------------------------------------------------------------------------------
# Random views, resume, shards, jobs, check
# --------------------------------------------------------------------------------------------------------------------


def test_random_views_depend_on_seed_and_id_only() -> None:
    first = layout_views("rand6", scene_id="abc", seed=3, radius=0.8)
    assert first == layout_views("rand6", scene_id="abc", seed=3, radius=0.8)
    assert first != layout_views("rand6", scene_id="abc", seed=4, radius=0.8)
    assert first != layout_views("rand6", scene_id="abd", seed=3, radius=0.8)
    kinds = {view.projection for seed in range(10) for view in layout_views("rand6", scene_id="x", seed=seed, radius=1)}
    assert kinds == {"ORTHO", "PERSP"}


def test_random_views_frame_the_whole_object(dataset: Path) -> None:
    for scene_id in ("cube", "sphere"):
        for location, images in views_of(scene_folder(dataset / "rand6" / "data", scene_id)):
            alpha = images["color"][:, 3].reshape(SIZE, SIZE)
            border = np.concatenate([alpha[0], alpha[-1], alpha[:, 0], alpha[:, -1]])
            assert alpha.any() and not border.any(), (scene_id, location["index"])


def test_rerun_skips_finished_ids(dataset: Path, dataset_argv: list[str]) -> None:
    before = (scene_folder(dataset / "ortho10" / "data", "cube") / "meta.json").stat().st_mtime_ns
    code, summary = run_cli(dataset_argv)
    assert summary["rendered"] == 0 and summary["skipped"] == 2
    assert code == 1 and set(summary["failed"]) == {"broken"}  # an unfinished id is tried again, and fails again
    assert (scene_folder(dataset / "ortho10" / "data", "cube") / "meta.json").stat().st_mtime_ns == before


def test_shards_split_the_work_and_the_plain_run_writes_the_index(meshes: Path, tmp_path: Path) -> None:
    ids = [f"{i:032x}" for i in range(300)]
    counts = np.bincount([mv.shard_of(scene_id, 3) for scene_id in ids], minlength=3)
    assert counts.sum() == 300 and counts.min() > 70  # every id in exactly one shard, shards about even
    folder = tmp_path / "two"
    folder.mkdir()
    write_cube_glb(folder / "a.glb")
    write_cube_glb(folder / "d.glb")
    assert mv.shard_of("a", 2) != mv.shard_of("d", 2)  # (the two ids land in different shards)
    out = tmp_path / "out"
    common = ["--meshes", str(folder), "--out", str(out), "--size", "32", "--layout", "ortho10"]
    shard = mv.shard_of("a", 2)
    code, summary = run_cli([*common, "--shard", f"{shard}/2"])
    assert code == 0 and summary["rendered"] == 1 and summary["split"] is None
    assert (out / "ortho10" / "data" / "a" / "a" / "meta.json").is_file()
    assert not (out / "ortho10" / "data" / "d" / "d").exists() and not (out / "ids.json").exists()
    code, summary = run_cli(common)
    assert code == 0 and summary["rendered"] == 1 and summary["skipped"] == 1
    assert sorted(json.loads((out / "ids.json").read_text())) == ["a", "d"]
    assert run_cli(["--out", str(out), "--check"])[0] == 0
    # Asking for both layouts afterwards renders only the missing one
    ortho_meta = out / "ortho10" / "data" / "a" / "a" / "meta.json"
    before = ortho_meta.stat().st_mtime_ns
    code, summary = run_cli([*common[:-2], "--layout", "both"])
    assert code == 0 and summary["rendered"] == 2 and ortho_meta.stat().st_mtime_ns == before
    assert (out / "rand6" / "data" / "d" / "d" / "meta.json").is_file()


def write_job(jobs: Path, job_id: str, glb: Path | None, **overrides: Any) -> None:
    """A job folder as the chain leaves it: ``manifest.json`` (the real Manifest model) and ``model.glb``."""
    folder = jobs / job_id
    folder.mkdir(parents=True)
    prompt = MaterialPrompt(
        subject="a cube",
        materials=["oak wood", "brass inlay"],
        base_prompt="a cube, plain grey",
        edit_prompt="Alch3mist, turn it into oak wood with brass inlay",
        title="Oak cube",
    )
    parameters = Parameters(steps=1, guidance=1.0, size=64, edit_steps=1, edit_guidance=1.0, kontext_max_area=4096,
                            texture_size=256, views=0, view_size=64)  # fmt: skip
    fields: dict[str, Any] = {"request": "a cube of oak with brass inlay", "prompt": prompt, "seed": 1,
                              "preset": "tiny", "device": "cpu", "memory_plan": "cpu", "models": {},
                              "parameters": parameters, "engine_3d": "trellis", "artifacts": ["model.glb"]}  # fmt: skip
    fields.update(overrides)
    (folder / "manifest.json").write_text(Manifest(**fields).model_dump_json(indent=2))
    if glb is not None:
        shutil.copy(glb, folder / "model.glb")


def test_jobs_are_read_from_their_folders(meshes: Path, tmp_path: Path) -> None:
    from alch3mist.engines.base import EngineParams
    from alch3mist.engines.preview import PreviewEngine
    from alch3mist.stages.progress import StageControl

    from tests.backend.engines.servers import object_image

    jobs = tmp_path / "data" / "jobs"
    glb = meshes / "cube.glb"
    generated = tmp_path / "preview.glb"  # a GLB our own chain makes (the built-in preview engine)
    PreviewEngine().generate(object_image(256), EngineParams(), generated, StageControl())
    write_job(jobs, "a" * 32, glb, created_at=datetime(2026, 12, 1, tzinfo=UTC))
    write_job(jobs, "b" * 32, glb, status="failed")
    write_job(jobs, "c" * 32, generated, engine_is_preview=True, created_at=datetime(2026, 12, 2, tzinfo=UTC))
    write_job(jobs, "d" * 32, None)  # no GLB (yet)
    write_job(jobs, "e" * 32, glb, engine_3d="hunyuan3d", created_at=datetime(2026, 1, 1, tzinfo=UTC))
    (jobs / ("f" * 32)).mkdir()  # still running: no manifest
    found = {source.scene_id: source for source in mv.jobs_sources(str(tmp_path / "data"))}
    assert set(found) == {"a" * 32, "e" * 32}
    assert found["a" * 32].caption == "a cube, oak wood, brass inlay"
    assert {s.scene_id for s in mv.jobs_sources(f"{jobs}?engine=trellis")} == {"a" * 32}
    assert {s.scene_id for s in mv.jobs_sources(f"{jobs}?text=BRASS")} == {"a" * 32, "e" * 32}
    query = f"{jobs}?preview=include&since=2026-06-01"
    assert {s.scene_id for s in mv.jobs_sources(query)} == {"a" * 32, "c" * 32}
    # …and rendered (both layouts), captions from the prompts, and the folder checks out
    out = tmp_path / "out"
    code, summary = run_cli(["--jobs", query, "--out", str(out), "--size", "32"])
    assert code == 0 and summary["finished"] == 2
    captions = json.loads((out / "captions.json").read_text())
    assert captions == {"a" * 32: "a cube, oak wood, brass inlay", "c" * 32: "a cube, oak wood, brass inlay"}
    assert (out / "rand6" / "data" / "cc" / ("c" * 32) / "depth_0005.exr").is_file()
    assert mv.check_dataset(out).ok


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--out", "x"], "give --meshes DIR or --jobs QUERY"),
        (["--meshes", "nowhere", "--out", "x"], "not a folder"),
        (["--jobs", "nowhere?colour=red", "--out", "x"], "unknown filter"),
        (["--meshes", ".", "--out", "x", "--shard", "2/2"], "--shard"),
        (["--meshes", ".", "--out", "x", "--split", "0.8,0.3,0.1"], "--split"),
        (["--meshes", ".", "--out", "x", "--size", "8"], "--size"),
    ],
)
def test_bad_options_are_clear_errors(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["dataset", "multiview", *argv]) == 2
    assert message in capsys.readouterr().err


def test_check_passes_a_good_dataset_and_names_each_damage(dataset: Path, tmp_path: Path) -> None:
    assert mv.check_dataset(dataset).ok
    damaged = tmp_path / "damaged"
    shutil.copytree(dataset, damaged)
    cube = scene_folder(damaged / "ortho10" / "data", "cube")
    sphere = scene_folder(damaged / "rand6" / "data", "sphere")
    (cube / "normal_0003.webp").unlink()
    (cube / "color_0004.webp").write_bytes((cube / "color_0004.webp").read_bytes()[:200])
    (cube / "depth_0005.exr").write_bytes(b"not an exr")
    meta = json.loads((sphere / "meta.json").read_text())
    meta["locations"][2]["transform_matrix"][0][0] = 5.0
    (sphere / "meta.json").write_text(json.dumps(meta))
    position = Image.open(cube / "position_0006.webp").convert("RGBA")
    alpha = np.asarray(position).copy()
    alpha[:10, :10, 3] = 255  # a position map that claims pixels the other maps leave empty
    Image.fromarray(alpha, "RGBA").save(cube / "position_0006.webp", lossless=True)
    (damaged / "ortho10" / "data" / "cu" / ".cube.partial").mkdir()
    report = mv.check_dataset(damaged)
    problems = "\n".join(report.problems)
    assert "normal_0003.webp: missing" in problems
    assert "color_0004.webp: unreadable" in problems
    assert "depth_0005.exr: unreadable" in problems
    assert "transform_matrix is not a rotation" in problems
    assert "view 0006's images and depth disagree" in problems
    assert any(".cube.partial" in warning for warning in report.warnings)
    assert len(report.problems) == 5
    assert run_cli(["--out", str(damaged), "--check"])[0] == 1
    (damaged / "ids.json").unlink()
    assert "rerun without --shard" in "\n".join(mv.check_dataset(damaged).problems)


def test_the_benchmark_runs_in_its_tiny_form() -> None:
    from bench import multiview_dataset as bench

    result = bench.main(["--tiny"])
    assert result["seconds_per_mesh"] > 0 and result["meshes_per_hour"] > 0
