"""Proof that the projection is right: known textures in, the same textures out.

A mesh with a KNOWN texture is rendered by VTK — its own rasteriser, texture lookup and filtering, independent of our
numpy geometry — and those renders are treated as the "edited views". Back-projecting them must rebuild the texture:
PSNR ≥ 28 dB over the seen texels on a UV sphere, a box (six charts) and a non-convex torus (xatlas: many charts),
for both camera kinds; ≥ 95 % of the sphere seen from 8 views. Seams: a texture that is continuous in 3D, rebuilt and
rendered again from new angles, shows no colour jump across UV seams (measured on the pixel pairs that straddle one).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from alch3mist.mesh.gbuffer import Camera, GBuffer, MeshArrays, render_gbuffers
from alch3mist.mesh.render import ViewSpec
from alch3mist.texturing.fill import fill_unseen, texture_from_texels
from alch3mist.texturing.projection import EditedView, Projection, back_project
from alch3mist.texturing.uv import TexelSurface, rasterise_uv
from alch3mist.texturing.views import orbit_cameras, texturing_views
from numpy.typing import NDArray
from PIL import Image

from tests.backend.texturing.meshes import checker_texture, field_texture, unwrapped_torus, uv_box, uv_sphere

TEXTURE = 256
VIEW = 512  # two pixels per texel: the texture, not the views, limits what can be rebuilt
MIN_PSNR_DB = 28.0
MIN_SPHERE_COVERAGE = 0.95
MESHES: dict[str, Callable[[], MeshArrays]] = {
    "sphere": uv_sphere,
    "box": uv_box,
    "torus": lambda: unwrapped_torus(texture_size=TEXTURE),
}


def psnr(rebuilt: NDArray[np.floating], truth: NDArray[np.floating]) -> float:
    mse = float(np.mean((np.asarray(rebuilt, np.float64) - np.asarray(truth, np.float64)) ** 2))
    return 10.0 * np.log10(1.0 / max(mse, 1e-12))


def edited_views(mesh: MeshArrays, texture: NDArray[np.uint8], cameras: list[Camera]) -> list[EditedView]:
    """The "edited views": VTK's unlit renders of the mesh wearing ``texture``."""
    buffers = render_gbuffers(mesh, cameras, albedo_texture=Image.fromarray(texture))
    return [EditedView(buffer, np.asarray(buffer.albedo, dtype=np.float32) / 255.0) for buffer in buffers]


def rebuild(
    mesh: MeshArrays, texture: NDArray[np.uint8], cameras: list[Camera]
) -> tuple[TexelSurface, Projection, NDArray[np.float32]]:
    texels = rasterise_uv(mesh, texture.shape[0])
    projection = back_project(texels, edited_views(mesh, texture, cameras))
    truth = texture[texels.rows, texels.cols].astype(np.float32) / 255.0
    return texels, projection, truth


# --------------------------------------------------------------------------------------------------------------------
# Fidelity: PSNR over the seen texels, coverage
# --------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def meshes() -> dict[str, MeshArrays]:
    return {name: make() for name, make in MESHES.items()}


@pytest.mark.parametrize("kind", ["orthographic", "perspective"])
@pytest.mark.parametrize("name", list(MESHES))
def test_a_known_texture_is_rebuilt_from_its_renders(meshes: dict[str, MeshArrays], name: str, kind: str) -> None:
    mesh = meshes[name]
    texture = checker_texture(TEXTURE)  # sharp checker edges over gradients: every texel's colour is distinct
    cameras = orbit_cameras(mesh.vertices, texturing_views(8), VIEW, kind)  # type: ignore[arg-type]
    texels, projection, truth = rebuild(mesh, texture, cameras)
    seen = projection.seen
    assert psnr(projection.colours[seen], truth[seen]) >= MIN_PSNR_DB
    if name == "sphere":
        assert projection.coverage >= MIN_SPHERE_COVERAGE
    # A control with teeth: the same comparison against a texture flipped upside down fails by far
    flipped = texture[::-1][texels.rows, texels.cols].astype(np.float32) / 255.0
    assert psnr(projection.colours[seen], flipped[seen]) < MIN_PSNR_DB - 10


