"""Test meshes with known answers (UV spheres, boxes, a non-convex torus with an xatlas atlas) and known textures.

Shared by the texturing tests, the G-buffer tests and ``bench/texture.py``.
"""

from __future__ import annotations

import numpy as np
import trimesh
from alch3mist.mesh.gbuffer import MeshArrays
from alch3mist.texturing.uv import TexelSurface, rasterise_uv, unwrap
from numpy.typing import NDArray
from scipy import ndimage


def uv_sphere(rows: int = 32, columns: int = 64, radius: float = 1.0) -> MeshArrays:
    """A latitude/longitude sphere with an equirectangular UV layout: one chart, vertices split along the seam.

    ``u`` runs with the longitude from −180° (u = 0) to 180° (u = 1), ``v`` with the latitude from the south pole (0)
    to the north pole (1); the pole rows are single triangles (no zero-area faces). About ``2 · rows · columns`` faces.
    """
    latitude = np.linspace(np.pi / 2, -np.pi / 2, rows + 1)
    longitude = np.linspace(-np.pi, np.pi, columns + 1)
    lat, lon = np.meshgrid(latitude, longitude, indexing="ij")
    vertices = radius * np.stack([np.cos(lat) * np.sin(lon), np.sin(lat), np.cos(lat) * np.cos(lon)], -1)
    uv = np.stack([(lon + np.pi) / (2 * np.pi), (lat + np.pi / 2) / np.pi], -1)
    index = np.arange((rows + 1) * (columns + 1)).reshape(rows + 1, columns + 1)
    a, b = index[:-1, :-1], index[1:, :-1]
    c, d = index[1:, 1:], index[:-1, 1:]
    upper = np.stack([a, b, d], -1)[1:].reshape(-1, 3)  # no triangle at the north pole row's degenerate edge
    lower = np.stack([b, c, d], -1)[:-1].reshape(-1, 3)
    faces = np.concatenate([upper, lower])
    return MeshArrays(
        vertices.reshape(-1, 3), faces, uv=uv.reshape(-1, 2), vertex_normals=vertices.reshape(-1, 3) / radius
    )


# The box's six faces: (outward normal axis, sign) → chart cell (column, row) of a 3×2 atlas
_BOX_FACES = (
    ((0, 1), (0, 0)),
    ((0, -1), (1, 0)),
    ((1, 1), (2, 0)),
    ((1, -1), (0, 1)),
    ((2, 1), (1, 1)),
    ((2, -1), (2, 1)),
)
BOX_CHART_MARGIN = 0.04  # UV gap around each chart (in units of the whole texture)


def uv_box(size: float = 1.0) -> MeshArrays:
    """An axis-aligned cube of side ``size`` centred on the origin, each face its own UV chart in a 3×2 atlas."""
    vertices, uvs, faces, normals = [], [], [], []
    half = size / 2
    for (axis, sign), (column, row) in _BOX_FACES:
        u_axis, v_axis = [k for k in range(3) if k != axis]
        corners = []
        for cu, cv in ((0, 0), (1, 0), (1, 1), (0, 1)):
            point = np.zeros(3)
            point[axis] = sign * half
            point[u_axis] = (cu - 0.5) * size
            point[v_axis] = (cv - 0.5) * size
            corners.append(point)
        base = len(vertices)
        vertices.extend(corners)
        cell = 1 / 3, 1 / 2
        for cu, cv in ((0, 0), (1, 0), (1, 1), (0, 1)):
            uvs.append(
                [
                    column * cell[0] + BOX_CHART_MARGIN + cu * (cell[0] - 2 * BOX_CHART_MARGIN),
                    row * cell[1] + BOX_CHART_MARGIN + cv * (cell[1] - 2 * BOX_CHART_MARGIN),
                ]
            )
        normal = np.zeros(3)
        normal[axis] = sign
        normals.extend([normal] * 4)
        quad = [[base, base + 1, base + 2], [base, base + 2, base + 3]]
        # Counter-clockwise seen from outside: flip where the (u, v) axes make the normal point inwards
        if np.dot(np.cross(corners[1] - corners[0], corners[2] - corners[0]), normal) < 0:
            quad = [[f[0], f[2], f[1]] for f in quad]
        faces.extend(quad)
    return MeshArrays(np.array(vertices), np.array(faces), uv=np.array(uvs), vertex_normals=np.array(normals))


def unwrapped_torus(major: float = 0.5, minor: float = 0.2, sections: int = 48, texture_size: int = 256) -> MeshArrays:
    """A torus (non-convex: its inner side is hidden from many views) with an xatlas atlas of several charts."""
    torus = trimesh.creation.torus(major_radius=major, minor_radius=minor, major_sections=sections, minor_sections=24)
    return MeshArrays.from_trimesh(unwrap(torus, texture_size))


def checker_texture(size: int, squares: int = 8, blur: float = 0.0) -> NDArray[np.uint8]:
    """(size, size, 3) uint8: a coloured checker over two gradients — sharp edges, every texel distinct in colour."""
    rows, cols = np.mgrid[0:size, 0:size] / size
    check = ((np.floor(rows * squares) + np.floor(cols * squares)) % 2).astype(float)
    if blur:
        check = ndimage.gaussian_filter(check, blur)
    pixels = np.stack([0.15 + 0.7 * check, 0.25 + 0.6 * cols, 0.85 - 0.6 * rows * check], -1)
    return (pixels * 255).round().astype(np.uint8)


def field_colour(points: NDArray[np.floating]) -> NDArray[np.float64]:
    """A smooth colour field over 3D space ((N, 3) → (N, 3) in 0..1): continuous across every UV seam."""
    p = np.asarray(points, dtype=np.float64)
    return np.stack(
        [
            0.5 + 0.35 * np.sin(4.0 * p[:, 0] + 1.0),
            0.5 + 0.35 * np.sin(3.0 * p[:, 1] - 0.5 + 2.0 * p[:, 2]),
            0.5 + 0.35 * np.cos(5.0 * p[:, 2] + p[:, 0]),
        ],
        axis=1,
    )


def field_texture(mesh: MeshArrays, size: int) -> tuple[NDArray[np.uint8], TexelSurface]:
    """The 3D colour field baked into the mesh's UV layout (gutters padded), and the texel surface used."""
    from alch3mist.texturing.fill import texture_from_texels

    texels = rasterise_uv(mesh, size)
    return texture_from_texels(texels, field_colour(texels.position).astype(np.float32)), texels
