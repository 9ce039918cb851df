"""Make any engine's GLB (or one made by another tool) ready to hand out.

``postprocess_glb`` reads as its steps: load → bake node transforms into world space → y-up → centre and scale to a
unit box → optional simplification (trimesh's quadric decimation drops UVs, so a simplified textured mesh is then
UV-unwrapped with xatlas in a subprocess and its colours baked from the original into a new albedo map) → texture size
cap → GLB with our label + the albedo map PNG beside it. Validation is the caller's step (``mesh.validate``).
"""

from __future__ import annotations

import logging
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from ..errors import MeshError
from .glb import GENERATOR, export_glb, load_glb

if TYPE_CHECKING:
    import trimesh

logger = logging.getLogger(__name__)

TEXTURE_SLOTS = ("baseColorTexture", "metallicRoughnessTexture", "normalTexture", "emissiveTexture", "occlusionTexture")
WARNING_PREFIXES = ("dropped", "UV unwrap failed", "a primitive has both")  # notes that are also warnings
BAKE_SAMPLES = 400_000  # colour samples taken on the original surface for baking
BAKE_OVERSAMPLING = 2.0  # surface samples per texel when rasterising the unwrapped mesh


@dataclass
class PostprocessOptions:
    target_faces: int | None = None  # simplify when the mesh has more faces than this
    texture_cap: int = 2048  # longest side of any texture
    up_axis: Literal["y", "z"] = "y"  # the engine's up axis; glTF is y-up
    unwrap: Literal["auto", "always", "never"] = "auto"  # auto: unwrap + bake after simplifying a coloured mesh
    bake_size: int = 1024
    xatlas_timeout_s: float = 300.0


@dataclass
class PostprocessReport:
    faces_in: int
    faces: int
    vertices: int
    primitives: int
    simplified: bool = False
    unwrapped: bool = False
    texture_map: str | None = None  # where the albedo map came from: "baked", "engine texture" or None
    texture_size: list[int] | None = None
    glb_bytes: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # what a person should know: something was lost or replaced

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def postprocess_glb(
    src: Path,
    dst: Path,
    texture_png: Path | None,
    options: PostprocessOptions | None = None,
    *,
    generator: str = GENERATOR,
    extras: dict[str, Any] | None = None,
) -> PostprocessReport:
    """Normalise ``src`` into ``dst`` (and its albedo map into ``texture_png`` when there is one)."""
    options = options or PostprocessOptions()
    started = time.perf_counter()
    notes: list[str] = []
    # 1. load, every primitive in world space (node transforms applied)
    meshes = _world_meshes(load_glb(src, "the engine's GLB"), notes)
    faces_in = sum(len(m.faces) for m in meshes)
    # 2. y-up, centred, unit size
    _normalise(meshes, options.up_axis)
    # 3. optional simplification, then unwrap + bake
    simplified = bool(options.target_faces and faces_in > options.target_faces)
    unwrap = options.unwrap == "always" or (options.unwrap == "auto" and simplified)
    unwrapped = False
    if simplified or unwrap:
        meshes, unwrapped = _simplify_and_bake(meshes, options, simplified, unwrap, notes)
    # 4. texture cap, albedo map
    _cap_textures(meshes, options.texture_cap, notes)
    albedo = _single_albedo(meshes)
    if albedo is not None and texture_png is not None:
        albedo.convert("RGBA" if albedo.mode in ("RGBA", "LA") else "RGB").save(texture_png)
    # 5. write
    glb_bytes = export_glb(_scene(meshes), dst, generator=generator, extras=extras)
    return PostprocessReport(
        faces_in=faces_in,
        faces=sum(len(m.faces) for m in meshes),
        vertices=sum(len(m.vertices) for m in meshes),
        primitives=len(meshes),
        simplified=simplified,
        unwrapped=unwrapped,
        texture_map=None if albedo is None else ("baked" if unwrapped else "engine texture"),
        texture_size=None if albedo is None else list(albedo.size),
        glb_bytes=glb_bytes,
        seconds=round(time.perf_counter() - started, 3),
        notes=notes,
        warnings=[note for note in notes if note.startswith(WARNING_PREFIXES)],
    )


# --- 1. load -----------------------------------------------------------------------------------------------------


