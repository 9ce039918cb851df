"""Back-projection: every texel gathers its colour from the edited views that see it.

For each view, a texel's surface point is projected into the image; each of the four pixels around that point (the
bilinear footprint) counts only if it shows the same surface — it sees the mesh, its depth matches the point's within
the pixel's slope-aware footprint, and its face normal does not point the other way (the far side of a thin shell).
The colour is the bilinear blend of the pixels that count, renormalised, so neither the background nor a nearer
surface bleeds in. Views are blended per texel with the weight

    w = |cos θ|^sharpness · feather · support

θ: angle between the surface normal and the direction to the camera (grazing views are smeared and weigh little;
``sharpness`` > 1 lets the most frontal view dominate, which keeps details sharp when edited views disagree a little);
``feather``: ramps from 0 to 1 over ``feather_px`` pixels away from the silhouette and from depth discontinuities
(edited views are least reliable at edges); ``support``: the share of the bilinear footprint that counted.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ..mesh.gbuffer import Camera, GBuffer
from .uv import TexelSurface

__all__ = ["EditedView", "Projection", "back_project"]

MIN_FACING = 0.08  # |cos θ| below this (beyond ~85°) a view does not count
MAX_SLOPE = 8.0  # tan θ cap in the depth tolerance
OPPOSITE_NORMALS = -0.25  # a pixel whose face normal meets the texel's below this cosine is another surface
MIN_SUPPORT = 0.2  # share of the bilinear footprint that must show the surface


@dataclass(eq=False)
class EditedView:
    """One view to project: its G-buffer and its (edited) colours, (H, W, 3) float32 in 0..1."""

    gbuffer: GBuffer
    colours: NDArray[np.float32]


@dataclass(eq=False)
class Projection:
    """What the views gave each texel of a :class:`TexelSurface`.

    Attributes
    ----------
    colours : (N, 3) float32 in 0..1 — weighted blend of the views (0 where unseen)
    weight : (N,) float32 — total weight; 0 = no view sees the texel
    """

    colours: NDArray[np.float32]
    weight: NDArray[np.float32]

    @property
    def seen(self) -> NDArray[np.bool_]:
        return np.asarray(self.weight > 0)

    @property
    def coverage(self) -> float:
        """Share of the chart texels that at least one view sees."""
        return float(self.seen.mean()) if len(self.weight) else 0.0


def back_project(
    texels: TexelSurface,
    views: Sequence[EditedView],
    *,
    sharpness: float = 4.0,
    feather_px: float = 3.0,
    workers: int | None = None,
    on_view: Callable[[int], None] | None = None,
) -> Projection:
    """Blend ``views`` into ``texels`` (see the module docstring). ``on_view(index)`` is called after each view.

    Views run in ``workers`` threads (default: the CPU count, at most 4): numpy releases the GIL in its large array
    operations, so views run side by side on several cores.
    """
    count = len(texels)
    colour_sum = np.zeros((count, 3), dtype=np.float32)
    weight_sum = np.zeros(count, dtype=np.float32)

    def one(view: EditedView) -> tuple[NDArray[np.int64], NDArray[np.float32], NDArray[np.float32]]:
        return _project_view(texels, view, sharpness, feather_px)

    pool = ThreadPoolExecutor(max_workers=max(1, workers or min(os.cpu_count() or 1, 4)))
    try:
        for index, (hits, weight, colour) in enumerate(pool.map(one, views)):
            colour_sum[hits] += weight[:, None] * colour
            weight_sum[hits] += weight
            if on_view is not None:
                on_view(index)  # may raise (cancel): the views not started yet are dropped
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    colours = np.divide(colour_sum, weight_sum[:, None], out=np.zeros_like(colour_sum), where=weight_sum[:, None] > 0)
    return Projection(colours=colours, weight=weight_sum)


def _project_view(
    texels: TexelSurface, view: EditedView, sharpness: float, feather_px: float
) -> tuple[NDArray[np.int64], NDArray[np.float32], NDArray[np.float32]]:
    """(texel indices seen, their weights, their colours) for one view. The hot loop: float32 and int32 arrays, the
    images padded by one pixel all round so the footprint never needs clamping, and a cheap nearest-pixel test that
    drops the far side of the object before the four-pixel work."""
    gbuffer, camera = view.gbuffer, view.gbuffer.camera
    height, width = gbuffer.mask.shape
    stride = width + 2  # the padded images' row length

    # 1. Where every texel lands, and how squarely the camera sees it (either side: inside-out and open meshes
    #    are seen from their back too)
    pixels, depth = camera.project(texels.position)
    x, y = pixels[:, 0] - 0.5, pixels[:, 1] - 0.5  # pixel-index space: pixel (i, j)'s centre is at (j, i)
    cosine, face_cosine = _cosines(texels, camera)
    candidates = np.nonzero(
        (np.abs(cosine) > MIN_FACING) & (x > -0.5) & (x < width - 0.5) & (y > -0.5) & (y < height - 0.5) & (depth > 0)
    )[0]
    facing = np.abs(cosine[candidates])
    x, y, depth = x[candidates], y[candidates], depth[candidates]
    # depth signed by the side of the surface the camera sees: one comparison checks both "same depth" and
    # "same side" (the far side of a thin shell has the same depth but faces away)
    signed_depth = np.sign(face_cosine[candidates]) * depth
    slope = np.minimum(np.sqrt(np.maximum(1.0 - facing**2, 0.0)) / np.maximum(facing, 1e-6), MAX_SLOPE)
    tolerance = camera.pixel_footprint(depth) * (1.0 + 1.5 * slope)
    surface = _padded(_signed_depth_image(gbuffer), np.nan).ravel()

    # 2. The nearest pixel must show this surface: drops what is hidden before the bilinear work
    nearest = (np.rint(y).astype(np.int32) + 1) * stride + np.rint(x).astype(np.int32) + 1
    shown = np.abs(surface[nearest] - signed_depth) <= 3.0 * tolerance
    candidates, facing, x, y, signed_depth, tolerance, nearest = (
        a[shown] for a in (candidates, facing, x, y, signed_depth, tolerance, nearest)
    )

    # 3. The bilinear footprint, keeping the pixels that show this surface
    colours = _padded(view.colours, 0.0).reshape(-1, 3)
    col0, row0 = np.floor(x), np.floor(y)
    fx, fy = x - col0, y - row0
    corner = (row0.astype(np.int32) + 1) * stride + col0.astype(np.int32) + 1
    colour = np.zeros((len(candidates), 3), dtype=np.float32)
    support = np.zeros(len(candidates), dtype=np.float32)
    for offset, share in ((0, (1 - fx) * (1 - fy)), (1, fx * (1 - fy)), (stride, (1 - fx) * fy), (stride + 1, fx * fy)):
        flat = corner + offset
        share = np.where(np.abs(surface[flat] - signed_depth) <= tolerance, share, np.float32(0.0))
        colour += share[:, None] * colours[flat]
        support += share
    seen = support >= MIN_SUPPORT

    # 4. Weights: view angle, distance from edges, footprint support
    feather = _padded(_edge_feather(gbuffer, feather_px), 0.0).ravel()
    weight = facing[seen] ** sharpness * feather[nearest[seen]] * support[seen]
    keep = weight > 0
    colour = colour[seen][keep] / support[seen][keep, None]
    return candidates[seen][keep], weight[keep].astype(np.float32), colour.astype(np.float32)


def _cosines(texels: TexelSurface, camera: Camera) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """(N,) cosines between the direction to the camera and each texel's interpolated and face normal."""
    if camera.kind == "orthographic":  # one direction: a matrix-vector product
        towards = (-camera.forward).astype(np.float32)
        return texels.normal @ towards, texels.face_normal @ towards
    directions = camera.directions_to_camera(texels.position)
    return (
        np.einsum("ij,ij->i", texels.normal, directions).astype(np.float32),
        np.einsum("ij,ij->i", texels.face_normal, directions).astype(np.float32),
    )


