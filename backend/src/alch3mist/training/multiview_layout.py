"""MV-Adapter's multiview dataset layouts (Objaverse-Ortho10View / -Rand6View), written as its trainer reads them.

Each convention below is taken from the upstream file that fixes it (huanngzh/MV-Adapter at 4277e00, and the renderer
its README names for the dataset, huanngzh/bpy-renderer at f046f7a):

- Folders: ``<root>/<id[:2]>/<id>/`` — ``mvadapter/data/multiview.py::_parse_scene_list_single`` joins an id without
  ``/`` as ``os.path.join(root_data_dir, p[:2], p)``. The id list is a JSON list of ids; captions a JSON ``{id: text}``
  read by ``retrieve_prompt`` (``prompt_db.get(id, "")``).
- Files per view ``NNNN`` (``"0000"``…): ``{modality}_{NNNN}.{image_suffix}`` with ``image_suffix: webp`` —
  ``color_NNNN.webp`` (``image_modality: color``), ``normal_NNNN.webp``, and ``depth_NNNN.exr`` (``load_depth``).
  ``position_NNNN.webp`` is ours: upstream rebuilds positions from depth and cameras, we also store them encoded.
- Images are RGBA: ``load_image`` and ``load_normal_image`` read ``image[:, :, 3:4]`` as alpha and composite the
  configured ``background_color`` (``gray`` = 0.5) themselves; under alpha 0 we store ``--background`` anyway.
- Normals: world space (``use_camera_space_normal: false``, the default of every config), encoded ``n / 2 + 0.5``
  (``load_normal_image`` inverts it with ``image * 2 - 1``; the inference scripts encode the condition the same way,
  ``scripts/inference_ig2mv_sdxl.py``: ``render_out.normal / 2 + 0.5``).
- Depth: EXR, channel 0 read by ``cv2.imread(..., IMREAD_UNCHANGED)[..., 0:1]`` — so three channels (a one-channel
  EXR would come back 2-D and be sliced wrongly), float32, the camera-space z (distance along the view axis:
  ``utils/geometry.py::get_position_map_from_depth_ortho`` sets ``z = depth``); background ``65535`` ("depth = 65535 is
  the invalid value", anything over 1000 is masked).
- Cameras (``meta.json``): ``{"width", "height", "locations": [{"index", "projection_type", "ortho_scale",
  "camera_angle_x", "elevation", "azimuth", "transform_matrix"}]}`` as ``bpy-renderer
  examples/object/render_6ortho.py`` writes it; ``transform_matrix`` is Blender's camera-to-world (x right, y up,
  looking down −z; the trainer flips columns 1–2 to OpenCV: ``c2w_[:, :, 1:3] *= -1``), ``elevation``/``azimuth``
  in radians with the azimuth already shifted by −90° (``azimuths=[item - 90 for item in …]  # forward issue``).
- World: Blender's, z up, the glTF front (+z) facing −y (``mvadapter/utils/mesh_utils/mesh.py::load_mesh`` maps a
  y-up mesh with ``(x, −z, y)``, as Blender's glTF importer does); the object's bounding box centred on the origin with
  its longest side 1 (``bpy-renderer SceneManager.normalize_scene(1.0)``, range "CUBE"), so positions lie in
  [−0.5, 0.5] and ``position_offset: 0.5, position_scale: 1.0`` map them onto [0, 1].
- Orthographic projection: ``x = (u − W/2) · ortho_scale / W`` (``get_position_map_from_depth_ortho``), ortho_scale
  1.1 (``bpy-renderer camera.add_camera``'s default; inference uses ``left=-0.55, right=0.55``). We render pixel
  centres at ``u + 0.5`` as Blender does; upstream's reconstruction at integer ``u`` is half a pixel off (its own).
- Perspective: ``focal = 0.5 · W / tan(0.5 · camera_angle_x)``, principal point at the centre (``__getitem__``).
- Ortho10View's views: the configs name ``"0000", "0001", "0002", "0003", "0008", "0009"`` for the inference cameras
  azimuth 0/90/180/270 + top + bottom (``configs/geometry-guidance/*.yaml`` vs ``inference_ig2mv_sdxl.py``:
  elevation ``[0, 0, 0, 0, 89.99, -89.99]``, azimuth ``[0, 90, 180, 270, 180, 180]``), and
  ``"0000", "0004", "0001", "0002", "0003", "0005"`` for azimuth 0/45/90/180/270/315 (``configs/view-guidance``
  vs ``inference_i2mv_sdxl.py``). Views 0006/0007 are named by no upstream file: we render azimuth 135 and 225,
  completing the 45° ring.
- Rand6View: "orthographic or perspective views (random)", 1024², RGB/depth/normal/camera (its dataset card); its
  render script is unpublished (MV-Adapter issue #70), so the distribution is ours: see ``RAND_*`` below.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from PIL import Image, UnidentifiedImageError

from ..mesh.gbuffer import Camera

__all__ = [
    "DEPTH_BACKGROUND",
    "LAYOUTS",
    "LayoutName",
    "ViewCamera",
    "check_scene",
    "layout_views",
    "scene_dir",
    "stable_hash",
]

LayoutName = Literal["ortho10", "rand6"]
LAYOUTS: tuple[LayoutName, ...] = ("ortho10", "rand6")
VIEW_COUNTS: dict[LayoutName, int] = {"ortho10": 10, "rand6": 6}
MODALITIES = ("color", "normal", "position")  # webp images; plus depth (EXR)

ORTHO_SCALE = 1.1  # bpy-renderer camera.add_camera default; MV-Adapter inference: left/right ±0.55
CAMERA_DISTANCE = 1.5  # bpy-renderer examples/object/render_6ortho.py: radius=1.5
BLENDER_ANGLE_X = 2.0 * math.atan(16.0 / 35.0)  # what an ortho Blender camera still reports (32 mm sensor, 35 mm lens)
POLE_ELEVATION = 89.99  # MV-Adapter's top/bottom views: exactly ±90° has no defined "up"
POSITION_OFFSET, POSITION_SCALE = 0.5, 1.0  # MultiviewDataModuleConfig.position_offset / position_scale
DEPTH_BACKGROUND = 65535.0  # load_depth: "depth = 65535 is the invalid value"
DEPTH_VALID_MAX = 1000.0  # load_depth: mask[depth > 1000.0] = 0.0
NORMAL_TOLERANCE = 0.03  # a decoded 8-bit normal's length may differ from 1 by this much

# (azimuth°, elevation°) of Ortho10View's views in MV-Adapter's convention (azimuth 0 = the front), by index
ORTHO10_VIEWS: tuple[tuple[float, float], ...] = (
    (0.0, 0.0),
    (90.0, 0.0),
    (180.0, 0.0),
    (270.0, 0.0),
    (45.0, 0.0),
    (315.0, 0.0),
    (135.0, 0.0),
    (225.0, 0.0),
    (180.0, POLE_ELEVATION),
    (180.0, -POLE_ELEVATION),
)

# Rand6View (our distribution): azimuth uniform over the circle, elevation uniform in RAND_ELEVATION_DEG, half the
# views orthographic, perspective field of view uniform in RAND_FOV_DEG; every view frames the whole object.
RAND_ELEVATION_DEG = (-10.0, 40.0)
RAND_FOV_DEG = (30.0, 50.0)
RAND_ORTHO_PROBABILITY = 0.5
FRAME_MARGIN = 1.1  # the object's bounding sphere fills at most 1 / FRAME_MARGIN of a random view

# Our mesh frame (glTF: y up, +z front) → MV-Adapter's world (Blender: z up, −y front): (x, y, z) → (x, −z, y)
Y_UP_TO_Z_UP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])

BACKGROUNDS: dict[str, tuple[float, float, float]] = {  # MultiviewDataset.get_bg_color's named colours
    "gray": (0.5, 0.5, 0.5),
    "white": (1.0, 1.0, 1.0),
    "black": (0.0, 0.0, 0.0),
}


def stable_hash(*parts: object) -> int:
    """A 64-bit hash of ``parts`` that is the same on every machine and run (unlike ``hash()``)."""
    text = "\x1f".join(str(part) for part in parts)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def scene_dir(data_root: Path, scene_id: str) -> Path:
    """``data_root/<id[:2]>/<id>`` (``_parse_scene_list_single``)."""
    return data_root / scene_id[:2] / scene_id


def view_files(index: str) -> list[str]:
    return [f"{modality}_{index}.webp" for modality in MODALITIES] + [f"depth_{index}.exr"]


# --------------------------------------------------------------------------------------------------------------------
# Cameras
# --------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ViewCamera:
    """One view as the layouts describe it: where the camera is (MV-Adapter's azimuth/elevation, degrees, azimuth 0
    looking at the front) and its projection (``ortho_scale`` world units across, or ``angle_x`` radians)."""

    index: str
    projection: Literal["ORTHO", "PERSP"]
    azimuth_deg: float
    elevation_deg: float
    distance: float
    ortho_scale: float = ORTHO_SCALE
    angle_x: float = BLENDER_ANGLE_X

    def transform_matrix(self) -> NDArray[np.float64]:
        """(4, 4) Blender camera-to-world in the z-up world: columns right, up, back (−view direction), position.

        The camera looks at the origin with world +z as up, as ``get_c2w`` (``mvadapter/utils/mesh_utils/camera.py``)
        and bpy-renderer's ``to_track_quat("-Z", "Y")`` place it.
        """
        theta = math.radians(self.azimuth_deg - 90.0)  # bpy-renderer: azimuths=[item - 90 ...]  # forward issue
        phi = math.radians(self.elevation_deg)
        position = self.distance * np.array(
            [math.cos(phi) * math.cos(theta), math.cos(phi) * math.sin(theta), math.sin(phi)]
        )
        look = -position / np.linalg.norm(position)
        right = np.cross(look, [0.0, 0.0, 1.0])
        right /= np.linalg.norm(right)
        up = np.cross(right, look)
        c2w = np.eye(4)
        c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, up, -look, position
        return c2w

    def intrinsics(self, size: int) -> NDArray[np.float64]:
        """(3, 3) OpenCV intrinsics in pixels at ``size``²: ortho ``f = size / ortho_scale``, perspective
        ``f = 0.5 · size / tan(0.5 · angle_x)`` (the trainer's focal), principal point at the centre."""
        ortho = self.projection == "ORTHO"
        focal = size / self.ortho_scale if ortho else 0.5 * size / math.tan(0.5 * self.angle_x)
        return np.array([[focal, 0.0, size / 2.0], [0.0, focal, size / 2.0], [0.0, 0.0, 1.0]])

    def camera(self, size: int) -> Camera:
        """This view as a G-buffer :class:`Camera` in OUR mesh frame (y up): what renders it."""
        opencv_c2w = self.transform_matrix()
        opencv_c2w[:3, 1:3] *= -1.0  # Blender → OpenCV camera axes, as the trainer does (c2w_[:, :, 1:3] *= -1)
        from_mesh_frame = np.eye(4)
        from_mesh_frame[:3, :3] = Y_UP_TO_Z_UP
        world_to_camera = _rigid_inverse(opencv_c2w) @ from_mesh_frame
        kind: Literal["orthographic", "perspective"] = "orthographic" if self.projection == "ORTHO" else "perspective"
        return Camera(kind, size, size, self.intrinsics(size), world_to_camera)

    def location(self, size: int) -> dict[str, Any]:
        """The ``meta.json`` entry: bpy-renderer's keys (angles in radians, azimuth shifted by −90°), plus our
        ``intrinsics`` (OpenCV, pixels)."""
        return {
            "index": self.index,
            "projection_type": self.projection,
            "ortho_scale": self.ortho_scale,
            "camera_angle_x": self.angle_x,
            "elevation": math.radians(self.elevation_deg),
            "azimuth": math.radians(self.azimuth_deg - 90.0),
            "transform_matrix": self.transform_matrix().tolist(),
            "intrinsics": self.intrinsics(size).tolist(),
        }


def _rigid_inverse(matrix: NDArray[np.float64]) -> NDArray[np.float64]:
    inverse = np.eye(4)
    inverse[:3, :3] = matrix[:3, :3].T
    inverse[:3, 3] = -matrix[:3, :3].T @ matrix[:3, 3]
    return inverse


def layout_views(layout: LayoutName, *, scene_id: str, seed: int, radius: float) -> list[ViewCamera]:
    """The views of ``layout`` for one object whose bounding sphere (about the origin) has ``radius``.

    Ortho10View's are fixed; Rand6View's are drawn from a generator seeded by ``(seed, scene_id)`` alone, so the same
    seed gives the same views whatever the order, shard or worker that renders the object.
    """
    if layout == "ortho10":
        return [
            ViewCamera(f"{i:04d}", "ORTHO", azimuth, elevation, CAMERA_DISTANCE)
            for i, (azimuth, elevation) in enumerate(ORTHO10_VIEWS)
        ]
    rng = np.random.default_rng([seed, stable_hash("rand6", scene_id)])
    views = []
    for i in range(VIEW_COUNTS["rand6"]):
        # Four draws per view, whatever its kind: view i never depends on the kinds drawn before it
        azimuth, elevation = rng.uniform(0.0, 360.0), rng.uniform(*RAND_ELEVATION_DEG)
        ortho, fov = rng.random() < RAND_ORTHO_PROBABILITY, math.radians(rng.uniform(*RAND_FOV_DEG))
        if ortho:
            view = ViewCamera(
                f"{i:04d}", "ORTHO", azimuth, elevation, CAMERA_DISTANCE, ortho_scale=2 * radius * FRAME_MARGIN
            )
        else:
            distance = radius * FRAME_MARGIN / math.sin(fov / 2.0)
            view = ViewCamera(f"{i:04d}", "PERSP", azimuth, elevation, distance, angle_x=fov)
        views.append(view)
    return views


# --------------------------------------------------------------------------------------------------------------------
# Encodings
# --------------------------------------------------------------------------------------------------------------------


def to_world(vectors: NDArray[np.floating[Any]]) -> NDArray[np.float64]:
    """(…, 3) vectors in our mesh frame (y up) → MV-Adapter's world (z up)."""
    return np.asarray(np.asarray(vectors, dtype=np.float64) @ Y_UP_TO_Z_UP.T)


def rgba(
    rgb: NDArray[np.floating[Any]], mask: NDArray[np.bool_], background: tuple[float, float, float]
) -> NDArray[np.uint8]:
    """(H, W, 3) values in 0..1 → (H, W, 4) uint8: ``background`` where ``mask`` is False, alpha = mask."""
    colour = np.where(mask[..., None], np.clip(rgb, 0.0, 1.0), np.asarray(background, dtype=np.float64))
    alpha = np.where(mask, 255, 0).astype(np.uint8)
    return np.dstack([np.round(colour * 255.0).astype(np.uint8), alpha])


def encode_normal(
    normal_world: NDArray[np.floating[Any]], mask: NDArray[np.bool_], background: tuple[float, float, float]
) -> NDArray[np.uint8]:
    """World-space unit normals → RGBA ``n / 2 + 0.5``."""
    return rgba(np.asarray(normal_world) / 2.0 + 0.5, mask, background)


def encode_position(
    position_world: NDArray[np.floating[Any]], mask: NDArray[np.bool_], background: tuple[float, float, float]
) -> NDArray[np.uint8]:
    """World positions → RGBA ``(p + position_offset) / position_scale`` clamped to [0, 1] (as the trainer clamps)."""
    return rgba((np.asarray(position_world) + POSITION_OFFSET) / POSITION_SCALE, mask, background)


def decode_position(image: NDArray[np.uint8]) -> NDArray[np.float64]:
    """RGBA position image → (H, W, 3) world positions (background pixels decode to garbage: use the alpha)."""
    return np.asarray(image[..., :3], dtype=np.float64) / 255.0 * POSITION_SCALE - POSITION_OFFSET


def decode_normal(image: NDArray[np.uint8]) -> NDArray[np.float64]:
    return np.asarray(image[..., :3], dtype=np.float64) / 255.0 * 2.0 - 1.0


def write_webp(path: Path, image: NDArray[np.uint8]) -> None:
    """Lossless RGBA WebP (``exact``: keep the colour under transparent pixels; method 1: fast, near-smallest)."""
    Image.fromarray(image, "RGBA").save(path, "WEBP", lossless=True, quality=0, method=1, exact=True)


def write_depth_exr(path: Path, depth: NDArray[np.floating[Any]], mask: NDArray[np.bool_]) -> None:
    """float32 depth in R, G and B (ZIP-compressed scanlines); ``DEPTH_BACKGROUND`` where ``mask`` is False."""
    import OpenEXR

    values = np.where(mask, np.asarray(depth, dtype=np.float32), np.float32(DEPTH_BACKGROUND)).astype(np.float32)
    channels = {"RGB": np.ascontiguousarray(np.repeat(values[..., None], 3, axis=2))}
    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    OpenEXR.File(header, channels).write(str(path))


def read_depth_exr(path: Path) -> NDArray[np.float32]:
    """(H, W) float32 depth from channel R (or Y / V / Z, whichever the file has), as the trainer reads channel 0."""
    import OpenEXR

    channels = OpenEXR.File(str(path)).channels()
    for name in ("RGB", "RGBA", "R", "Y", "V", "Z"):
        if name in channels:
            pixels = np.asarray(channels[name].pixels, dtype=np.float32)
            return pixels[..., 0] if pixels.ndim == 3 else pixels
    raise ValueError(f"no depth channel among {sorted(channels)}")


# --------------------------------------------------------------------------------------------------------------------
# Checking one object's folder
# --------------------------------------------------------------------------------------------------------------------


def check_scene(folder: Path, views: int) -> list[str]:
    """What is wrong with one object's folder (empty when nothing): ``meta.json`` parses and describes ``views``
    cameras; every view's images decode as RGBA of the stated size, the EXR depth reads; their masks agree; the
    decoded normals are unit vectors."""
    try:
        meta = json.loads((folder / "meta.json").read_text())
        width, height, locations = int(meta["width"]), int(meta["height"]), list(meta["locations"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return [f"{folder.name}/meta.json: unreadable ({exc})"]
    problems = []
    if len(locations) != views:
        problems.append(f"{folder.name}/meta.json: {len(locations)} cameras, expected {views}")
    for location in locations:
        problem = _location_problem(location)
        if problem:
            problems.append(f"{folder.name}/meta.json: {problem}")
            continue
        problems += _view_problems(folder, str(location["index"]), width, height)
    return problems


def _location_problem(location: Any) -> str | None:
    try:
        index = str(location["index"])
        matrix = np.asarray(location["transform_matrix"], dtype=np.float64)
        projection = location["projection_type"]
        scale, angle = float(location["ortho_scale"]), float(location["camera_angle_x"])
    except (KeyError, TypeError, ValueError) as exc:
        return f"a camera lacks or garbles a field ({exc})"
    if len(index) != 4 or not index.isdigit():
        return f"camera index {index!r} is not four digits"
    if matrix.shape != (4, 4) or not np.all(np.isfinite(matrix)):
        return f"camera {index}: transform_matrix is not a finite 4x4 matrix"
    rotation = matrix[:3, :3]
    if not np.allclose(rotation @ rotation.T, np.eye(3), atol=1e-5) or np.linalg.det(rotation) < 0:
        return f"camera {index}: transform_matrix is not a rotation and a translation"
    if projection not in ("ORTHO", "PERSP"):
        return f"camera {index}: projection_type {projection!r} is neither ORTHO nor PERSP"
    if projection == "ORTHO" and not scale > 0:
        return f"camera {index}: ortho_scale must be positive"
    if projection == "PERSP" and not 0 < angle < math.pi:
        return f"camera {index}: camera_angle_x must be within (0, pi)"
    return None


def _view_problems(folder: Path, index: str, width: int, height: int) -> list[str]:
    problems, alphas = [], {}
    for name in view_files(index):
        path = folder / name
        if not path.is_file():
            problems.append(f"{folder.name}/{name}: missing")
            continue
        try:
            if name.endswith(".exr"):
                depth = read_depth_exr(path)
                if depth.shape != (height, width) or not np.all(np.isfinite(depth)):
                    problems.append(f"{folder.name}/{name}: not a finite {width}x{height} depth map")
                    continue
                alphas[name] = depth <= DEPTH_VALID_MAX
            else:
                with Image.open(path) as image:
                    image.load()
                    if image.mode != "RGBA" or image.size != (width, height):
                        problems.append(
                            f"{folder.name}/{name}: {image.mode} {image.size}, expected RGBA {width}x{height}"
                        )
                        continue
                    pixels = np.asarray(image)
                alphas[name] = pixels[..., 3] > 127
                if name.startswith("normal_") and alphas[name].any():
                    lengths = np.linalg.norm(decode_normal(pixels)[alphas[name]], axis=1)
                    if np.abs(lengths - 1.0).max() > NORMAL_TOLERANCE:
                        problems.append(f"{folder.name}/{name}: normals are not unit vectors")
        except (OSError, RuntimeError, ValueError, UnidentifiedImageError) as exc:
            problems.append(f"{folder.name}/{name}: unreadable ({exc})")
    masks = list(alphas.values())
    if masks and not all(np.array_equal(masks[0], mask) for mask in masks[1:]):
        problems.append(f"{folder.name}: view {index}'s images and depth disagree on which pixels see the object")
    if masks and not masks[0].any():
        problems.append(f"{folder.name}: view {index} does not see the object")
    return problems
