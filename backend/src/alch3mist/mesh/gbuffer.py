"""Exact geometry buffers (G-buffers) of a triangle mesh seen from explicit cameras.

For every pixel of every camera: whether it sees the mesh (``mask``), which face (``face_id``), where on that face
(``barycentric``), the world ``position``, the interpolated and the face ``normal``, the ``depth`` along the view axis
and the texture coordinates (``uv``); optionally an unlit ``albedo`` render of a texture.

How: VTK rasterises only the face ids (each face a flat colour encoding ``id + 1`` in 24 bits: no lighting,
antialiasing, blending or colour management, so the id round-trips exactly), offscreen on EGL in a child process as
:mod:`alch3mist.mesh.render` does. Everything else is computed in numpy from the face id and the pixel's camera ray
(ray–triangle intersection), so the values are exact, not interpolated 8-bit colours.

Conventions
-----------
- World: the mesh's own coordinates (glTF: y up, +z front).
- Camera: OpenCV — x right, y down, z forward (the viewing direction). ``world_to_camera`` is a rigid 4×4 matrix.
- Pixels: x right, y down, origin at the top-left corner of the image; the centre of pixel (row ``i``, column ``j``)
  is at ``(j + 0.5, i + 0.5)``. Arrays are indexed ``[row, column]``.
- Intrinsics ``K = [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]`` in pixels. Perspective: ``u = fx·X/Z + cx``.
  Orthographic: ``u = fx·X + cx`` (``fx`` is pixels per world unit), and rays are parallel to +z.
- Depth: the camera-space ``Z`` of the surface point (distance along the view axis, not along the ray), both kinds.
- UV: trimesh's convention, ``v`` up: texel row = ``(1 − v)·height`` (glTF files store ``1 − v``; trimesh flips it).
"""

from __future__ import annotations

import math
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from numpy.typing import NDArray
from PIL import Image

# The multiview renderer's child-process plumbing: the same start, event protocol, cancel, timeout, failure report
# and OpenGL check.
from .render import check_opengl, child_main, run_child

if TYPE_CHECKING:
    import trimesh
    from vtkmodules.vtkRenderingCore import vtkRenderer, vtkRenderWindow

__all__ = ["Camera", "CameraKind", "GBuffer", "MeshArrays", "render_gbuffers"]

CameraKind = Literal["perspective", "orthographic"]
MAX_FACES = 2**24 - 2  # face ids travel as id + 1 in 24-bit RGB; 0 is the background
MAX_SIDE = 8192
DEPTH_MARGIN = 1.02  # near/far planes sit this far around the mesh's depth range (tight planes: a precise z-buffer)
RAY_TOLERANCE = 1e-4  # barycentric slack before a hit is clamped onto its triangle (rasteriser edge rules)