def _padded(image: NDArray[np.float32], value: float) -> NDArray[np.float32]:
    """``image`` with a one-pixel border of ``value`` all round."""
    pad = ((1, 1), (1, 1)) + ((0, 0),) * (image.ndim - 2)
    return np.pad(image.astype(np.float32, copy=False), pad, constant_values=value)


def _signed_depth_image(gbuffer: GBuffer) -> NDArray[np.float32]:
    """(H, W) depth, negated where the face seen turns its back to the camera; NaN on the background."""
    mask = gbuffer.mask
    towards = gbuffer.camera.directions_to_camera(gbuffer.position[mask])
    side = np.sign(np.einsum("ij,ij->i", gbuffer.face_normal[mask], towards))
    signed = np.full(mask.shape, np.nan, dtype=np.float32)
    signed[mask] = side * gbuffer.depth[mask]
    return signed


def _edge_feather(gbuffer: GBuffer, feather_px: float) -> NDArray[np.float32]:
    """(H, W) 0..1: distance (px) to the background or to a depth discontinuity, over ``feather_px``, capped at 1.

    The first object pixel at an edge is 1 px away, so it still weighs ``1 / feather_px``: a texel that only one
    view sees at its silhouette keeps a colour. A discontinuity is a step between neighbouring object pixels larger
    than a surface at the steepest counted slope could make.
    """
    mask = gbuffer.mask
    if feather_px <= 0:
        return mask.astype(np.float32)
    depth = np.where(mask, gbuffer.depth, np.nan)
    limit = 2.0 * MAX_SLOPE * gbuffer.camera.pixel_footprint(np.nan_to_num(depth))
    jump = np.zeros_like(mask)
    with np.errstate(invalid="ignore"):
        down = np.abs(np.diff(depth, axis=0)) > limit[:-1]
        right = np.abs(np.diff(depth, axis=1)) > limit[:, :-1]
    jump[:-1] |= down
    jump[1:] |= down
    jump[:, :-1] |= right
    jump[:, 1:] |= right
    from scipy import ndimage

    distance = ndimage.distance_transform_edt(mask & ~jump)
    return np.asarray(np.clip(distance / feather_px, 0.0, 1.0), dtype=np.float32)
