"""Geometry metrics and mesh helpers for the 3D LoRA: normalisation, surface samples, inside/outside, Chamfer, F-score.

- ``normalise``: centre the bounding box at the origin and scale its longest side to ``extent`` (meshes from any source
  are compared, and fitted, in one frame; orientation is taken as given: y up, front towards +z).
- ``winding_numbers``: the generalised winding number of points w.r.t. a triangle soup (Jacobson et al. 2013, solid
  angles by Van Oosterom & Strackee 1983): ~1 inside a closed surface, ~0 outside, and still meaningful for meshes
  with small holes. Pure torch, chunked, on any device (no rtree/embree needed).
- ``chamfer_distance``: mean nearest-neighbour distance from A to B plus from B to A (not squared).
- ``f_score``: harmonic mean of precision (share of A within ``threshold`` of B) and recall (B within ``threshold``
  of A) — Tatarchenko et al. 2019.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from numpy.typing import NDArray

if TYPE_CHECKING:
    import trimesh

__all__ = ["ShapeScore", "chamfer_distance", "f_score", "normalise", "sample_surface", "score", "winding_numbers"]

FSCORE_THRESHOLD = 0.02  # on meshes normalised to a longest side of 1 (2% of the object's size)


@dataclass(frozen=True)
class ShapeScore:
    chamfer: float
    f_score: float
    threshold: float


def normalise(mesh: trimesh.Trimesh, extent: float = 1.0) -> trimesh.Trimesh:
    """A copy centred on its bounding box with its longest side ``extent``."""
    copy = mesh.copy()
    lower, upper = copy.bounds
    copy.apply_translation(-(lower + upper) / 2.0)
    copy.apply_scale(extent / max(float(np.max(upper - lower)), 1e-12))
    return copy


def sample_surface(mesh: trimesh.Trimesh, count: int, seed: int = 0) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """``count`` area-uniform surface points and their (face) normals, reproducibly."""
    import trimesh

    points, faces = trimesh.sample.sample_surface(mesh, count, seed=seed)
    return np.asarray(points, dtype=np.float64), np.asarray(mesh.face_normals[faces], dtype=np.float64)


def winding_numbers(points: torch.Tensor, triangles: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """(P,) winding numbers of (P, 3) points w.r.t. (F, 3, 3) triangles (counter-clockwise = outward)."""
    out = []
    for start in range(0, points.shape[0], chunk):
        p = points[start : start + chunk, None, None, :]  # (p, 1, 1, 3)
        corners = triangles[None] - p  # (p, F, 3, 3)
        a, b, c = corners[:, :, 0], corners[:, :, 1], corners[:, :, 2]
        la, lb, lc = a.norm(dim=-1), b.norm(dim=-1), c.norm(dim=-1)
        numerator = (a * torch.cross(b, c, dim=-1)).sum(dim=-1)
        denominator = la * lb * lc + (a * b).sum(-1) * lc + (b * c).sum(-1) * la + (c * a).sum(-1) * lb
        out.append(torch.atan2(numerator, denominator).sum(dim=1) / (2.0 * torch.pi))
    return torch.cat(out)


def _nearest_distances(a: NDArray[np.float64], b: NDArray[np.float64]) -> NDArray[np.float64]:
    from scipy.spatial import cKDTree

    distances, _ = cKDTree(b).query(a)
    return np.asarray(distances, dtype=np.float64)


def chamfer_distance(a: NDArray[np.float64], b: NDArray[np.float64]) -> float:
    """Symmetric Chamfer distance between two point sets: mean(d(a, B)) + mean(d(b, A))."""
    return float(_nearest_distances(a, b).mean() + _nearest_distances(b, a).mean())


def f_score(a: NDArray[np.float64], b: NDArray[np.float64], threshold: float = FSCORE_THRESHOLD) -> float:
    """F-score at ``threshold`` of prediction ``a`` against reference ``b`` (0..1, 1 = every point matched)."""
    precision = float((_nearest_distances(a, b) < threshold).mean())
    recall = float((_nearest_distances(b, a) < threshold).mean())
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def score(
    prediction: trimesh.Trimesh, reference: trimesh.Trimesh, points: int = 20_000, threshold: float = FSCORE_THRESHOLD
) -> ShapeScore:
    """Chamfer and F-score of two meshes after normalising both (longest side 1, centred)."""
    a, _ = sample_surface(normalise(prediction), points, seed=1)
    b, _ = sample_surface(normalise(reference), points, seed=2)
    return ShapeScore(chamfer=chamfer_distance(a, b), f_score=f_score(a, b, threshold), threshold=threshold)
