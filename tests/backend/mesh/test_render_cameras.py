"""``render_glb_cameras``: the lit GLB render from explicit (orthographic and perspective) G-buffer cameras.

Rendered for real in VTK's child process on Mesa EGL, small. The reference is the G-buffer of the same mesh from the
same cameras: the colour render must cover exactly the pixels the G-buffer sees (after the file's node transform and
our normalisation), and show there the texture the G-buffer's unlit albedo pass shows, only lit.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import trimesh
from alch3mist.mesh.gbuffer import Camera, MeshArrays, _depth_range, render_gbuffers
from alch3mist.mesh.render import render_glb_cameras
from alch3mist.texturing.mesh_input import MeshLimits, load_mesh
from PIL import Image

from tests.backend.texturing.meshes import checker_texture, uv_box

SIZE = 96


@pytest.fixture(scope="module")
def placed_box(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checker-textured box of side 2, moved and rotated by its glTF node."""
    box = uv_box(2.0)
    material = trimesh.visual.material.PBRMaterial(baseColorTexture=Image.fromarray(checker_texture(128)))
    mesh = trimesh.Trimesh(
        box.vertices,
        box.faces,
        vertex_normals=box.vertex_normals,
        visual=trimesh.visual.TextureVisuals(uv=box.uv, material=material),
        process=False,
    )
    placement = trimesh.transformations.rotation_matrix(0.4, [0.2, 1.0, 0.1])
    placement[:3, 3] = [5.0, -1.0, 2.0]
    scene = trimesh.Scene()
    scene.add_geometry(mesh, transform=placement)
    path = tmp_path_factory.mktemp("glb") / "box.glb"
    path.write_bytes(trimesh.exchange.gltf.export_glb(scene))
    return path


def cameras() -> list[Camera]:
    return [
        Camera.look_at("orthographic", eye=(1.5, 1.0, 2.0), target=(0, 0, 0), width=SIZE, height=SIZE,
                       ortho_height=1.8),
        Camera.look_at("perspective", eye=(-1.2, -0.6, 1.8), target=(0, 0, 0), width=SIZE, height=SIZE, fov_y_deg=45),
    ]  # fmt: skip


def test_colour_covers_the_gbuffer_and_shows_its_texture_lit(placed_box: Path, tmp_path: Path) -> None:
    loaded = load_mesh(placed_box, limits=MeshLimits(max_bytes=1 << 24, max_faces=1000))
    arrays = MeshArrays.from_trimesh(loaded.mesh)
    views = cameras()
    texture = Image.fromarray(checker_texture(128))
    buffers = render_gbuffers(arrays, views, albedo_texture=texture)
    paths = render_glb_cameras(
        placed_box,
        views,
        scene_transform=np.linalg.inv(loaded.to_source).tolist(),
        depth_ranges=[_depth_range(arrays.vertices, camera) for camera in views],
        out_dir=tmp_path,
    )
    assert [path.name for path in paths] == ["colour_000.png", "colour_001.png"]
    for buffer, path in zip(buffers, paths, strict=True):
        with Image.open(path) as image:
            assert image.mode == "RGBA" and image.size == (SIZE, SIZE)
            colour = np.asarray(image, dtype=np.float64)
        covered = colour[..., 3] > 0
        assert buffer.mask.sum() > 0.2 * SIZE * SIZE
        assert np.array_equal(covered, buffer.mask)  # same triangles, same matrices: the same pixels
        assert buffer.albedo is not None
        # On each side of the box (one light level each) every channel follows the checker the G-buffer sees there;
        # two pixels off, it no longer does
        sides = np.round(buffer.face_normal * 4).astype(int) @ [1, 10, 100]
        big = [side for side in np.unique(sides[buffer.mask]) if (buffer.mask & (sides == side)).sum() > 200]
        assert len(big) >= 2
        aligned, shifted = [], []
        for side in big:
            on_side = buffer.mask & (sides == side)
            for channel in range(3):
                lit = colour[..., channel][on_side]
                aligned.append(np.corrcoef(lit, buffer.albedo[..., channel][on_side])[0, 1])
                shifted.append(np.corrcoef(lit, np.roll(buffer.albedo[..., channel], 2, axis=1)[on_side])[0, 1])
        assert min(aligned) > 0.9 and np.mean(aligned) > np.mean(shifted) + 0.3
        assert np.all(colour[~covered, 3] == 0)  # transparent background


def test_arguments_are_checked_before_rendering(placed_box: Path, tmp_path: Path) -> None:
    views = cameras()
    with pytest.raises(ValueError, match="one \\[near, far\\]"):
        render_glb_cameras(placed_box, views, scene_transform=np.eye(4).tolist(), depth_ranges=[[0.1, 9.0]],
                           out_dir=tmp_path)  # fmt: skip
    bad = np.eye(4)
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="finite 4x4"):
        render_glb_cameras(placed_box, views, scene_transform=bad.tolist(), depth_ranges=[[0.1, 9.0]] * 2,
                           out_dir=tmp_path)  # fmt: skip
