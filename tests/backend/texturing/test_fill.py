"""Filling unseen texels from the surface around them in 3D, and padding the gutters between charts."""

from __future__ import annotations

import numpy as np
from alch3mist.texturing.fill import NEUTRAL_GREY, fill_unseen, pad_gutters, texture_from_texels
from alch3mist.texturing.uv import rasterise_uv

from tests.backend.texturing.meshes import uv_box


def test_unseen_texels_blend_their_nearest_seen_points_by_inverse_distance() -> None:
    texels = rasterise_uv(uv_box(), 32)
    rng = np.random.default_rng(1)
    texels.position += rng.normal(0, 1e-3, texels.position.shape).astype(np.float32)  # no distance ties
    colours = rng.random((len(texels), 3)).astype(np.float32)
    seen = rng.random(len(texels)) < 0.6
    filled = fill_unseen(texels, colours, seen)
    assert np.array_equal(filled[seen], colours[seen])
    # brute force for a few unseen texels
    sources = np.nonzero(seen)[0]
    for index in np.nonzero(~seen)[0][:20]:
        distance = np.linalg.norm(texels.position[sources] - texels.position[index], axis=1)
        nearest = np.argsort(distance, kind="stable")[:4]
        weights = 1 / np.maximum(distance[nearest], 1e-9)
        expected = (weights[:, None] * colours[sources[nearest]]).sum(axis=0) / weights.sum()
        np.testing.assert_allclose(filled[index], expected, atol=1e-5)


def test_nothing_seen_gives_neutral_grey_and_everything_seen_changes_nothing() -> None:
    texels = rasterise_uv(uv_box(), 16)
    colours = np.random.default_rng(2).random((len(texels), 3)).astype(np.float32)
    assert np.all(fill_unseen(texels, colours, np.zeros(len(texels), bool)) == NEUTRAL_GREY)
    assert np.array_equal(fill_unseen(texels, colours, np.ones(len(texels), bool)), colours)


def test_every_gutter_texel_takes_its_nearest_chart_texel() -> None:
    texels = rasterise_uv(uv_box(), 48)
    colours = np.random.default_rng(3).random((len(texels), 3)).astype(np.float32)
    texture = texture_from_texels(texels, colours)
    mask = texels.chart_mask
    chart_rows, chart_cols = np.nonzero(mask)
    assert np.array_equal(texture[texels.rows, texels.cols], np.rint(colours * 255).astype(np.uint8))
    for row, col in zip(*np.nonzero(~mask), strict=True):
        distance = (chart_rows - row) ** 2 + (chart_cols - col) ** 2
        nearest = distance == distance.min()  # ties: any of the nearest is right
        candidates = texture[chart_rows[nearest], chart_cols[nearest]]
        assert (candidates == texture[row, col]).all(axis=1).any()
    image = np.zeros((4, 4, 3), np.float32)
    assert pad_gutters(image, np.ones((4, 4), bool)) is image
