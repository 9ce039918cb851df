"""Exact G-buffers against analytic answers, for perspective and orthographic cameras.

Every test rasterises for real in VTK's child process (Mesa EGL), small images to stay fast. The analytic answers
(the ray's hit on a sphere or a cube, its normal, its depth) are computed here from the camera alone, independently of
the face ids VTK drew; agreement within a pixel proves VTK rasterised with exactly our camera.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
import trimesh
from alch3mist.errors import Cancelled
from alch3mist.mesh.gbuffer import Camera, GBuffer, MeshArrays, gbuffer_from_face_ids, render_gbuffers
from numpy.typing import NDArray
from PIL import Image

from tests.backend.texturing.meshes import checker_texture, uv_box

SIZE = 96


def sphere() -> MeshArrays:
    """Unit icosphere (max deviation from the true sphere ≈ 3e-4) with its analytic normals as vertex normals."""
    mesh = trimesh.creation.icosphere(subdivisions=5)
    return MeshArrays(mesh.vertices, mesh.faces, vertex_normals=mesh.vertices)


def cameras(width: int = SIZE, height: int = SIZE) -> list[Camera]:
    """A perspective and an orthographic camera from oblique, different directions."""
    return [
        Camera.look_at("perspective", eye=(0.6, 1.1, 3.2), target=(0, 0, 0), width=width, height=height, fov_y_deg=45),
        Camera.look_at("orthographic", eye=(-3.0, 0.8, -1.5), target=(0, 0, 0), width=width, height=height,
                       ortho_height=2.6),
    ]  # fmt: skip


def pixel_centres(mask: NDArray[np.bool_]) -> NDArray[np.float64]:
    rows, cols = np.nonzero(mask)
    return np.stack([cols + 0.5, rows + 0.5], axis=1)


def ray_sphere(origins: NDArray[np.float64], directions: NDArray[np.float64], radius: float = 1.0) -> NDArray:
    """Distance along each unit ray to its first hit on a centred sphere (NaN for a miss)."""
    b = np.einsum("ij,ij->i", origins, directions)
    c = np.einsum("ij,ij->i", origins, origins) - radius**2
    disc = b * b - c
    with np.errstate(invalid="ignore"):
        return np.where(disc >= 0, -b - np.sqrt(disc), np.nan)


def angle_deg(a: NDArray, b: NDArray) -> NDArray:
    cosine = np.einsum("ij,ij->i", a, b) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    return np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0)))


# --------------------------------------------------------------------------------------------------------------------
# Cameras
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["perspective", "orthographic"])
def test_look_at_puts_the_target_at_the_image_centre_with_up_up_and_right_right(kind: str) -> None:
    camera = Camera.look_at(kind, eye=(0, 0, 5), target=(0, 0, 0), width=80, height=60, fov_y_deg=40, ortho_height=3)  # type: ignore[arg-type]
    pixels, depth = camera.project(np.array([[0.0, 0, 0], [0, 1, 0], [1, 0, 0]]))
    assert pixels[0] == pytest.approx([40.0, 30.0])
    assert depth == pytest.approx([5.0, 5.0, 5.0])
    assert pixels[1, 1] < 30.0  # world up is image up (smaller row)
    assert pixels[2, 0] > 40.0  # world +x is image right seen from +z
    assert camera.forward == pytest.approx([0.0, 0.0, -1.0])
    assert camera.position == pytest.approx([0.0, 0.0, 5.0])


@pytest.mark.parametrize("camera", cameras(70, 50), ids=["perspective", "orthographic"])
def test_rays_and_projection_are_inverses(camera: Camera) -> None:
    pixels = np.random.default_rng(0).uniform([0, 0], [70, 50], size=(200, 2))
    origins, directions = camera.rays(pixels)
    assert np.linalg.norm(directions, axis=1) == pytest.approx(np.ones(200))
    points = origins + 2.5 * directions
    projected, depth = camera.project(points)
    np.testing.assert_allclose(projected, pixels, atol=1e-9)
    assert np.all(depth > 0)


def test_explicit_intrinsics_and_json_round_trip() -> None:
    intrinsics = np.array([[110.0, 0, 30.0], [0, 90.0, 41.0], [0, 0, 1]])
    base = cameras()[0]
    camera = Camera("perspective", 64, 72, intrinsics, base.world_to_camera)
    again = Camera.from_json(camera.to_json())
    assert again.kind == "perspective" and (again.width, again.height) == (64, 72)
    assert np.array_equal(again.intrinsics, intrinsics)
    assert np.array_equal(again.world_to_camera, camera.world_to_camera)


@pytest.mark.parametrize("camera", cameras(), ids=["perspective", "orthographic"])
def test_opengl_projection_maps_pixels_and_depth_range(camera: Camera) -> None:
    near, far = 1.0, 6.0
    points = camera.rays(np.array([[10.5, 20.5], [80.0, 3.0]]))
    projection = camera.opengl_projection(near, far)
    for depth_value in (near, far):
        # a point at this camera-space depth on each ray
        origins, directions = points
        along = (depth_value - camera.to_camera(origins)[:, 2]) / (directions @ camera.forward)
        world = origins + along[:, None] * directions
        local = camera.to_camera(world)
        eye = np.column_stack([local[:, 0], -local[:, 1], -local[:, 2], np.ones(2)])  # OpenGL eye space
        clip = eye @ projection.T
        ndc = clip[:, :3] / clip[:, 3:]
        window = np.stack([(ndc[:, 0] + 1) * camera.width / 2, camera.height - (ndc[:, 1] + 1) * camera.height / 2])
        np.testing.assert_allclose(window.T, [[10.5, 20.5], [80.0, 3.0]], atol=1e-9)
        assert ndc[:, 2] == pytest.approx(np.full(2, -1.0 if depth_value == near else 1.0), abs=1e-9)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"kind": "fisheye"}, "perspective or orthographic"),
        ({"width": 0}, "size"),
        ({"intrinsics": np.eye(2)}, "3x3"),
        ({"world_to_camera": np.diag([2.0, 2.0, 2.0, 1.0])}, "rigid"),
        ({"intrinsics": np.diag([-1.0, 1.0, 1.0])}, "positive"),
    ],
)
def test_bad_cameras_are_refused(changes: dict[str, object], message: str) -> None:
    fields: dict[str, object] = {"kind": "perspective", "width": 8, "height": 8, "intrinsics": np.eye(3)}
    fields["world_to_camera"] = np.eye(4)
    fields.update(changes)
    with pytest.raises(ValueError, match=message):
        Camera(**fields)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------------------------------
# Face ids round-trip exactly
# --------------------------------------------------------------------------------------------------------------------


def test_face_ids_round_trip_exactly_through_all_three_bytes() -> None:
    """A 40×40 grid of quads whose face ids start above 2^16 (the ids behind them are far outside the frame)."""
    hidden = 70_000  # faces out of view, so the visible ids need the third byte
    far = np.array([[50.0, 50.0, 0.0], [50.1, 50.0, 0.0], [50.0, 50.1, 0.0]])
    cells = 40
    ticks = np.linspace(-1, 1, cells + 1)
    gx, gy = np.meshgrid(ticks, ticks)
    grid = np.stack([gx.ravel(), gy.ravel(), np.zeros(gx.size)], axis=1)
    index = np.arange(gx.size).reshape(cells + 1, cells + 1)
    quads = np.stack([index[:-1, :-1], index[:-1, 1:], index[1:, 1:], index[1:, :-1]], axis=-1).reshape(-1, 4)
    grid_faces = np.concatenate([quads[:, [0, 1, 2]], quads[:, [0, 2, 3]]])
    vertices = np.concatenate([far, grid])
    faces = np.concatenate([np.tile(np.arange(3), (hidden, 1)), grid_faces + 3])
    mesh = MeshArrays(vertices, faces)
    camera = Camera.look_at("orthographic", eye=(0, 0, 2), target=(0, 0, 0), width=240, height=240, ortho_height=2.0)
    (buffer,) = render_gbuffers(mesh, [camera])
    buffer.validate(mesh)
    seen = np.unique(buffer.face_id[buffer.mask])
    assert seen.min() >= hidden and seen.max() < len(faces)
    # Every grid face is drawn, and the pixel at each face's centroid shows that very face
    assert len(seen) == len(grid_faces)
    centroids = vertices[faces[hidden:]].mean(axis=1)
    pixels, _ = camera.project(centroids)
    ids = buffer.face_id[pixels[:, 1].astype(int), pixels[:, 0].astype(int)]
    assert np.array_equal(ids, np.arange(hidden, len(faces)))


# --------------------------------------------------------------------------------------------------------------------
# Analytic shapes
# --------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sphere_buffers() -> tuple[MeshArrays, list[GBuffer]]:
    mesh = sphere()
    return mesh, render_gbuffers(mesh, cameras())


@pytest.mark.parametrize("index", [0, 1], ids=["perspective", "orthographic"])
def test_sphere_positions_normals_and_depth_match_the_analytic_answers(
    sphere_buffers: tuple[MeshArrays, list[GBuffer]], index: int
) -> None:
    mesh, buffers = sphere_buffers
    buffer = buffers[index]
    buffer.validate(mesh)  # includes: every hit projects back into its own pixel
    camera, mask = buffer.camera, buffer.mask
    origins, directions = camera.rays(pixel_centres(mask))
    distance = ray_sphere(origins, directions)
    # The silhouette: the mesh is inscribed in the sphere, so only its rim can see the sphere but not the mesh
    assert np.isfinite(distance).all(), "a pixel sees the mesh where the ray misses the sphere"
    analytic = origins + distance[:, None] * directions
    texel = camera.pixel_footprint(camera.to_camera(analytic)[:, 2])
    position = buffer.position[mask].astype(np.float64)
    # position = the analytic surface point ± 1 pixel footprint (the icosphere is within 3e-4 of the sphere)
    error = np.linalg.norm(position - analytic, axis=1)
    assert np.percentile(error / texel, 99) < 1.0
    assert np.all(np.abs(np.linalg.norm(position, axis=1) - 1.0) < 1e-3)
    # normals within 2° of the analytic normal; the face normal too, away from the coarse edge
    assert angle_deg(buffer.normal[mask], analytic).max() < 2.0
    assert np.percentile(angle_deg(buffer.face_normal[mask], analytic), 99) < 2.0
    # depth = the analytic distance along the view axis
    assert np.percentile(np.abs(buffer.depth[mask] - camera.to_camera(analytic)[:, 2]) / texel, 99) < 1.0
    # and the analytic sphere silhouette, shrunk by a pixel, is entirely inside the mask
    all_origins, all_directions = camera.rays()
    inner = np.isfinite(ray_sphere(all_origins, all_directions, radius=0.985)).reshape(mask.shape)
    assert mask[inner].all()


@pytest.mark.parametrize("kind", ["perspective", "orthographic"])
def test_cube_hits_lie_on_its_faces_with_exact_normals_and_depths(kind: str) -> None:
    box = uv_box(size=1.0)
    camera = Camera.look_at(kind, eye=(1.6, 1.2, 2.2), target=(0, 0, 0), width=SIZE, height=SIZE,  # type: ignore[arg-type]
                            fov_y_deg=40, ortho_height=2.0)  # fmt: skip
    (buffer,) = render_gbuffers(box, [camera])
    buffer.validate(box)
    mask = buffer.mask
    origins, directions = camera.rays(pixel_centres(mask))
    # The analytic hit: the ray's entry into the slab intersection |x|, |y|, |z| ≤ 0.5
    with np.errstate(divide="ignore"):
        t_low = (-0.5 - origins) / directions
        t_high = (0.5 - origins) / directions
    entry = np.minimum(t_low, t_high).max(axis=1)
    analytic = origins + entry[:, None] * directions
    axis = np.argmax(np.abs(analytic), axis=1)  # the face the analytic point is on
    position = buffer.position[mask]
    on_face = np.abs(np.abs(position[np.arange(len(axis)), axis]) - 0.5) < 1e-5
    footprint = camera.pixel_footprint(camera.to_camera(analytic)[:, 2])
    error = np.linalg.norm(position - analytic, axis=1) / footprint
    assert on_face.mean() > 0.99 and np.percentile(error, 99) < 1.0
    expected_normal = np.zeros_like(analytic)
    expected_normal[np.arange(len(axis)), axis] = np.sign(analytic[np.arange(len(axis)), axis])
    interior = error < 0.01  # pixels not on an edge between two faces
    assert angle_deg(buffer.face_normal[mask][interior], expected_normal[interior]).max() < 0.01
    depth_error = np.abs(buffer.depth[mask] - camera.to_camera(analytic)[:, 2]) / footprint
    assert np.percentile(depth_error, 99) < 1.0


def test_uv_and_albedo_agree_with_the_texture() -> None:
    """Oblique box: VTK's unlit textured render equals the texture sampled bilinearly at our UVs (v up, clamped)."""
    box = uv_box()
    texture = checker_texture(32, squares=4)
    camera = Camera.look_at("perspective", eye=(1.2, 0.9, 2.0), target=(0, 0, 0), width=128, height=128, fov_y_deg=40)
    (buffer,) = render_gbuffers(box, [camera], albedo_texture=Image.fromarray(texture))
    assert buffer.uv is not None and buffer.albedo is not None
    uv = buffer.uv[buffer.mask].astype(np.float64)
    expected = bilinear(texture.astype(np.float64), uv[:, 0] * 32 - 0.5, (1 - uv[:, 1]) * 32 - 0.5)
    difference = np.abs(buffer.albedo[buffer.mask] - expected)
    assert np.percentile(difference, 99) <= 3.0  # 8-bit rounding, GPU-style filtering weights
    assert np.abs(buffer.albedo[~buffer.mask]).max() == 0


