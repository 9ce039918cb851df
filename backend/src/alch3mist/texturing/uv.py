"""UV layout: is a mesh's own UV layout usable for one texture, unwrapping when it is not, and the texel surface.

The texel surface is the UV layout rasterised at the texture's size: for every texel whose centre lies inside a UV
triangle, the face and barycentrics it falls on, hence its exact 3D position and normal. Back-projection and filling
work on these texels (gather, not scatter: every texel asks the views for its colour, so a texture finer than the
views has no holes).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
from numpy.typing import NDArray

from ..errors import MeshError
from ..mesh.gbuffer import MeshArrays

# The GLB post-processing's xatlas driver: xatlas in its own process (slow, and it can crash on big meshes).
from ..mesh.postprocess import unwrap_uvs

if TYPE_CHECKING:
    import trimesh

__all__ = ["TexelSurface", "UvLayout", "ensure_uv_layout", "rasterise_uv", "unwrap", "uv_problem"]

logger = logging.getLogger(__name__)

UV_SLACK = 1e-3  # UVs this far outside [0, 1] still count as inside (exporters' round-off)
MAX_OVERLAP = 0.02  # share of texels claimed by two faces above which the layout is "overlapping"
MAX_COLLAPSED = 0.01  # share of surface area whose UV triangles have no area
CHECK_SIZE = 512  # raster used to measure overlap
CANDIDATES_PER_CHUNK = 4_000_000  # texel candidates tested at once (bounds memory: ~40 bytes each)
EDGE_EPS = 1e-5  # barycentric slack (float32 maps): texel centres on a shared edge belong to both faces


@dataclass(eq=False)
class TexelSurface:
    """The texels of a ``size``² texture covered by UV triangles, and the surface point behind each one.

    Attributes
    ----------
    size : int — the texture's side in texels
    rows, cols : (N,) int32 — texel indices (row 0 is the image's top: ``v`` = 1)
    face : (N,) int32 — the face each texel lies on
    barycentric : (N, 3) float32 — where on that face
    position : (N, 3) float32 — world position of the texel's centre on the surface
    normal : (N, 3) float32 — unit interpolated vertex normal there
    face_normal : (N, 3) float32 — unit normal of the face (from its winding)
    overlap : float — share of these texels that more than one face claimed (0 for a clean atlas)
    """

    size: int
    rows: NDArray[np.int32]
    cols: NDArray[np.int32]
    face: NDArray[np.int32]
    barycentric: NDArray[np.float32]
    position: NDArray[np.float32]
    normal: NDArray[np.float32]
    face_normal: NDArray[np.float32]
    overlap: float

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def chart_mask(self) -> NDArray[np.bool_]:
        """(size, size) bool: the texels inside some UV triangle."""
        mask = np.zeros((self.size, self.size), dtype=bool)
        mask[self.rows, self.cols] = True
        return mask

    def to_image(self, values: NDArray[np.floating] | NDArray[np.integer], fill: float = 0.0) -> NDArray[np.float32]:
        """(N, C) per-texel values → (size, size, C) image, ``fill`` outside the charts."""
        channels = values.shape[1] if values.ndim == 2 else 1
        image = np.full((self.size, self.size, channels), fill, dtype=np.float32)
        image[self.rows, self.cols] = values.reshape(len(self), channels)
        return image


def rasterise_uv(mesh: MeshArrays, size: int) -> TexelSurface:
    """Every texel centre of a ``size``² texture inside a UV triangle of ``mesh`` (which must have UVs).

    Texel ``(row i, col j)`` has its centre at ``u = (j + 0.5) / size``, ``v = 1 − (i + 0.5) / size``. Where UV
    triangles overlap, the face listed last wins (and ``overlap`` says how often that happened).
    """
    if mesh.uv is None:
        raise ValueError("the mesh has no UVs to rasterise")
    if not 1 <= size <= 16384:
        raise ValueError(f"texture size must be within 1..16384, got {size}")
    # Texel space: x = u·size, y = (1 − v)·size; texel (i, j) is the unit square [j, j+1] × [i, i+1].
    corners = np.stack([mesh.uv[:, 0] * size, (1.0 - mesh.uv[:, 1]) * size], axis=1)[mesh.faces]
    col0, widths, row0, counts = _texel_boxes(corners, size)
    to_bary = _barycentric_maps(corners)  # 6 × (F,): b1 = m0·x + m1·y + m2, b2 = m3·x + m4·y + m5

    owner = np.full(size * size, -1, dtype=np.int32)
    bary_flat = np.zeros((size * size, 2), dtype=np.float32)
    claims = np.zeros(size * size, dtype=np.int32)
    for faces in _chunks(counts):
        # every texel of each face's bounding box, as (face, col, row); np.repeat is the fast way to expand
        per_face = counts[faces]
        face_of = np.repeat(faces.astype(np.int32), per_face)
        local = np.arange(len(face_of), dtype=np.int32) - np.repeat((np.cumsum(per_face) - per_face), per_face)
        width = np.repeat(widths[faces], per_face)
        cols = np.repeat(col0[faces], per_face) + local % width
        rows = np.repeat(row0[faces], per_face) + local // width
        centre_x, centre_y = cols.astype(np.float32) + 0.5, rows.astype(np.float32) + 0.5
        b1 = to_bary[0][face_of] * centre_x + to_bary[1][face_of] * centre_y + to_bary[2][face_of]
        b2 = to_bary[3][face_of] * centre_x + to_bary[4][face_of] * centre_y + to_bary[5][face_of]
        inside = (b1 >= -EDGE_EPS) & (b2 >= -EDGE_EPS) & (b1 + b2 <= 1 + EDGE_EPS)
        flat = rows[inside] * size + cols[inside]
        claims += np.bincount(flat, minlength=size * size).astype(np.int32)
        owner[flat] = face_of[inside]
        bary_flat[flat, 0], bary_flat[flat, 1] = b1[inside], b2[inside]

    covered = np.nonzero(owner >= 0)[0]
    face = owner[covered]
    b12 = np.clip(bary_flat[covered], 0.0, 1.0)
    b12 /= np.maximum(b12.sum(axis=1, keepdims=True), 1.0)  # (b1, b2) inside the triangle: b1 + b2 ≤ 1
    bary = np.column_stack([1.0 - b12[:, 0] - b12[:, 1], b12]).astype(np.float32)
    assert mesh.vertex_normals is not None
    position = _blend(mesh.vertices, mesh.faces, face, bary)
    normal = _blend(mesh.vertex_normals, mesh.faces, face, bary)
    normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-12)
    overlap = float(np.count_nonzero(claims[covered] > 1) / max(len(covered), 1))
    return TexelSurface(
        size=size,
        rows=(covered // size).astype(np.int32),
        cols=(covered % size).astype(np.int32),
        face=face,
        barycentric=bary,
        position=position,
        normal=normal,
        face_normal=mesh.face_normals.astype(np.float32)[face],
        overlap=overlap,
    )


def _texel_boxes(
    corners: NDArray[np.float64], size: int
) -> tuple[NDArray[np.int32], NDArray[np.int32], NDArray[np.int32], NDArray[np.int64]]:
    """Per face: first column, box width, first row, and texel count of the texel centres its bounding box holds."""
    x, y = corners[:, :, 0], corners[:, :, 1]
    col0 = np.clip(np.ceil(x.min(axis=1) - 0.5), 0, size)
    col1 = np.clip(np.floor(x.max(axis=1) - 0.5), -1, size - 1)
    row0 = np.clip(np.ceil(y.min(axis=1) - 0.5), 0, size)
    row1 = np.clip(np.floor(y.max(axis=1) - 0.5), -1, size - 1)
    widths = np.maximum(col1 - col0 + 1, 0).astype(np.int32)
    heights = np.maximum(row1 - row0 + 1, 0).astype(np.int32)
    e1, e2 = corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]
    has_area = np.abs(e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]) > 1e-12
    counts = np.where(has_area, widths.astype(np.int64) * heights, 0)
    return col0.astype(np.int32), widths, row0.astype(np.int32), counts


def _barycentric_maps(corners: NDArray[np.float64]) -> list[NDArray[np.float32]]:
    """The affine maps (x, y) → (b1, b2) of the UV triangles as six (F,) float32 coefficient arrays (separate arrays:
    gathering contiguous 1-D tables per texel is the fast way); zeros for triangles without area."""
    e1, e2 = corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]
    det = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
    inv = np.divide(1.0, det, out=np.zeros_like(det), where=np.abs(det) > 1e-12)
    x0, y0 = corners[:, 0, 0], corners[:, 0, 1]
    # b1 = (dx·e2y − dy·e2x) / det, b2 = (dy·e1x − dx·e1y) / det with dx = x − x0, dy = y − y0
    m0, m1 = e2[:, 1] * inv, -e2[:, 0] * inv
    m3, m4 = -e1[:, 1] * inv, e1[:, 0] * inv
    coefficients = (m0, m1, -(m0 * x0 + m1 * y0), m3, m4, -(m3 * x0 + m4 * y0))
    return [np.asarray(c, dtype=np.float32) for c in coefficients]


def _blend(
    values: NDArray[np.float64], faces: NDArray[np.int64], face: NDArray[np.int32], bary: NDArray[np.float32]
) -> NDArray[np.float32]:
    """(N, 3) per-vertex ``values`` blended at each texel's barycentrics, as ``v0 + b1·(v1 − v0) + b2·(v2 − v0)``
    from per-face arrays: gathering from three small (F, 3) tables is several times faster than from (V, 3) through
    the face indices, and this runs for millions of texels."""
    corners = values[faces].astype(np.float32)  # (F, 3, 3)
    base, edge1, edge2 = corners[:, 0], corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]
    blended: NDArray[np.float32] = base[face] + edge1[face] * bary[:, 1:2] + edge2[face] * bary[:, 2:]
    return blended


def _chunks(counts: NDArray[np.int64]) -> list[NDArray[np.int64]]:
    """Face indices with work (counts > 0), split so each group tests at most ~CANDIDATES_PER_CHUNK texels."""
    faces = np.nonzero(counts)[0]
    if not len(faces):
        return []
    cumulative = np.cumsum(counts[faces])
    groups = np.minimum(cumulative // CANDIDATES_PER_CHUNK, len(faces))
    boundaries = np.nonzero(np.diff(groups))[0] + 1
    return np.split(faces, boundaries)


def uv_problem(mesh: MeshArrays) -> str | None:
    """Why the mesh's UV layout cannot hold one texture, or None when it can.

    Usable: every vertex has finite UVs inside [0, 1] (no tiling), UV triangles with area for (almost) all of the
    surface, and charts that do not overlap (no mirrored or shared halves, which would get one colour for two places).
    """
    if mesh.uv is None:
        return "the mesh has no UVs"
    if np.any(mesh.uv < -UV_SLACK) or np.any(mesh.uv > 1 + UV_SLACK):
        return "its UVs reach outside 0..1 (a tiling texture layout)"
    corners = mesh.uv[mesh.faces]
    e1, e2 = corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]
    uv_area = 0.5 * np.abs(e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0])
    world = mesh.vertices[mesh.faces]
    area = 0.5 * np.linalg.norm(np.cross(world[:, 1] - world[:, 0], world[:, 2] - world[:, 0]), axis=1)
    collapsed = float(area[uv_area < 1e-12].sum() / max(area.sum(), 1e-30))
    if collapsed > MAX_COLLAPSED:
        return f"{collapsed:.0%} of its surface has collapsed (zero-area) UV triangles"
    overlap = rasterise_uv(mesh, CHECK_SIZE).overlap
    if overlap > MAX_OVERLAP:
        return f"{overlap:.0%} of its UV layout is shared by several faces (overlapping or mirrored charts)"
    return None


def unwrap(mesh: trimesh.Trimesh, texture_size: int, timeout_s: float = 300.0) -> trimesh.Trimesh:
    """A copy of ``mesh`` with a fresh xatlas UV atlas for a ``texture_size``² texture (vertices split at seams).

    Raises ``MeshError`` when xatlas fails or times out (it runs in its own process).
    """
    import trimesh as trimesh_module

    vmapping, indices, uvs = unwrap_uvs(mesh, texture_size, timeout_s)
    if len(indices) != len(mesh.faces):
        raise MeshError(f"xatlas returned {len(indices)} faces for {len(mesh.faces)}")
    return trimesh_module.Trimesh(
        vertices=np.asarray(mesh.vertices)[vmapping],
        faces=indices,
        visual=trimesh_module.visual.TextureVisuals(uv=uvs),
        process=False,
    )


@dataclass(eq=False)
class UvLayout:
    """The mesh to texture with the UV layout its texture uses.

    Attributes
    ----------
    mesh : trimesh.Trimesh — with ``visual.uv`` (one per vertex; vertices split at seams)
    source : "mesh" (its own UVs were usable) or "xatlas" (a new atlas)
    reason : why the mesh's own UVs were not used (None when they were)
    """

    mesh: trimesh.Trimesh
    source: Literal["mesh", "xatlas"]
    reason: str | None = None


def ensure_uv_layout(mesh: trimesh.Trimesh, texture_size: int, timeout_s: float = 300.0) -> UvLayout:
    """Keep the mesh's UVs when :func:`uv_problem` finds nothing wrong with them, else unwrap with xatlas."""
    reason = uv_problem(MeshArrays.from_trimesh(mesh))
    if reason is None:
        return UvLayout(mesh=mesh, source="mesh")
    logger.info("unwrapping with xatlas: %s", reason)
    try:
        unwrapped = unwrap(mesh, texture_size, timeout_s)
    except MeshError as exc:
        raise MeshError(
            f"the mesh needs new UVs ({reason}) and unwrapping failed: {exc.message}. Meshes of many faces unwrap "
            "faster decimated (retexture --decimate with a lower ALCH3MIST_MESH_MAX_FACES)"
        ) from exc
    return UvLayout(mesh=unwrapped, source="xatlas", reason=reason)