def _world_meshes(scene: trimesh.Scene, notes: list[str]) -> list[trimesh.Trimesh]:
    """A copy of every mesh instance with its node transform applied (and glTF COLOR_0 kept as vertex colours)."""
    import trimesh

    meshes: list[trimesh.Trimesh] = []
    for node in scene.graph.nodes_geometry:
        transform, name = scene.graph[node]
        geometry = scene.geometry[name]
        if not isinstance(geometry, trimesh.Trimesh) or not len(geometry.faces):
            notes.append(f"dropped a {type(geometry).__name__} (not a triangle mesh)")
            continue
        mesh = geometry.copy()
        _keep_vertex_colours(geometry, mesh, notes)
        mesh.apply_transform(transform)
        meshes.append(mesh)
    if not meshes:
        raise MeshError("the GLB holds no triangle mesh")
    return meshes


def _keep_vertex_colours(source: trimesh.Trimesh, mesh: trimesh.Trimesh, notes: list[str]) -> None:
    """trimesh keeps COLOR_0 of a primitive with a material aside (as floats): make it the mesh's colours."""
    import trimesh

    colours = getattr(source.visual, "vertex_attributes", {}).get("color")
    if colours is None or len(colours) != len(mesh.vertices):
        return
    if getattr(source.visual, "uv", None) is not None:
        notes.append("a primitive has both a texture and vertex colours: kept the texture")
        return
    values = np.asarray(colours, dtype=np.float64)
    if np.issubdtype(np.asarray(colours).dtype, np.floating):
        values = values * 255.0
    elif np.asarray(colours).dtype == np.uint16:
        values = values / 257.0
    if values.shape[1] == 3:
        values = np.column_stack([values, np.full(len(values), 255.0)])
    mesh.visual = trimesh.visual.ColorVisuals(mesh, vertex_colors=np.clip(values, 0, 255).astype(np.uint8))


# --- 2. normalise ------------------------------------------------------------------------------------------------


def _normalise(meshes: list[trimesh.Trimesh], up_axis: str) -> None:
    if up_axis == "z":
        z_to_y = np.array([[1, 0, 0, 0], [0, 0, 1, 0], [0, -1, 0, 0], [0, 0, 0, 1]], dtype=np.float64)
        for mesh in meshes:
            mesh.apply_transform(z_to_y)
    lower = np.min([m.bounds[0] for m in meshes], axis=0)
    upper = np.max([m.bounds[1] for m in meshes], axis=0)
    extent = float(np.max(upper - lower))
    if not np.isfinite(extent) or extent <= 0:
        raise MeshError("the mesh has no extent (all vertices at one point)")
    centre = (lower + upper) / 2.0
    for mesh in meshes:
        mesh.apply_translation(-centre)
        mesh.apply_scale(1.0 / extent)


# --- 3. simplify, unwrap, bake -----------------------------------------------------------------------------------


def _simplify_and_bake(
    meshes: list[trimesh.Trimesh], options: PostprocessOptions, simplify: bool, unwrap: bool, notes: list[str]
) -> tuple[list[trimesh.Trimesh], bool]:
    import trimesh

    colours = _ColourSource(meshes)
    material = _first_pbr(meshes)
    merged: Any = trimesh.util.concatenate([trimesh.Trimesh(m.vertices, m.faces, process=False) for m in meshes])
    merged.merge_vertices()
    if simplify and options.target_faces:
        merged = merged.simplify_quadric_decimation(face_count=options.target_faces)
        notes.append(f"simplified to {len(merged.faces)} faces")
    if not unwrap or not colours.has_colour:
        merged.visual = trimesh.visual.ColorVisuals(merged, vertex_colors=colours.at(merged.vertices))
        return [merged], False
    try:
        bake_size = min(options.bake_size, options.texture_cap)
        vmapping, indices, uvs = unwrap_uvs(merged, bake_size, options.xatlas_timeout_s)
    except MeshError as exc:
        notes.append(f"UV unwrap failed, kept vertex colours instead: {exc}")
        merged.visual = trimesh.visual.ColorVisuals(merged, vertex_colors=colours.at(merged.vertices))
        return [merged], False
    vertices = merged.vertices[vmapping]
    texture = _bake(vertices, indices, uvs, colours, bake_size)
    baked_material = trimesh.visual.material.PBRMaterial(
        name="alch3mist-baked",
        baseColorTexture=texture,
        metallicFactor=getattr(material, "metallicFactor", None) or 0.0,
        roughnessFactor=getattr(material, "roughnessFactor", None) or 0.8,
    )
    unwrapped = trimesh.Trimesh(
        vertices=vertices,
        faces=indices,
        visual=trimesh.visual.TextureVisuals(uv=uvs, material=baked_material),
        process=False,
    )
    return [unwrapped], True


