"""UV layouts: which ones are kept, unwrapping the others (xatlas in its own process), the texel surface."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh
from alch3mist.mesh.gbuffer import MeshArrays
from alch3mist.texturing import uv as uv_module
from alch3mist.texturing.uv import ensure_uv_layout, rasterise_uv, uv_problem

from tests.backend.texturing.meshes import uv_box, uv_sphere


def as_trimesh(mesh: MeshArrays) -> trimesh.Trimesh:
    return trimesh.Trimesh(mesh.vertices, mesh.faces, visual=trimesh.visual.TextureVisuals(uv=mesh.uv), process=False)


def test_texels_lie_on_their_faces_where_their_uv_says() -> None:
    mesh = uv_box()
    texels = rasterise_uv(mesh, 64)
    assert mesh.uv is not None
    corners = mesh.vertices[mesh.faces[texels.face]]
    on_face = np.einsum("ni,nij->nj", texels.barycentric.astype(np.float64), corners)
    np.testing.assert_allclose(texels.position, on_face, atol=1e-5)
    # the barycentrics reproduce the texel centre's UV
    uv = np.einsum("ni,nij->nj", texels.barycentric.astype(np.float64), mesh.uv[mesh.faces[texels.face]])
    np.testing.assert_allclose(uv[:, 0], (texels.cols + 0.5) / 64, atol=1e-4)
    np.testing.assert_allclose(uv[:, 1], 1 - (texels.rows + 0.5) / 64, atol=1e-4)
    # normals: the box's face normals, exactly
    np.testing.assert_allclose(texels.normal, texels.face_normal, atol=1e-6)
    assert texels.overlap == 0.0


def test_the_covered_texels_are_the_charts_area() -> None:
    box = uv_box()
    texels = rasterise_uv(box, 128)
    assert box.uv is not None
    corners = box.uv[box.faces]
    e1, e2 = corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]
    area = 0.5 * np.abs(e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]).sum()
    assert len(texels) / 128**2 == pytest.approx(area, abs=0.01)
    assert texels.chart_mask.sum() == len(texels)


def test_chunking_does_not_change_the_result(monkeypatch: pytest.MonkeyPatch) -> None:
    sphere = uv_sphere(12, 24)
    whole = rasterise_uv(sphere, 96)
    monkeypatch.setattr(uv_module, "CANDIDATES_PER_CHUNK", 500)
    chunked = rasterise_uv(sphere, 96)
    assert np.array_equal(whole.rows, chunked.rows) and np.array_equal(whole.face, chunked.face)
    np.testing.assert_array_equal(whole.position, chunked.position)


def test_a_clean_layout_is_kept() -> None:
    layout = ensure_uv_layout(as_trimesh(uv_box()), 256)
    assert layout.source == "mesh" and layout.reason is None


def mirrored_box() -> MeshArrays:
    """The box with the charts of its −x/−y/−z faces laid onto those of +x/+y/+z (a mirrored layout)."""
    box = uv_box()
    assert box.uv is not None
    uv = box.uv.copy()
    uv[4:8], uv[12:16], uv[20:24] = uv[0:4], uv[8:12], uv[16:20]
    return MeshArrays(box.vertices, box.faces, uv=uv)


@pytest.mark.parametrize(
    ("mesh", "reason"),
    [
        (MeshArrays(uv_box().vertices, uv_box().faces), "no UVs"),
        (MeshArrays(uv_box().vertices, uv_box().faces, uv=uv_box().uv * 3), "outside 0..1"),  # type: ignore[operator]
        (MeshArrays(uv_box().vertices, uv_box().faces, uv=np.full((24, 2), 0.5)), "collapsed"),
        (mirrored_box(), "overlapping"),
    ],
    ids=["none", "tiling", "collapsed", "mirrored"],
)
def test_unusable_layouts_are_named(mesh: MeshArrays, reason: str) -> None:
    problem = uv_problem(mesh)
    assert problem is not None and reason in problem


def test_an_unusable_layout_is_replaced_by_an_xatlas_atlas() -> None:
    layout = ensure_uv_layout(as_trimesh(mirrored_box()), 256)
    assert layout.source == "xatlas" and layout.reason is not None and "overlapping" in layout.reason
    unwrapped = MeshArrays.from_trimesh(layout.mesh)
    assert uv_problem(unwrapped) is None
    assert len(layout.mesh.faces) == 12
    # the same surface: every new face is one of the old ones, corner for corner
    old = {tuple(sorted(map(tuple, np.round(corners, 6)))) for corners in uv_box().vertices[uv_box().faces]}
    new = {tuple(sorted(map(tuple, np.round(corners, 6)))) for corners in unwrapped.vertices[unwrapped.faces]}
    assert new == old
