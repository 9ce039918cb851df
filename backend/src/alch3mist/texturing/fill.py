"""Filling what no view saw, and padding the charts so texture filtering never reads an empty texel.

Unseen texels take the colour of the nearest seen surface points in 3D (inverse-distance blend of a few), not of
their neighbours in the UV image: across a UV seam the two sides of one 3D edge sit in different charts, far apart in
UV space, so a UV-space inpainting paints them differently and the seam shows; the 3D neighbourhood is the same for
both sides. Then every texel outside the charts takes the colour of its nearest chart texel (gutter padding): bilinear
filtering and mipmaps at a chart's border read the gutter, which must continue the chart, not show black.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from .uv import TexelSurface

__all__ = ["NEUTRAL_GREY", "fill_unseen", "pad_gutters", "texture_from_texels"]

NEUTRAL_GREY = 0.5  # what a texture gets when no view saw anything at all
MAX_TREE_POINTS = 300_000  # seen texels indexed for the 3D nearest-neighbour search (an even subsample beyond it)
NEIGHBOURS = 4


def fill_unseen(
    texels: TexelSurface, colours: NDArray[np.float32], seen: NDArray[np.bool_], *, seed: int = 0
) -> NDArray[np.float32]:
    """(N, 3) colours with every unseen texel given the blend of its ``NEIGHBOURS`` nearest seen points in 3D."""
    filled = np.array(colours, dtype=np.float32, copy=True)
    unseen = np.nonzero(~seen)[0]
    if not len(unseen):
        return filled
    from scipy.spatial import cKDTree

    sources = np.nonzero(seen)[0]
    if not len(sources):
        filled[:] = NEUTRAL_GREY
        return filled
    if len(sources) > MAX_TREE_POINTS:
        sources = np.sort(np.random.default_rng(seed).choice(sources, MAX_TREE_POINTS, replace=False))
    tree = cKDTree(texels.position[sources])
    k = min(NEIGHBOURS, len(sources))
    distance, nearest = tree.query(texels.position[unseen], k=k, workers=-1)
    distance, nearest = distance.reshape(len(unseen), k), nearest.reshape(len(unseen), k)
    weights = 1.0 / np.maximum(distance, 1e-9)
    weights /= weights.sum(axis=1, keepdims=True)
    filled[unseen] = np.einsum("nk,nkc->nc", weights, colours[sources[nearest]]).astype(np.float32)
    return filled


def pad_gutters(image: NDArray[np.float32], chart_mask: NDArray[np.bool_]) -> NDArray[np.float32]:
    """(S, S, C) image with every texel outside ``chart_mask`` set to its nearest chart texel's value."""
    from scipy import ndimage

    if chart_mask.all() or not chart_mask.any():
        return image
    nearest = ndimage.distance_transform_edt(~chart_mask, return_distances=False, return_indices=True)
    return np.asarray(image[nearest[0], nearest[1]])


def texture_from_texels(texels: TexelSurface, colours: NDArray[np.float32]) -> NDArray[np.uint8]:
    """(S, S, 3) uint8 texture: ``colours`` ((N, 3) in 0..1) at their texels, the gutters padded."""
    image = texels.to_image(colours)
    padded = pad_gutters(image, texels.chart_mask)
    return np.asarray(np.clip(np.rint(padded * 255.0), 0, 255), dtype=np.uint8)