def test_occluded_texels_do_not_take_the_colour_in_front_of_them(meshes: dict[str, MeshArrays]) -> None:
    """One view from the side of the torus: its near half hides much of its far half. Visibility is checked
    against brute-force ray casting (every ray against every triangle, here in numpy), and what is seen well
    has the right colour."""
    mesh = meshes["torus"]
    texture = checker_texture(TEXTURE)
    (camera,) = orbit_cameras(mesh.vertices, [ViewSpec(azimuth=90.0, elevation=10.0)], VIEW)
    texels, projection, truth = rebuild(mesh, texture, [camera])
    facing = np.abs(np.einsum("ij,j->i", texels.normal, -camera.forward))
    sample = np.random.default_rng(0).choice(np.nonzero(facing > 0.3)[0], 1500, replace=False)
    depth = camera.to_camera(texels.position[sample])[:, 2]
    pixels, _ = camera.project(texels.position[sample])
    origins, directions = camera.rays(pixels)
    first_hit = _first_hits(origins, directions, mesh.vertices[mesh.faces])  # along the (orthographic) ray
    gap = depth - first_hit  # > 0: something is in front of the texel
    footprint = camera.pixel_footprint(depth)
    hidden, visible = gap > 5 * footprint, gap < 0.5 * footprint
    seen = projection.seen[sample]
    assert hidden.sum() > 300 and visible.sum() > 300  # the view really has both
    assert not seen[hidden].any(), "a texel behind another surface took a colour"
    assert seen[visible].mean() > 0.97
    well_seen = projection.seen & (facing > 0.5)
    assert psnr(projection.colours[well_seen], truth[well_seen]) >= MIN_PSNR_DB