def unwrap_uvs(
    mesh: trimesh.Trimesh, resolution: int, timeout_s: float
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float64]]:
    """xatlas in a subprocess: (vmapping, indices, uvs)."""
    with tempfile.TemporaryDirectory(prefix="alch3mist-xatlas-") as tmp:
        source, target = Path(tmp) / "in.npz", Path(tmp) / "out.npz"
        np.savez(source, vertices=mesh.vertices, faces=mesh.faces)
        command = [sys.executable, "-m", "alch3mist.mesh._xatlas_worker", str(source), str(target), str(resolution)]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired as exc:
            raise MeshError(f"xatlas timed out after {timeout_s:.0f} s on {len(mesh.faces)} faces") from exc
        if done.returncode != 0 or not target.is_file():
            raise MeshError(f"xatlas failed (exit {done.returncode}) on {len(mesh.faces)} faces: {done.stderr[-300:]}")
        with np.load(target) as data:
            return (
                data["vmapping"].astype(np.int64),
                data["indices"].astype(np.int64),
                data["uvs"].astype(np.float64),
            )


class _ColourSource:
    """Colours sampled densely on the original surfaces; ``at(points)`` answers with the nearest sample's colour."""

    def __init__(self, meshes: list[trimesh.Trimesh]) -> None:
        from scipy.spatial import cKDTree

        total_area = sum(float(m.area) for m in meshes) or 1.0
        points, colours = [], []
        self.has_colour = False
        for mesh in meshes:
            count = max(256, int(BAKE_SAMPLES * float(mesh.area) / total_area))
            p, c, coloured = _sample_colours(mesh, count)
            points.append(p)
            colours.append(c)
            self.has_colour |= coloured
        self._colours = np.concatenate(colours)
        self._tree = cKDTree(np.concatenate(points))

    def at(self, points: NDArray[np.float64]) -> NDArray[np.uint8]:
        _, nearest = self._tree.query(points, k=1, eps=0.5, workers=-1)
        return np.asarray(self._colours[nearest], dtype=np.uint8)


def _sample_colours(mesh: trimesh.Trimesh, count: int) -> tuple[NDArray[np.float64], NDArray[np.uint8], bool]:
    """(points, RGBA colours, whether the mesh has real colour) for ``count`` points on its surface."""
    faces = _area_weighted_faces(mesh, count)
    bary = _random_barycentric(len(faces))
    corners = mesh.vertices[mesh.faces[faces]]
    points = np.einsum("ij,ijk->ik", bary, corners)
    visual: Any = mesh.visual
    uv = getattr(visual, "uv", None)
    image = getattr(getattr(visual, "material", None), "baseColorTexture", None)
    if image is None:
        image = getattr(getattr(visual, "material", None), "image", None)
    if uv is not None and image is not None and len(uv) == len(mesh.vertices):
        uv_points = np.einsum("ij,ijk->ik", bary, np.asarray(uv)[mesh.faces[faces]])
        colours = _lookup(image, uv_points)
        factor = getattr(visual.material, "baseColorFactor", None)
        if factor is not None:
            colours = (colours.astype(np.float64) * np.asarray(factor, dtype=np.float64) / 255.0).astype(np.uint8)
        return points, colours, True
    if getattr(visual, "kind", None) == "vertex":
        vertex_colours = np.asarray(visual.vertex_colors, dtype=np.float64)[mesh.faces[faces]]
        return points, np.einsum("ij,ijk->ik", bary, vertex_colours).astype(np.uint8), True
    if getattr(visual, "kind", None) == "face":
        return points, np.asarray(visual.face_colors, dtype=np.uint8)[faces], True
    main = np.asarray(visual.main_color if hasattr(visual, "main_color") else [200, 200, 200, 255], dtype=np.uint8)
    return points, np.tile(main, (len(points), 1)), False


def _area_weighted_faces(mesh: trimesh.Trimesh, count: int) -> NDArray[np.int64]:
    weights = np.asarray(mesh.area_faces, dtype=np.float64)
    total = weights.sum()
    if total <= 0:
        return np.random.default_rng(0).integers(0, len(mesh.faces), count)
    cumulative = np.cumsum(weights / total)
    return np.minimum(np.searchsorted(cumulative, np.random.default_rng(0).random(count)), len(mesh.faces) - 1)


