"""Views for texturing: cameras that frame the object at one scale, neutral renders, the grid and its tiles."""

from __future__ import annotations

import numpy as np
import pytest
from alch3mist.mesh.gbuffer import render_gbuffers
from alch3mist.mesh.render import FRAME_MARGIN, fit_distance, turntable
from alch3mist.texturing.views import (
    BACKGROUND,
    BASE_GREY,
    ORTHO_MARGIN,
    NeutralRender,
    orbit_cameras,
    remove_shading,
    split_grid,
    texturing_views,
    tile_grid,
)
from PIL import Image

from tests.backend.texturing.meshes import uv_box


def test_views_alternate_above_and_below_the_horizon_on_the_turntable_azimuths() -> None:
    views = texturing_views(8, elevation=20.0)
    assert [v.azimuth for v in views] == [v.azimuth for v in turntable(8)]
    assert [v.elevation for v in views] == [20.0, -20.0] * 4


@pytest.mark.parametrize("kind", ["orthographic", "perspective"])
def test_every_view_frames_the_whole_object_at_one_scale(kind: str) -> None:
    box = uv_box()
    points = box.vertices * [1.0, 0.5, 2.0] + [3.0, -1.0, 0.5]  # off-centre and elongated
    views = texturing_views(6)
    cameras = orbit_cameras(points, views, 128, kind)  # type: ignore[arg-type]
    extents = []
    for camera in cameras:
        pixels, depth = camera.project(points)
        assert np.all(depth > 0) and np.all((pixels > 0) & (pixels < 128))
        extents.append(np.abs(pixels - 64).max())
    if kind == "orthographic":  # one scale: the widest view just fits, within the margin
        assert max(extents) == pytest.approx(64 / ORTHO_MARGIN, rel=1e-6)
        assert len({round(float(c.intrinsics[0, 0]), 9) for c in cameras}) == 1
    else:  # the multiview renderer's framing: same distance for every view
        centre = (points.min(axis=0) + points.max(axis=0)) / 2
        distance = fit_distance(points, centre, views)
        assert all(np.linalg.norm(c.position - centre) == pytest.approx(distance) for c in cameras)
        assert distance > 0 and FRAME_MARGIN > 1


def test_tiles_survive_the_grid_and_a_resize() -> None:
    rng = np.random.default_rng(0)
    tiles = [Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)) for _ in range(8)]
    grid = tile_grid(tiles, 32)
    assert grid.size == (4 * 32, 2 * 32)  # the contact sheet's 4 × 2 layout
    back = split_grid(grid, 8, 32)
    assert all(
        np.array_equal(np.rint(b * 255).astype(np.uint8), np.asarray(t)) for b, t in zip(back, tiles, strict=True)
    )
    # Kontext answers at its own size: the tiles come back at the tile size, close to the originals
    smooth = [Image.fromarray(np.full((32, 32, 3), 40 * i, np.uint8)) for i in range(6)]
    resized = tile_grid(smooth, 32).resize((72, 48), Image.Resampling.BICUBIC)
    back = split_grid(resized, 6, 32)
    assert [b.shape for b in back] == [(32, 32, 3)] * 6
    assert all(abs(float(b[8:24, 8:24].mean()) * 255 - 40 * i) < 2 for i, b in enumerate(back))


def test_a_reference_tile_is_letterboxed_on_the_background() -> None:
    reference = Image.new("RGB", (60, 30), (200, 10, 10))
    grid = np.asarray(tile_grid([reference], 32))
    assert grid.shape == (32, 32, 3)
    assert tuple(grid[0, 0]) == BACKGROUND and tuple(grid[16, 16]) == (200, 10, 10)


def test_the_neutral_shading_is_known_exactly_and_divides_out() -> None:
    box = uv_box()
    (camera,) = orbit_cameras(box.vertices, texturing_views(1, elevation=25.0), 96)
    (buffer,) = render_gbuffers(box, [camera])
    neutral = NeutralRender.from_gbuffer(buffer)
    pixels = np.asarray(neutral.image)
    assert np.all(pixels[~buffer.mask] == BACKGROUND)
    image = pixels.astype(np.float32) / 255.0
    assert np.all((neutral.shading[buffer.mask] > 0.5) & (neutral.shading[buffer.mask] <= 1.0))
    assert len(np.unique(np.round(neutral.shading[buffer.mask], 3))) >= 2  # the box's faces are lit differently
    albedo = remove_shading(image, neutral.shading)
    np.testing.assert_allclose(albedo[buffer.mask], BASE_GREY, atol=1.5 / 255 / 0.55)