def bilinear(image: NDArray[np.float64], x: NDArray[np.float64], y: NDArray[np.float64]) -> NDArray[np.float64]:
    """``image`` at continuous texel-centre coordinates (x right, y down), edges clamped."""
    height, width = image.shape[:2]
    x, y = np.clip(x, 0, width - 1), np.clip(y, 0, height - 1)
    x0, y0 = np.minimum(np.floor(x).astype(int), width - 2), np.minimum(np.floor(y).astype(int), height - 2)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    return (
        image[y0, x0] * (1 - fx) * (1 - fy)
        + image[y0, x0 + 1] * fx * (1 - fy)
        + image[y0 + 1, x0] * (1 - fx) * fy
        + image[y0 + 1, x0 + 1] * fx * fy
    )


def test_validate_catches_a_broken_buffer(sphere_buffers: tuple[MeshArrays, list[GBuffer]]) -> None:
    mesh, buffers = sphere_buffers
    broken = gbuffer_from_face_ids(mesh, buffers[0].camera, buffers[0].face_id)
    broken.position[broken.mask] += np.float32(0.01)
    with pytest.raises(ValueError, match="position"):
        broken.validate(mesh)
    shifted = gbuffer_from_face_ids(mesh, buffers[0].camera, np.roll(buffers[0].face_id, 3, axis=1))
    with pytest.raises(ValueError):
        shifted.validate(mesh)


def test_cancel_stops_the_child() -> None:
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        render_gbuffers(sphere(), cameras(), cancel=cancel)


@pytest.mark.parametrize(
    ("vertices", "faces", "message"),
    [
        (np.zeros((3, 2)), [[0, 1, 2]], r"\(V, 3\)"),
        (np.zeros((3, 3)), [[0, 1, 3]], "index"),
        (np.full((3, 3), np.nan), [[0, 1, 2]], "finite"),
    ],
)
def test_bad_mesh_arrays_are_refused(vertices: NDArray, faces: list[list[int]], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MeshArrays(vertices, np.array(faces))
