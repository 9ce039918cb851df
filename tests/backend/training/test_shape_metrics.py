"""Geometry metrics on analytic shapes with known answers: winding numbers, Chamfer distance, F-score, normalising."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import trimesh
from alch3mist.training.shape_metrics import chamfer_distance, f_score, normalise, score, winding_numbers


def _sphere_points(radius: float, count: int = 20_000, seed: int = 0) -> np.ndarray:
    directions = np.random.default_rng(seed).normal(size=(count, 3))
    return radius * directions / np.linalg.norm(directions, axis=1, keepdims=True)


def test_winding_numbers_are_one_inside_and_zero_outside_even_with_a_hole() -> None:
    sphere = trimesh.creation.icosphere(subdivisions=3)
    triangles = torch.from_numpy(np.array(sphere.triangles, dtype=np.float32))
    points = torch.tensor(np.concatenate([_sphere_points(0.5, 50), _sphere_points(1.5, 50), [[0.0, 0.0, 0.0]]]))
    winding = winding_numbers(points.float(), triangles, chunk=17)
    assert torch.allclose(winding[:50], torch.ones(50), atol=1e-3)
    assert torch.allclose(winding[50:100], torch.zeros(50), atol=1e-3)
    holed = torch.from_numpy(np.array(sphere.triangles[8:], dtype=np.float32))  # 8 faces missing
    assert 0.9 < float(winding_numbers(torch.zeros(1, 3), holed)[0]) < 1.0


def test_chamfer_distance_of_concentric_spheres_is_twice_their_gap() -> None:
    inner, outer = _sphere_points(1.0, seed=1), _sphere_points(1.1, seed=2)
    assert chamfer_distance(inner, outer) == pytest.approx(0.2, abs=0.01)
    assert chamfer_distance(inner, inner) == 0.0


def test_f_score_counts_points_within_the_threshold() -> None:
    inner, outer = _sphere_points(1.0, seed=1), _sphere_points(1.1, seed=2)
    assert f_score(inner, inner, 0.01) == 1.0
    assert f_score(inner, outer, 0.05) == 0.0  # every point is 0.1 away
    assert f_score(inner, outer, 0.15) == pytest.approx(1.0, abs=1e-3)
    half = np.concatenate([inner[:10_000], outer[10_000:]])  # half the prediction off the reference surface
    assert f_score(half, inner, 0.05) == pytest.approx(2 * 0.5 * 1.0 / 1.5, abs=0.02)  # P 0.5, R ~1


def test_normalise_centres_and_scales_the_longest_side() -> None:
    box = trimesh.creation.box(extents=(2.0, 4.0, 1.0))
    box.apply_translation((5.0, -3.0, 2.0))
    shaped = normalise(box, extent=1.8)
    assert np.allclose(shaped.bounds, [[-0.45, -0.9, -0.225], [0.45, 0.9, 0.225]])


def test_score_ignores_scale_and_position_but_not_shape() -> None:
    small, big = trimesh.creation.icosphere(subdivisions=4), trimesh.creation.icosphere(subdivisions=4, radius=3.0)
    big.apply_translation((1.0, 2.0, 3.0))
    same = score(small, big)
    assert same.chamfer < 0.02 and same.f_score > 0.99  # what remains is the sampling: ~20k points a surface
    different = score(small, trimesh.creation.box(extents=(1.0, 1.0, 1.0)))
    assert different.chamfer > 0.05 and different.f_score < same.f_score