def _first_hits(
    origins: NDArray[np.float64], directions: NDArray[np.float64], triangles: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Distance along each ray to its nearest triangle (inf for none): Möller–Trumbore against all triangles."""
    a, b, c = triangles[None, :, 0], triangles[None, :, 1], triangles[None, :, 2]
    e1, e2 = b - a, c - a
    d = directions[:, None, :]
    p = np.cross(d, e2)
    det = np.einsum("rtk,rtk->rt", np.broadcast_to(e1, p.shape), p)
    with np.errstate(divide="ignore", invalid="ignore"):
        inverse = 1.0 / det
        s = origins[:, None, :] - a
        u = np.einsum("rtk,rtk->rt", s, p) * inverse
        q = np.cross(s, np.broadcast_to(e1, s.shape))
        v = np.einsum("rtk,rtk->rt", np.broadcast_to(d, q.shape), q) * inverse
        t = np.einsum("rtk,rtk->rt", np.broadcast_to(e2, q.shape), q) * inverse
    hit = (np.abs(det) > 1e-12) & (u >= 0) & (v >= 0) & (u + v <= 1) & (t > 0)
    return np.asarray(np.where(hit, t, np.inf).min(axis=1))


def test_alternating_elevations_see_the_poles_that_one_elevation_misses(meshes: dict[str, MeshArrays]) -> None:
    """Why the views alternate ±elevation: 8 views all 20° above the horizon leave the south cap unseen."""
    mesh = meshes["sphere"]
    texels = rasterise_uv(mesh, 128)
    texture = checker_texture(128)
    above = [ViewSpec(view.azimuth, 20.0) for view in texturing_views(8)]
    only_above = back_project(texels, edited_views(mesh, texture, orbit_cameras(mesh.vertices, above, 256)))
    alternating = back_project(
        texels, edited_views(mesh, texture, orbit_cameras(mesh.vertices, texturing_views(8), 256))
    )
    assert only_above.coverage < 0.93 < MIN_SPHERE_COVERAGE <= alternating.coverage


# --------------------------------------------------------------------------------------------------------------------
# Seams
# --------------------------------------------------------------------------------------------------------------------

SEAM_UV_JUMP = 0.05  # neighbouring pixels whose UVs differ by more than this straddle a UV seam
SAME_SURFACE_PX = 2.0  # ... and lie this close in 3D (in pixel footprints): neighbours on the surface, not an edge
MAX_EXTRA_SEAM_JUMP = 3.0  # 8-bit levels a rebuilt texture may add across a seam, on average, over the original's


def neighbour_pairs(buffer: GBuffer) -> tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.bool_]]:
    """Flat indices (a, b) of right/down neighbour pixels on one continuous surface, and whether each pair
    straddles a UV seam."""
    height, width = buffer.mask.shape
    index = np.arange(height * width).reshape(height, width)
    firsts = [index[:, :-1].ravel(), index[:-1, :].ravel()]
    seconds = [index[:, 1:].ravel(), index[1:, :].ravel()]
    a, b = np.concatenate(firsts), np.concatenate(seconds)
    mask = buffer.mask.ravel()
    keep = mask[a] & mask[b]
    a, b = a[keep], b[keep]
    position = buffer.position.reshape(-1, 3)
    footprint = buffer.camera.pixel_footprint(buffer.depth.ravel()[a])
    close = np.linalg.norm(position[a] - position[b], axis=1) <= SAME_SURFACE_PX * footprint
    assert buffer.uv is not None
    uv = buffer.uv.reshape(-1, 2)
    seam = np.abs(uv[a] - uv[b]).max(axis=1) > SEAM_UV_JUMP
    return a[close], b[close], seam[close]


def seam_jumps(buffers: list[GBuffer]) -> tuple[float, float]:
    """(mean colour jump across seam pairs, mean across ordinary pairs) in 8-bit levels, over all views."""
    seam_values, plain_values = [], []
    for buffer in buffers:
        a, b, seam = neighbour_pairs(buffer)
        assert buffer.albedo is not None
        colours = buffer.albedo.reshape(-1, 3).astype(np.float64)
        jump = np.abs(colours[a] - colours[b]).mean(axis=1)
        seam_values.append(jump[seam])
        plain_values.append(jump[~seam])
    seams, plain = np.concatenate(seam_values), np.concatenate(plain_values)
    assert len(seams) > 50, "the check views must cross some seams"
    return float(seams.mean()), float(plain.mean())


def check_cameras(mesh: MeshArrays) -> list[Camera]:
    """New angles, between and beyond the projected views', so seams are seen where no view looked straight."""
    views = [ViewSpec(azimuth=a, elevation=e) for a, e in ((-157.5, 35), (-67.5, -35), (22.5, 50), (112.5, -10))]
    return orbit_cameras(mesh.vertices, views, 256, "perspective")


@pytest.mark.parametrize("name", list(MESHES))
def test_no_colour_jump_across_uv_seams_in_rerendered_views(meshes: dict[str, MeshArrays], name: str) -> None:
    mesh = meshes[name]
    truth, texels = field_texture(mesh, TEXTURE)  # continuous in 3D: the original has no jump at any seam
    cameras = orbit_cameras(mesh.vertices, texturing_views(8), VIEW)
    projection = back_project(texels, edited_views(mesh, truth, cameras))
    rebuilt = texture_from_texels(texels, fill_unseen(texels, projection.colours, projection.seen))

    checks = check_cameras(mesh)
    original_seam, _ = seam_jumps(render_gbuffers(mesh, checks, albedo_texture=Image.fromarray(truth)))
    rebuilt_seam, rebuilt_plain = seam_jumps(render_gbuffers(mesh, checks, albedo_texture=Image.fromarray(rebuilt)))
    assert rebuilt_seam <= original_seam + MAX_EXTRA_SEAM_JUMP
    assert rebuilt_seam <= 2.0 * rebuilt_plain + MAX_EXTRA_SEAM_JUMP  # a seam looks like any other pixel step

    # The measure has teeth: brighten the left half of the texture (u < 0.5) and the seams between halves jump
    broken = rebuilt.copy()
    broken[:, : TEXTURE // 2] = np.clip(broken[:, : TEXTURE // 2].astype(int) + 60, 0, 255).astype(np.uint8)
    broken_seam, _ = seam_jumps(render_gbuffers(mesh, checks, albedo_texture=Image.fromarray(broken)))
    assert broken_seam > rebuilt_seam + 3 * MAX_EXTRA_SEAM_JUMP


def test_unseen_texels_are_filled_from_the_surface_around_them_in_3d(meshes: dict[str, MeshArrays]) -> None:
    """The box seen only from above: its bottom face is never seen, and is filled from the sides' lower edges."""
    mesh = meshes["box"]
    truth, texels = field_texture(mesh, TEXTURE)
    above = [ViewSpec(view.azimuth, 30.0) for view in texturing_views(8)]
    projection = back_project(texels, edited_views(mesh, truth, orbit_cameras(mesh.vertices, above, VIEW)))
    bottom = texels.face_normal[:, 1] < -0.9
    assert not projection.seen[bottom].any() and projection.seen[~bottom].all()
    filled = fill_unseen(texels, projection.colours, projection.seen)
    assert np.array_equal(filled[projection.seen], projection.colours[projection.seen])
    # along the bottom edges (3D distance to a side < 2 texels' worth) the fill continues the sides' colours
    near_edge = bottom & (np.abs(texels.position[:, [0, 2]]).max(axis=1) > 0.5 - 2.0 / TEXTURE * 3)
    expected = truth[texels.rows, texels.cols].astype(np.float32) / 255.0
    assert np.abs(filled[near_edge] - expected[near_edge]).mean() < 0.03