def _random_barycentric(count: int) -> NDArray[np.float64]:
    r1, r2 = np.random.default_rng(1).random((2, count))
    s = np.sqrt(r1)
    return np.column_stack([1.0 - s, s * (1.0 - r2), s * r2])


def _lookup(image: Image.Image, uv: NDArray[np.float64]) -> NDArray[np.uint8]:
    """Nearest-texel RGBA colour at glTF-flipped trimesh UVs (v up)."""
    pixels = np.asarray(image.convert("RGBA"))
    height, width = pixels.shape[:2]
    u = np.mod(uv[:, 0], 1.0)
    v = np.mod(uv[:, 1], 1.0)
    cols = np.clip((u * width).astype(np.int64), 0, width - 1)
    rows = np.clip(((1.0 - v) * height).astype(np.int64), 0, height - 1)
    return np.asarray(pixels[rows, cols], dtype=np.uint8)


def _bake(
    vertices: NDArray[np.float64], faces: NDArray[np.int64], uvs: NDArray[np.float64], colours: _ColourSource, size: int
) -> Image.Image:
    """Rasterise the unwrapped mesh by dense sampling: each texel gets the original colour at its 3D point."""
    from scipy import ndimage

    uv_px = uvs * size
    corners_uv = uv_px[faces]
    edge1, edge2 = corners_uv[:, 1] - corners_uv[:, 0], corners_uv[:, 2] - corners_uv[:, 0]
    area_px = 0.5 * np.abs(edge1[:, 0] * edge2[:, 1] - edge1[:, 1] * edge2[:, 0])
    per_face = np.ceil(area_px * BAKE_OVERSAMPLING).astype(np.int64) + 3
    face_of_sample = np.repeat(np.arange(len(faces)), per_face)
    bary = _random_barycentric(len(face_of_sample))
    points = np.einsum("ij,ijk->ik", bary, vertices[faces[face_of_sample]])
    texel = np.einsum("ij,ijk->ik", bary, corners_uv[face_of_sample])
    cols = np.clip(texel[:, 0].astype(np.int64), 0, size - 1)
    rows = np.clip((size - texel[:, 1]).astype(np.int64), 0, size - 1)
    flat = rows * size + cols
    rgba = colours.at(points).astype(np.float64)
    hits = np.bincount(flat, minlength=size * size)
    sums = np.stack([np.bincount(flat, weights=rgba[:, k], minlength=size * size) for k in range(4)], axis=1)
    filled = hits > 0
    flat_image = np.zeros((size * size, 4), dtype=np.float64)
    flat_image[filled] = sums[filled] / hits[filled, None]
    image = flat_image.reshape(size, size, 4)
    mask = filled.reshape(size, size)
    nearest = ndimage.distance_transform_edt(~mask, return_distances=False, return_indices=True)
    image = image[nearest[0], nearest[1]]
    return Image.fromarray(np.clip(image[..., :3], 0, 255).astype(np.uint8), "RGB")


def _first_pbr(meshes: list[trimesh.Trimesh]) -> Any:
    for mesh in meshes:
        material = getattr(mesh.visual, "material", None)
        if material is not None:
            return material
    return None


# --- 4. textures -------------------------------------------------------------------------------------------------


def _cap_textures(meshes: list[trimesh.Trimesh], cap: int, notes: list[str]) -> None:
    for mesh in meshes:
        material = getattr(mesh.visual, "material", None)
        for slot in TEXTURE_SLOTS:
            image = getattr(material, slot, None)
            if isinstance(image, Image.Image) and max(image.size) > cap:
                original = image.size
                resized = image.copy()
                resized.thumbnail((cap, cap), Image.Resampling.LANCZOS)
                setattr(material, slot, resized)
                notes.append(f"{slot} {original[0]}x{original[1]} capped to {resized.size[0]}x{resized.size[1]}")


def _single_albedo(meshes: list[trimesh.Trimesh]) -> Image.Image | None:
    """The base-colour texture when every textured primitive shares one (the map written beside the GLB)."""
    images = {}
    for mesh in meshes:
        material = getattr(mesh.visual, "material", None)
        image = getattr(material, "baseColorTexture", None) or getattr(material, "image", None)
        if isinstance(image, Image.Image):
            images[id(image)] = image
    return next(iter(images.values())) if len(images) == 1 else None


def _scene(meshes: list[trimesh.Trimesh]) -> trimesh.Scene:
    import trimesh

    scene = trimesh.Scene()
    for index, mesh in enumerate(meshes):
        scene.add_geometry(mesh, geom_name=f"mesh{index}")
    return scene