# --------------------------------------------------------------------------------------------------------------------
# Camera
# --------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Camera:
    """A perspective (pinhole) or orthographic camera with explicit intrinsics and extrinsics (OpenCV conventions).

    Parameters
    ----------
    kind : ``"perspective"`` or ``"orthographic"``
    width, height : int
        Image size in pixels.
    intrinsics : (3, 3) float array
        ``[[fx, 0, cx], [0, fy, cy], [0, 0, 1]]``; for an orthographic camera ``fx``/``fy`` are pixels per world unit.
    world_to_camera : (4, 4) float array
        Rigid transform from world to camera coordinates (x right, y down, z forward).
    """

    kind: CameraKind
    width: int
    height: int
    intrinsics: NDArray[np.float64]
    world_to_camera: NDArray[np.float64]

    def __post_init__(self) -> None:
        if self.kind not in ("perspective", "orthographic"):
            raise ValueError(f"camera kind must be perspective or orthographic, got {self.kind!r}")
        if not (1 <= self.width <= MAX_SIDE and 1 <= self.height <= MAX_SIDE):
            raise ValueError(f"camera size must be within 1..{MAX_SIDE} px, got {self.width}x{self.height}")
        intrinsics = np.array(self.intrinsics, dtype=np.float64)
        extrinsics = np.array(self.world_to_camera, dtype=np.float64)
        if intrinsics.shape != (3, 3) or extrinsics.shape != (4, 4):
            raise ValueError("intrinsics must be 3x3 and world_to_camera 4x4")
        if not (np.all(np.isfinite(intrinsics)) and np.all(np.isfinite(extrinsics))):
            raise ValueError("camera matrices must be finite")
        if intrinsics[0, 0] <= 0 or intrinsics[1, 1] <= 0:
            raise ValueError("focal lengths (fx, fy) must be positive")
        rotation = extrinsics[:3, :3]
        if not np.allclose(rotation @ rotation.T, np.eye(3), atol=1e-6) or np.linalg.det(rotation) < 0:
            raise ValueError("world_to_camera must be a rigid transform (a rotation, no scale or mirror)")
        for array in (intrinsics, extrinsics):
            array.flags.writeable = False
        object.__setattr__(self, "intrinsics", intrinsics)
        object.__setattr__(self, "world_to_camera", extrinsics)

    # --- construction ---------------------------------------------------------------------------------------------

    @classmethod
    def look_at(
        cls,
        kind: CameraKind,
        *,
        eye: Sequence[float],
        target: Sequence[float],
        width: int,
        height: int,
        up: Sequence[float] = (0.0, 1.0, 0.0),
        fov_y_deg: float | None = None,
        ortho_height: float | None = None,
    ) -> Camera:
        """A camera at ``eye`` looking at ``target`` with ``up`` pointing up in the image; centred principal point.

        Perspective cameras need ``fov_y_deg`` (vertical field of view); orthographic ones ``ortho_height`` (the
        world-space height the image spans). Square pixels. When ``up`` is parallel to the view direction, world −z
        becomes the image's up (the front at the bottom, as :mod:`alch3mist.mesh.render` does for views from above).
        """
        eye_v, target_v = np.asarray(eye, dtype=np.float64), np.asarray(target, dtype=np.float64)
        forward = target_v - eye_v
        if np.linalg.norm(forward) < 1e-12:
            raise ValueError("eye and target are the same point")
        forward /= np.linalg.norm(forward)
        right = np.cross(forward, np.asarray(up, dtype=np.float64))
        if np.linalg.norm(right) < 1e-9:
            right = np.cross(forward, [0.0, 0.0, -1.0])
        right /= np.linalg.norm(right)
        down = np.cross(forward, right)
        world_to_camera = np.eye(4)
        world_to_camera[:3, :3] = np.stack([right, down, forward])
        world_to_camera[:3, 3] = -world_to_camera[:3, :3] @ eye_v
        if kind == "perspective":
            if fov_y_deg is None or not 0.0 < fov_y_deg < 180.0:
                raise ValueError("a perspective camera needs 0 < fov_y_deg < 180")
            focal = (height / 2.0) / math.tan(math.radians(fov_y_deg) / 2.0)
        else:
            if ortho_height is None or ortho_height <= 0:
                raise ValueError("an orthographic camera needs ortho_height > 0")
            focal = height / ortho_height
        intrinsics = np.array([[focal, 0.0, width / 2.0], [0.0, focal, height / 2.0], [0.0, 0.0, 1.0]])
        return cls(kind, width, height, intrinsics, world_to_camera)

    # --- geometry -------------------------------------------------------------------------------------------------

    @property
    def rotation(self) -> NDArray[np.float64]:
        """(3, 3) world → camera rotation; its rows are the camera's x (right), y (down), z (forward) in world."""
        return self.world_to_camera[:3, :3]

    @property
    def position(self) -> NDArray[np.float64]:
        """(3,) the camera centre in world coordinates (for orthographic cameras: the centre of the image plane)."""
        return np.asarray(-self.rotation.T @ self.world_to_camera[:3, 3])

    @property
    def forward(self) -> NDArray[np.float64]:
        """(3,) the unit viewing direction (camera +z) in world coordinates."""
        return np.asarray(self.rotation[2])

    @property
    def camera_to_world(self) -> NDArray[np.float64]:
        """(4, 4) the inverse of ``world_to_camera``."""
        inverse = np.eye(4)
        inverse[:3, :3] = self.rotation.T
        inverse[:3, 3] = self.position
        return inverse

    def to_camera(self, points: NDArray[np.floating[Any]]) -> NDArray[np.floating[Any]]:
        """(N, 3) world points → (N, 3) camera coordinates (float32 in, float32 out; else float64)."""
        values = _float_array(points)
        rotation, translation = self.rotation.astype(values.dtype), self.world_to_camera[:3, 3].astype(values.dtype)
        # einsum, not ``@``: numpy's matmul takes a slow path for (N, 3) @ (3, 3)
        local: NDArray[np.floating[Any]] = np.einsum("ij,kj->ik", values, rotation) + translation
        return local

    def project(self, points: NDArray[np.floating[Any]]) -> tuple[NDArray[np.floating[Any]], NDArray[np.floating[Any]]]:
        """(N, 3) world points → ((N, 2) continuous pixel coordinates ``(x, y)``, (N,) depth along the view axis).

        Points behind a perspective camera (depth ≤ 0) get NaN pixel coordinates. float32 in, float32 out.
        """
        local = self.to_camera(points)
        depth = local[:, 2]
        k = self.intrinsics
        if self.kind == "perspective":
            with np.errstate(divide="ignore", invalid="ignore"):
                scale = np.where(depth > 0, 1.0 / depth, np.nan)
            plane = local[:, :2] * scale[:, None]
        else:
            plane = local[:, :2]
        pixels = np.stack([k[0, 0] * plane[:, 0] + k[0, 2], k[1, 1] * plane[:, 1] + k[1, 2]], axis=1)
        return pixels.astype(local.dtype, copy=False), depth

    def rays(self, pixels: NDArray[np.floating[Any]] | None = None) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """World rays through ``pixels`` ((N, 2) continuous coordinates; default: every pixel centre, row-major).

        Returns ``(origins, directions)``, each (N, 3); directions are unit vectors. Perspective rays start at the
        camera centre; orthographic rays start on the image plane (depth 0) and all point along ``forward``.
        """
        if pixels is None:
            rows, cols = np.mgrid[0 : self.height, 0 : self.width]
            pixels = np.stack([cols.ravel() + 0.5, rows.ravel() + 0.5], axis=1)
        k = self.intrinsics
        plane = np.stack([(pixels[:, 0] - k[0, 2]) / k[0, 0], (pixels[:, 1] - k[1, 2]) / k[1, 1]], axis=1).astype(
            np.float64
        )
        if self.kind == "perspective":
            local = np.column_stack([plane, np.ones(len(plane))])
            directions = local @ self.rotation
            directions /= np.linalg.norm(directions, axis=1, keepdims=True)
            origins = np.broadcast_to(self.position, directions.shape).copy()
        else:
            local = np.column_stack([plane, np.zeros(len(plane))])
            origins = local @ self.rotation + self.position
            directions = np.broadcast_to(self.forward, origins.shape).copy()
        return origins, directions

    def directions_to_camera(self, points: NDArray[np.floating[Any]]) -> NDArray[np.floating[Any]]:
        """(N, 3) unit vectors from each world point towards the camera (orthographic: −forward everywhere)."""
        values = _float_array(points)
        if self.kind == "orthographic":
            return np.broadcast_to((-self.forward).astype(values.dtype), values.shape)
        towards = self.position.astype(values.dtype) - values
        return np.asarray(towards / np.linalg.norm(towards, axis=1, keepdims=True))

    def pixel_footprint(self, depth: NDArray[np.floating[Any]]) -> NDArray[np.floating[Any]]:
        """World-space width of one pixel at each ``depth`` (any shape → same shape), for tolerances."""
        scale = 1.0 / min(self.intrinsics[0, 0], self.intrinsics[1, 1])
        values = np.asarray(depth)
        return values * scale if self.kind == "perspective" else np.full_like(values, scale)

    def opengl_projection(self, near: float, far: float) -> NDArray[np.float64]:
        """(4, 4) OpenGL projection (OpenGL eye space: y up, looking down −z) matching these intrinsics exactly.

        Pixel ``(x, y)`` of this camera is window position ``(x, height − y)``; depth maps ``[near, far]`` to
        NDC ``[−1, 1]``. Used to make VTK rasterise with exactly this camera.
        """
        w, h = self.width, self.height
        fx, fy, cx, cy = self.intrinsics[0, 0], self.intrinsics[1, 1], self.intrinsics[0, 2], self.intrinsics[1, 2]
        if self.kind == "perspective":
            return np.array(
                [
                    [2 * fx / w, 0.0, 1 - 2 * cx / w, 0.0],
                    [0.0, 2 * fy / h, 2 * cy / h - 1, 0.0],
                    [0.0, 0.0, -(far + near) / (far - near), -2 * far * near / (far - near)],
                    [0.0, 0.0, -1.0, 0.0],
                ]
            )
        return np.array(
            [
                [2 * fx / w, 0.0, 0.0, 2 * cx / w - 1],
                [0.0, 2 * fy / h, 0.0, 1 - 2 * cy / h],
                [0.0, 0.0, -2 / (far - near), -(far + near) / (far - near)],
                [0.0, 0.0, 0.0, 1.0],
            ]
        )

    # --- serialisation ----------------------------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (kind, width, height, intrinsics, world_to_camera as nested lists)."""
        return {
            "kind": self.kind,
            "width": self.width,
            "height": self.height,
            "intrinsics": self.intrinsics.tolist(),
            "world_to_camera": self.world_to_camera.tolist(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Camera:
        return cls(
            data["kind"],
            int(data["width"]),
            int(data["height"]),
            np.asarray(data["intrinsics"], dtype=np.float64),
            np.asarray(data["world_to_camera"], dtype=np.float64),
        )


# --------------------------------------------------------------------------------------------------------------------
# Mesh arrays and G-buffers
# --------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class MeshArrays:
    """The triangle mesh a G-buffer is computed for.

    Parameters
    ----------
    vertices : (V, 3) float64
    faces : (F, 3) int64, counter-clockwise seen from outside (normals follow the winding)
    uv : (V, 2) float64 or None — texture coordinates, ``v`` up (trimesh's convention)
    vertex_normals : (V, 3) float64 or None — unit normals to interpolate; None = area-weighted face normals
    """

    vertices: NDArray[np.float64]
    faces: NDArray[np.int64]
    uv: NDArray[np.float64] | None = None
    vertex_normals: NDArray[np.float64] | None = None

    def __post_init__(self) -> None:
        vertices = np.ascontiguousarray(self.vertices, dtype=np.float64)
        faces = np.ascontiguousarray(self.faces, dtype=np.int64)
        if vertices.ndim != 2 or vertices.shape[1] != 3 or faces.ndim != 2 or faces.shape[1] != 3:
            raise ValueError("vertices must be (V, 3) and faces (F, 3)")
        if not len(faces) or not 0 <= faces.min() <= faces.max() < len(vertices):
            raise ValueError("faces must be non-empty and index existing vertices")
        if len(faces) > MAX_FACES:
            raise ValueError(f"at most {MAX_FACES} faces, got {len(faces)}")
        if not np.all(np.isfinite(vertices)):
            raise ValueError("vertices must be finite")
        object.__setattr__(self, "vertices", vertices)
        object.__setattr__(self, "faces", faces)
        if self.uv is not None:
            uv = np.ascontiguousarray(self.uv, dtype=np.float64)
            if uv.shape != (len(vertices), 2) or not np.all(np.isfinite(uv)):
                raise ValueError("uv must be finite and (V, 2)")
            object.__setattr__(self, "uv", uv)
        normals = self.vertex_normals if self.vertex_normals is not None else _area_weighted_normals(vertices, faces)
        object.__setattr__(self, "vertex_normals", np.ascontiguousarray(normals, dtype=np.float64))

    @classmethod
    def from_trimesh(cls, mesh: trimesh.Trimesh) -> MeshArrays:
        """Vertices, faces, vertex normals and (when present, one per vertex) the UVs of a trimesh mesh."""
        uv = getattr(mesh.visual, "uv", None)
        usable_uv = uv is not None and len(uv) == len(mesh.vertices)
        return cls(
            vertices=np.asarray(mesh.vertices),
            faces=np.asarray(mesh.faces),
            uv=np.asarray(uv) if usable_uv else None,
            vertex_normals=np.asarray(mesh.vertex_normals),
        )

    @property
    def face_normals(self) -> NDArray[np.float64]:
        """(F, 3) unit normals from the winding (zero for degenerate faces)."""
        corners = self.vertices[self.faces]
        normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
        return _unit(normals)


@dataclass(eq=False)
class GBuffer:
    """What one camera sees of a mesh, per pixel. Arrays are (H, W, …), indexed ``[row, column]``.

    Attributes
    ----------
    camera : Camera
    mask : (H, W) bool — the pixel sees the mesh
    face_id : (H, W) int32 — index of the face seen, −1 where ``mask`` is False
    barycentric : (H, W, 3) float32 — weights of the face's three corners at the hit (sum 1)
    position : (H, W, 3) float32 — world position of the hit
    normal : (H, W, 3) float32 — unit interpolated vertex normal (the mesh's orientation, not flipped to the viewer)
    face_normal : (H, W, 3) float32 — unit normal of the face from its winding
    depth : (H, W) float32 — camera-space Z of the hit (distance along the view axis)
    uv : (H, W, 2) float32 or None — texture coordinates of the hit (v up), when the mesh has UVs
    albedo : (H, W, 3) uint8 or None — unlit texture colour rasterised by VTK (bilinear, no mipmaps), when asked for
    All float arrays are 0 where ``mask`` is False.
    """

    camera: Camera
    mask: NDArray[np.bool_]
    face_id: NDArray[np.int32]
    barycentric: NDArray[np.float32]
    position: NDArray[np.float32]
    normal: NDArray[np.float32]
    face_normal: NDArray[np.float32]
    depth: NDArray[np.float32]
    uv: NDArray[np.float32] | None = None
    albedo: NDArray[np.uint8] | None = None

    @property
    def coverage(self) -> float:
        """Fraction of the image's pixels that see the mesh."""
        return float(self.mask.mean())

    def validate(self, mesh: MeshArrays, *, pixel_tolerance: float = 1.0) -> None:
        """Check every invariant of the buffer against ``mesh``; ``ValueError`` naming the first one broken.

        Shapes and dtypes; ``face_id ≥ 0`` exactly where ``mask``; barycentrics in [0, 1] summing to 1; the position
        equals the barycentric blend of the face's corners; unit normals; positive depth equal to the camera-space Z
        of the position; each hit projects back into its own pixel (within ``pixel_tolerance`` px: hits on a face's
        edge are clamped onto it); UVs equal the barycentric blend of the corner UVs.
        """
        h, w = self.camera.height, self.camera.width
        _expect(self.mask.shape == (h, w) and self.mask.dtype == np.bool_, "mask must be (H, W) bool")
        _expect(self.face_id.shape == (h, w) and self.face_id.dtype == np.int32, "face_id must be (H, W) int32")
        for name in ("barycentric", "position", "normal", "face_normal"):
            array = getattr(self, name)
            _expect(array.shape == (h, w, 3) and array.dtype == np.float32, f"{name} must be (H, W, 3) float32")
        _expect(self.depth.shape == (h, w) and self.depth.dtype == np.float32, "depth must be (H, W) float32")
        _expect(bool(np.all((self.face_id >= 0) == self.mask)), "face_id must be >= 0 exactly where mask is set")
        _expect(bool(np.all(self.face_id < len(mesh.faces))), "face_id beyond the mesh's faces")
        m = self.mask
        faces = mesh.faces[self.face_id[m]]
        bary = self.barycentric[m].astype(np.float64)
        _expect(bool(np.all(bary >= -1e-6) and np.all(bary <= 1 + 1e-6)), "barycentrics outside [0, 1]")
        _expect(bool(np.allclose(bary.sum(axis=1), 1.0, atol=1e-5)), "barycentrics do not sum to 1")
        scale = float(np.ptp(mesh.vertices, axis=0).max()) or 1.0
        blended = np.einsum("ni,nij->nj", bary, mesh.vertices[faces])
        _expect(bool(np.allclose(self.position[m], blended, atol=1e-5 * scale)), "position is not on the face")
        for name in ("normal", "face_normal"):
            lengths = np.linalg.norm(getattr(self, name)[m], axis=1)
            _expect(bool(np.allclose(lengths, 1.0, atol=1e-4)), f"{name} is not unit length")
        pixels, depth = self.camera.project(self.position[m].astype(np.float64))
        _expect(bool(np.all(depth > 0)), "a hit lies behind the camera")
        _expect(bool(np.allclose(self.depth[m], depth, atol=1e-5 * scale)), "depth is not the camera-space Z")
        rows, cols = np.nonzero(m)
        error = np.abs(pixels - np.stack([cols + 0.5, rows + 0.5], axis=1)).max(axis=1)
        _expect(bool(np.all(error <= 0.5 + pixel_tolerance)), f"a hit projects {error.max():.2f} px from its pixel")
        if self.uv is not None and mesh.uv is not None:
            expected_uv = np.einsum("ni,nij->nj", bary, mesh.uv[faces])
            _expect(bool(np.allclose(self.uv[m], expected_uv, atol=1e-5)), "uv is not the blend of the corner UVs")
        _expect(not np.any(self.depth[~m]) and not np.any(self.position[~m]), "background pixels must be 0")


def _float_array(values: NDArray[np.floating[Any]]) -> NDArray[np.floating[Any]]:
    """float32 stays float32 (the projection's hot loop), anything else becomes float64."""
    array = np.asarray(values)
    return array if array.dtype == np.float32 else np.asarray(array, dtype=np.float64)


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(f"invalid G-buffer: {message}")


# --------------------------------------------------------------------------------------------------------------------
# Parent side: rasterise face ids in the child, then compute the buffers exactly
# --------------------------------------------------------------------------------------------------------------------

GBufferCallback = Callable[[int, GBuffer], None]


def render_gbuffers(
    mesh: MeshArrays,
    cameras: Sequence[Camera],
    *,
    albedo_texture: Image.Image | None = None,
    on_view: GBufferCallback | None = None,
    cancel: threading.Event | None = None,
    timeout_s: float = 300.0,
) -> list[GBuffer]:
    """The G-buffer of ``mesh`` for each camera (one VTK child process for all of them).

    Parameters
    ----------
    mesh : MeshArrays
    cameras : sequence of Camera (sizes may differ)
    albedo_texture : PIL image, optional
        Also rasterise this texture unlit at the mesh's UVs (``GBuffer.albedo``); needs ``mesh.uv``.
    on_view : callable(index, GBuffer), optional
        Called as each view's buffer is ready; raising from it stops the work.
    cancel : threading.Event, optional
        Setting it kills the child within 0.2 s and raises ``Cancelled``.
    timeout_s : float
        Longest the rasterisation may take (``MeshError`` after it).

    Returns
    -------
    list of GBuffer, one per camera, in order.
    """
    if not cameras:
        raise ValueError("no cameras given")
    if albedo_texture is not None and mesh.uv is None:
        raise ValueError("an albedo render needs a mesh with UVs")
    buffers: list[GBuffer] = []
    with tempfile.TemporaryDirectory(prefix="alch3mist-gbuffer-") as tmp:
        folder = Path(tmp)
        job = _write_job(folder, mesh, cameras, albedo_texture)

        def on_ids(index: int, path: Path) -> None:
            face_ids = np.load(path)
            albedo = np.load(folder / f"albedo_{index:03d}.npy") if albedo_texture is not None else None
            buffer = gbuffer_from_face_ids(mesh, cameras[index], face_ids, albedo)
            buffers.append(buffer)
            if on_view is not None:
                on_view(index, buffer)

        run_child(__name__, job, len(cameras), folder / "mesh.npz", on_view=on_ids, cancel=cancel, timeout_s=timeout_s)
    return buffers


def gbuffer_from_face_ids(
    mesh: MeshArrays, camera: Camera, face_ids: NDArray[np.integer[Any]], albedo: NDArray[np.uint8] | None = None
) -> GBuffer:
    """The exact G-buffer from a rasterised face-id image ((H, W) ints, −1 = background) and the camera's rays."""
    h, w = camera.height, camera.width
    face_id = np.asarray(face_ids, dtype=np.int32).reshape(h, w)
    mask = face_id >= 0
    rows, cols = np.nonzero(mask)
    faces = face_id[mask].astype(np.int64)
    origins, directions = camera.rays(np.stack([cols + 0.5, rows + 0.5], axis=1))
    corners = mesh.vertices[mesh.faces[faces]]
    bary = _ray_triangle_barycentrics(origins, directions, corners)
    position = np.einsum("ni,nij->nj", bary, corners)
    assert mesh.vertex_normals is not None  # filled in by MeshArrays
    normal = _unit(np.einsum("ni,nij->nj", bary, mesh.vertex_normals[mesh.faces[faces]]))
    face_normal = mesh.face_normals[faces]
    depth = camera.to_camera(position)[:, 2]

    def image(values: NDArray[Any], channels: int) -> NDArray[np.float32]:
        out = np.zeros((h, w, channels) if channels > 1 else (h, w), dtype=np.float32)
        out[mask] = values
        return out

    uv = None
    if mesh.uv is not None:
        uv = image(np.einsum("ni,nij->nj", bary, mesh.uv[mesh.faces[faces]]), 2)
    return GBuffer(
        camera=camera,
        mask=mask,
        face_id=face_id,
        barycentric=image(bary, 3),
        position=image(position, 3),
        normal=image(normal, 3),
        face_normal=image(face_normal, 3),
        depth=image(depth, 1),
        uv=uv,
        albedo=None if albedo is None else np.where(mask[..., None], albedo, 0).astype(np.uint8),
    )


def _ray_triangle_barycentrics(
    origins: NDArray[np.float64], directions: NDArray[np.float64], corners: NDArray[np.float64]
) -> NDArray[np.float64]:
    """(N, 3) barycentrics of where each ray meets the plane of its triangle ((N, 3, 3) corners), Möller–Trumbore.

    Hits a hair outside the triangle (the rasteriser's edge rules, float round-off) and rays parallel to their
    triangle's plane (an edge-on face covering a pixel) are moved to the nearest point of the triangle: every
    returned point lies on its face.
    """
    a, b, c = corners[:, 0], corners[:, 1], corners[:, 2]
    edge1, edge2 = b - a, c - a
    p = np.cross(directions, edge2)
    det = np.einsum("ij,ij->i", edge1, p)
    parallel = np.abs(det) < 1e-12 * np.maximum(np.einsum("ij,ij->i", edge1, edge1), 1e-30)
    inverse = 1.0 / np.where(parallel, 1.0, det)
    s = origins - a
    u = np.einsum("ij,ij->i", s, p) * inverse
    q = np.cross(s, edge1)
    v = np.einsum("ij,ij->i", directions, q) * inverse
    bary = np.stack([1.0 - u - v, u, v], axis=1)
    outside = parallel | np.any(bary < -RAY_TOLERANCE, axis=1)
    if np.any(outside):
        # The closest point of the triangle to the ray's closest approach to it (its centroid for parallel rays).
        centroid = corners[outside].mean(axis=1)
        along = np.einsum("ij,ij->i", centroid - origins[outside], directions[outside])
        near = origins[outside] + along[:, None] * directions[outside]
        bary[outside] = _closest_point_barycentrics(near, corners[outside])
    bary = np.clip(bary, 0.0, 1.0)
    return np.asarray(bary / bary.sum(axis=1, keepdims=True))


def _closest_point_barycentrics(points: NDArray[np.float64], corners: NDArray[np.float64]) -> NDArray[np.float64]:
    """(N, 3) barycentrics of the closest point on each triangle to each point (via trimesh's exact routine)."""
    from trimesh.triangles import closest_point, points_to_barycentric

    closest = closest_point(corners, points)
    return np.asarray(points_to_barycentric(corners, closest), dtype=np.float64)


def _area_weighted_normals(vertices: NDArray[np.float64], faces: NDArray[np.int64]) -> NDArray[np.float64]:
    corners = vertices[faces]
    weighted = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    sums = np.zeros_like(vertices)
    for k in range(3):
        np.add.at(sums, faces[:, k], weighted)
    return _unit(sums)


def _unit(vectors: NDArray[np.float64]) -> NDArray[np.float64]:
    lengths = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return np.asarray(np.divide(vectors, lengths, out=np.zeros_like(vectors), where=lengths > 0))


def _write_job(
    folder: Path, mesh: MeshArrays, cameras: Sequence[Camera], albedo_texture: Image.Image | None
) -> dict[str, Any]:
    arrays: dict[str, NDArray[Any]] = {"vertices": mesh.vertices, "faces": mesh.faces}
    if albedo_texture is not None and mesh.uv is not None:
        arrays["uv"] = mesh.uv
        arrays["texture"] = np.asarray(albedo_texture.convert("RGB"), dtype=np.uint8)
    np.savez(folder / "mesh.npz", **arrays)  # type: ignore[arg-type]
    depth_ranges = [_depth_range(mesh.vertices, camera) for camera in cameras]
    return {
        "mesh": str(folder / "mesh.npz"),
        "out_dir": str(folder),
        "cameras": [camera.to_json() for camera in cameras],
        "depth_ranges": depth_ranges,
        "albedo": albedo_texture is not None,
    }


def _depth_range(vertices: NDArray[np.float64], camera: Camera) -> list[float]:
    """[near, far] planes just around the mesh's depth range (perspective: near stays in front of the camera)."""
    depth = camera.to_camera(vertices)[:, 2]
    lowest, highest = float(depth.min()), float(depth.max())
    span = max(highest - lowest, 1e-6)
    far = highest + (DEPTH_MARGIN - 1.0) * span + 1e-6
    near = lowest - (DEPTH_MARGIN - 1.0) * span - 1e-6
    if camera.kind == "perspective":
        near = max(near, far * 1e-4)
    return [near, far]


# --------------------------------------------------------------------------------------------------------------------
# Child side: VTK rasterises face ids (and optionally the unlit albedo)
# --------------------------------------------------------------------------------------------------------------------


def _polydata(vertices: NDArray[np.float64], faces: NDArray[np.int64]) -> Any:
    from vtkmodules.util.numpy_support import numpy_to_vtk, numpy_to_vtkIdTypeArray
    from vtkmodules.vtkCommonCore import vtkPoints
    from vtkmodules.vtkCommonDataModel import vtkCellArray, vtkPolyData

    points = vtkPoints()
    points.SetData(numpy_to_vtk(np.ascontiguousarray(vertices, dtype=np.float64), deep=True))
    cells = vtkCellArray()
    offsets = np.arange(0, 3 * len(faces) + 1, 3, dtype=np.int64)
    cells.SetData(
        numpy_to_vtkIdTypeArray(offsets, deep=True),
        numpy_to_vtkIdTypeArray(np.ascontiguousarray(faces.ravel(), dtype=np.int64), deep=True),
    )
    polydata = vtkPolyData()
    polydata.SetPoints(points)
    polydata.SetPolys(cells)
    return polydata


def _encode_ids(count: int) -> NDArray[np.uint8]:
    """(count, 3) RGB of ``id + 1`` in 24 bits (little end first); black (0) is the background."""
    ids = np.arange(1, count + 1, dtype=np.uint32)
    return np.stack([ids & 0xFF, (ids >> 8) & 0xFF, (ids >> 16) & 0xFF], axis=1).astype(np.uint8)


def _decode_ids(rgb: NDArray[np.uint8]) -> NDArray[np.int32]:
    """(H, W, 3) RGB → (H, W) face ids, −1 for the background."""
    value = rgb[..., 0].astype(np.int32) | (rgb[..., 1].astype(np.int32) << 8) | (rgb[..., 2].astype(np.int32) << 16)
    return value - 1


def _flat_actor(polydata: Any) -> Any:
    """An actor drawn in exactly its scalars' colours: no lighting, no interpolation, both sides."""
    from vtkmodules.vtkRenderingCore import vtkActor, vtkPolyDataMapper

    mapper = vtkPolyDataMapper()
    mapper.SetInputData(polydata)
    mapper.SetColorModeToDirectScalars()
    mapper.SetScalarModeToUseCellData()
    mapper.ScalarVisibilityOn()
    mapper.SetResolveCoincidentTopologyToOff()
    actor = vtkActor()
    actor.SetMapper(mapper)
    prop = actor.GetProperty()
    prop.LightingOff()
    prop.SetInterpolationToFlat()
    prop.BackfaceCullingOff()
    prop.FrontfaceCullingOff()
    return actor


def _albedo_actor(polydata: Any, uv: NDArray[np.float64], texture_rgb: NDArray[np.uint8]) -> Any:
    """An actor drawn in its texture's colours, unlit: bilinear, no mipmaps, edges clamped (valid UVs are in 0..1)."""
    from vtkmodules.util.numpy_support import numpy_to_vtk
    from vtkmodules.vtkCommonDataModel import vtkImageData
    from vtkmodules.vtkRenderingCore import vtkActor, vtkPolyDataMapper, vtkTexture

    polydata.GetPointData().SetTCoords(numpy_to_vtk(np.ascontiguousarray(uv, dtype=np.float32), deep=True))
    height, width = texture_rgb.shape[:2]
    image = vtkImageData()
    image.SetDimensions(width, height, 1)
    flipped = np.ascontiguousarray(texture_rgb[::-1].reshape(-1, 3))  # VTK images start at the bottom row: t = v
    image.GetPointData().SetScalars(numpy_to_vtk(flipped, deep=True))
    texture = vtkTexture()
    texture.SetInputData(image)
    texture.SetColorModeToDirectScalars()
    texture.InterpolateOn()
    texture.MipmapOff()
    texture.RepeatOff()
    texture.EdgeClampOn()
    mapper = vtkPolyDataMapper()
    mapper.SetInputData(polydata)
    mapper.ScalarVisibilityOff()
    actor = vtkActor()
    actor.SetMapper(mapper)
    actor.SetTexture(texture)
    prop = actor.GetProperty()
    prop.LightingOff()
    prop.SetColor(1.0, 1.0, 1.0)
    prop.BackfaceCullingOff()
    return actor


def _id_window() -> tuple[vtkRenderWindow, vtkRenderer]:
    from vtkmodules.vtkRenderingCore import vtkRenderWindow
    from vtkmodules.vtkRenderingOpenGL2 import vtkOpenGLRenderer  # also registers the OpenGL window factories

    window = vtkRenderWindow()
    window.SetOffScreenRendering(True)
    window.SetMultiSamples(0)
    window.SetAlphaBitPlanes(0)
    renderer = vtkOpenGLRenderer()
    renderer.SetBackground(0.0, 0.0, 0.0)
    renderer.UseFXAAOff()
    renderer.SetAutomaticLightCreation(False)
    window.AddRenderer(renderer)
    return window, renderer


def _place(renderer: vtkRenderer, camera: Camera, depth_range: Sequence[float]) -> None:
    """Make VTK's camera this one: pose from the extrinsics, projection matrix from the intrinsics."""
    from vtkmodules.vtkCommonMath import vtkMatrix4x4

    vtk_camera = renderer.GetActiveCamera()
    eye, forward = camera.position, camera.forward
    vtk_camera.SetPosition(*eye)
    vtk_camera.SetFocalPoint(*(eye + forward))
    vtk_camera.SetViewUp(*(-camera.rotation[1]))  # image up = −(camera y, which points down)
    projection = vtkMatrix4x4()
    for i, row in enumerate(camera.opengl_projection(*depth_range)):
        for j, value in enumerate(row):
            projection.SetElement(i, j, float(value))
    vtk_camera.SetExplicitProjectionTransformMatrix(projection)
    vtk_camera.UseExplicitProjectionTransformMatrixOn()


def _grab(window: vtkRenderWindow) -> NDArray[np.uint8]:
    from vtkmodules.util.numpy_support import vtk_to_numpy
    from vtkmodules.vtkRenderingCore import vtkWindowToImageFilter

    grab = vtkWindowToImageFilter()
    grab.SetInput(window)
    grab.ShouldRerenderOff()
    grab.ReadFrontBufferOff()
    grab.SetInputBufferTypeToRGB()
    grab.Update()
    image = grab.GetOutput()
    width, height, _ = image.GetDimensions()
    pixels = vtk_to_numpy(image.GetPointData().GetScalars()).reshape(height, width, -1)
    return np.ascontiguousarray(pixels[::-1, :, :3])


def rasterise_in_process(job: dict[str, Any]) -> Iterator[Path]:
    """The child's work: for each camera write ``ids_NNN.npy`` (and ``albedo_NNN.npy``), yielding the ids path."""
    out_dir = Path(job["out_dir"])
    with np.load(job["mesh"]) as data:
        vertices, faces = data["vertices"], data["faces"]
        uv = data.get("uv", None)
        texture = data.get("texture", None)
    window, renderer = _id_window()
    check_opengl(window)
    ids_polydata = _polydata(vertices, faces)
    ids_polydata.GetCellData().SetScalars(_numpy_colours(_encode_ids(len(faces))))
    ids_actor = _flat_actor(ids_polydata)
    renderer.AddActor(ids_actor)
    albedo_actor = None
    if job.get("albedo") and uv is not None and texture is not None:
        albedo_actor = _albedo_actor(_polydata(vertices, faces), uv, texture)
        renderer.AddActor(albedo_actor)
    for index, (camera_json, depth_range) in enumerate(zip(job["cameras"], job["depth_ranges"], strict=True)):
        camera = Camera.from_json(camera_json)
        window.SetSize(camera.width, camera.height)
        _place(renderer, camera, depth_range)
        if albedo_actor is not None:
            ids_actor.VisibilityOff()
            albedo_actor.VisibilityOn()
            window.Render()
            np.save(out_dir / f"albedo_{index:03d}.npy", _grab(window))
            albedo_actor.VisibilityOff()
            ids_actor.VisibilityOn()
        window.Render()
        path = out_dir / f"ids_{index:03d}.npy"
        np.save(path, _decode_ids(_grab(window)))
        yield path


def _numpy_colours(colours: NDArray[np.uint8]) -> Any:
    from vtkmodules.util.numpy_support import numpy_to_vtk

    array = numpy_to_vtk(np.ascontiguousarray(colours), deep=True)
    array.SetName("face_id_rgb")
    return array


if __name__ == "__main__":
    sys.exit(child_main(rasterise_in_process))
