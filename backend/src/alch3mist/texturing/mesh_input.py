"""Loading a mesh someone wants textured: one function for the command line and (later) the API's uploads.

:func:`load_mesh` takes a file's bytes or path (GLB, glTF with embedded data, OBJ, PLY), refuses what cannot be
textured with a clear :class:`~alch3mist.errors.InvalidMesh` (the caller's mistake, never a server error), and hands
back ONE triangle mesh in the product's frame — y up, centred on the origin, longest side 1 — with the transform back
to the file's own coordinates, so nothing is lost:

- several primitives, materials and node transforms: baked into world space and merged into one mesh (one texture);
- UVs: kept when every primitive has them (whether they are usable is the texture stage's question);
- far from the origin, or 1000× too big or too small: normalised; ``to_source`` restores the original placement;
- inside-out (closed, consistently wound, negative volume): faces flipped; open meshes stay as they are (the
  projection is two-sided and the material double-sided);
- non-manifold edges, degenerate faces: noted; degenerate faces are dropped;
- over the face limit: refused with :class:`~alch3mist.errors.MeshTooLarge` naming the limit and offering
  decimation, or decimated when the caller asked for it.

A glTF file may only embed its data (``data:`` URIs): a path or URL inside an uploaded file is never followed.
"""

from __future__ import annotations

import io
import json
import logging
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, Field

from ..errors import InvalidMesh, MeshTooLarge

if TYPE_CHECKING:
    import trimesh

    from ..config import Settings

__all__ = ["MESH_FORMATS", "InputMeshManifest", "LoadedMesh", "MeshFormat", "MeshLimits", "SourceMaterial", "load_mesh"]

logger = logging.getLogger(__name__)

MeshFormat = Literal["glb", "gltf", "obj", "ply"]
MESH_FORMATS: tuple[MeshFormat, ...] = ("glb", "gltf", "obj", "ply")
# glTF extensions trimesh cannot decode: a file that requires one would load as garbage or not at all.
UNSUPPORTED_EXTENSIONS = {
    "KHR_draco_mesh_compression": "Draco compression",
    "EXT_meshopt_compression": "meshopt compression",
    "KHR_texture_basisu": "Basis Universal (KTX2) textures",
}
Z_UP_TO_Y_UP = np.array([[1, 0, 0, 0], [0, 0, 1, 0], [0, -1, 0, 0], [0, 0, 0, 1]], dtype=np.float64)
FAR_FROM_ORIGIN = 10.0  # centre farther than this many sizes from the origin: worth a note
ODD_SCALE = 100.0  # longest side above this or below its inverse: worth a note


@dataclass(frozen=True)
class MeshLimits:
    """What a mesh to texture may be: at most ``max_bytes`` on disk and ``max_faces`` triangles.

    ``decimate``: simplify a mesh over the face limit down to it (its UVs are lost, a new atlas is made) instead of
    refusing it.
    """

    max_bytes: int
    max_faces: int
    decimate: bool = False

    @classmethod
    def from_settings(cls, settings: Settings, *, decimate: bool = False) -> MeshLimits:
        return cls(max_bytes=settings.mesh_max_bytes, max_faces=settings.mesh_max_faces, decimate=decimate)


@dataclass(frozen=True)
class SourceMaterial:
    """The PBR factors of the file's (first) material, used when the request names no known material."""

    metallic: float
    roughness: float


@dataclass(eq=False)
class LoadedMesh:
    """A mesh ready to texture.

    Attributes
    ----------
    mesh : trimesh.Trimesh — world space, y up, centred, longest side 1; ``visual.uv`` when the file had UVs
    source_format : "glb" | "gltf" | "obj" | "ply"
    source_faces : int — triangles in the file (before cleaning or decimation)
    source_primitives : int — mesh instances merged into ``mesh``
    to_source : (4, 4) float64 — maps ``mesh`` back to the file's coordinates (undoes centring, scaling, up axis)
    material : SourceMaterial or None
    notes : list[str] — what was changed or noticed, for the manifest
    """

    mesh: trimesh.Trimesh
    source_format: MeshFormat
    source_faces: int
    source_primitives: int
    to_source: NDArray[np.float64]
    material: SourceMaterial | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def has_uv(self) -> bool:
        uv = getattr(self.mesh.visual, "uv", None)
        return uv is not None and len(uv) == len(self.mesh.vertices)

    def manifest(self) -> InputMeshManifest:
        return InputMeshManifest(
            format=self.source_format,
            faces=self.source_faces,
            primitives=self.source_primitives,
            had_uv=self.has_uv,
            to_source=self.to_source.round(9).tolist(),
            notes=self.notes,
        )


class InputMeshManifest(BaseModel):
    """The manifest's ``input_mesh`` section: the mesh the texture step was given, and what loading it changed."""

    format: str = Field(description="glb, gltf, obj or ply (read from the content).")
    faces: int = Field(description="Triangles in the file.")
    primitives: int = Field(description="Mesh instances merged into one.")
    had_uv: bool = Field(description="The file's UVs reached the texture step (usable or not is its question).")
    to_source: list[list[float]] = Field(description="4x4 matrix from model.glb's frame back to the file's.")
    notes: list[str] = Field(description="What loading changed or noticed.")


def load_mesh(
    source: bytes | Path,
    *,
    limits: MeshLimits,
    filename: str | None = None,
    up_axis: Literal["y", "z"] = "y",
) -> LoadedMesh:
    """Read, check and normalise a mesh file (see the module docstring). ``InvalidMesh`` / ``MeshTooLarge``."""
    notes: list[str] = []
    # 1. Read, size-limited
    name = filename or (source.name if isinstance(source, Path) else "the mesh")
    data = _read_limited(source, limits.max_bytes, name)
    # 2. Which format (by content first, the name only for text formats that have no signature)
    kind = _sniff_format(data, name)
    # 3. glTF: embedded data only, no extension we cannot decode
    if kind in ("glb", "gltf"):
        _check_gltf_document(_gltf_document(data, kind, name), name)
    # 4. Parse and bake every instance into world space
    parts = _world_meshes(_parse(data, kind, name), name)
    source_faces = sum(len(part.faces) for part in parts)
    material = _first_material(parts)
    # 5. One mesh, one texture
    mesh = _merge(parts, notes)
    # 6. Face limit: refuse, or decimate when asked
    mesh = _within_face_limit(mesh, limits, name, notes)
    # 7. y up, centred, unit size — remembering the way back
    to_source = _normalise(mesh, up_axis, notes)
    # 8. Clean (at unit size, so "degenerate" means the same for every file): degenerate faces out, orientation
    #    fixed where it is knowable, non-manifold edges noted
    mesh = _clean(mesh, name, notes)
    logger.info("mesh %s: %s, %d faces in, %d faces out", name, kind, source_faces, len(mesh.faces))
    return LoadedMesh(
        mesh=mesh,
        source_format=kind,
        source_faces=source_faces,
        source_primitives=len(parts),
        to_source=to_source,
        material=material,
        notes=notes,
    )


# --- 1-3. bytes, format, glTF document ------------------------------------------------------------------------------


def _read_limited(source: bytes | Path, max_bytes: int, name: str) -> bytes:
    if isinstance(source, Path):
        if not source.is_file():
            raise InvalidMesh(f"{name}: no such file")
        size = source.stat().st_size
        if size > max_bytes:
            raise MeshTooLarge(f"{name} is {_mb(size)}; the largest mesh file accepted is {_mb(max_bytes)}")
        data = source.read_bytes()
    else:
        data = source
    if len(data) > max_bytes:
        raise MeshTooLarge(f"{name} is {_mb(len(data))}; the largest mesh file accepted is {_mb(max_bytes)}")
    if not data.strip():
        raise InvalidMesh(f"{name} is empty")
    return data


def _mb(size: int) -> str:
    return f"{size / 1024 / 1024:.1f} MB"


def _sniff_format(data: bytes, name: str) -> MeshFormat:
    suffix = Path(name).suffix.lower().lstrip(".")
    if data[:4] == b"glTF":
        return "glb"
    if data[:4] == b"ply\n" or data[:5] == b"ply\r\n":
        return "ply"
    head = data[:4096].lstrip()
    if head.startswith(b"{") and b'"asset"' in data[:1_000_000]:
        return "gltf"
    if _looks_like_obj(head):
        return "obj"
    what = f"a .{suffix} file" if suffix else "this file"
    raise InvalidMesh(f"{name}: {what} is not a mesh we can read; send a GLB, glTF (embedded), OBJ or PLY file")


def _looks_like_obj(head: bytes) -> bool:
    """Text whose first statements are OBJ's (vertices, groups, materials…), whatever the file is called."""
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    statements = [line.split()[0] for line in text.splitlines() if line.strip() and not line.startswith("#")]
    known = {"v", "vt", "vn", "vp", "f", "l", "p", "o", "g", "s", "usemtl", "mtllib"}
    return "v" in statements and all(statement in known for statement in statements[:20])


def _gltf_document(data: bytes, kind: MeshFormat, name: str) -> dict[str, Any]:
    try:
        if kind == "glb":
            (length,) = struct.unpack_from("<I", data, 12)
            document = json.loads(data[20 : 20 + length])
        else:
            document = json.loads(data)
    except (struct.error, ValueError, UnicodeDecodeError) as exc:
        raise InvalidMesh(f"{name} is not a readable glTF file: {exc}") from exc
    if not isinstance(document, dict):
        raise InvalidMesh(f"{name} is not a readable glTF file")
    return document


def _check_gltf_document(document: dict[str, Any], name: str) -> None:
    required = set(document.get("extensionsRequired") or [])
    for extension, what in UNSUPPORTED_EXTENSIONS.items():
        if extension in required:
            raise InvalidMesh(f"{name} uses {what} ({extension}), which we cannot decode: export it without it")
    for key in ("buffers", "images"):
        for item in document.get(key) or []:
            uri = item.get("uri") if isinstance(item, dict) else None
            if isinstance(uri, str) and not uri.startswith("data:"):
                raise InvalidMesh(
                    f"{name} refers to an outside file ({uri[:80]!r}); send a GLB, or a glTF with its data embedded"
                )


# --- 4-5. parse, world space, merge ---------------------------------------------------------------------------------


def _parse(data: bytes, kind: MeshFormat, name: str) -> trimesh.Scene:
    import trimesh

    try:
        # No resolver: nothing a file names (an .mtl, a texture, a buffer) is ever read from disk or the network.
        # Hostile numbers make trimesh's casts warn; what matters is checked after loading.
        with np.errstate(all="ignore"):
            loaded = trimesh.load(io.BytesIO(data), file_type=kind, force="scene", process=False)
    except Exception as exc:  # trimesh raises many types for a corrupt file
        raise InvalidMesh(f"{name} cannot be read as {kind.upper()}: {str(exc)[:200] or type(exc).__name__}") from exc
    if not isinstance(loaded, trimesh.Scene):
        raise InvalidMesh(f"{name} cannot be read as {kind.upper()}")
    return loaded


@dataclass(eq=False)
class _Part:
    """One mesh instance in world space: only what texturing uses (the file's textures are never decoded)."""

    vertices: NDArray[np.float64]
    faces: NDArray[np.int64]
    uv: NDArray[np.float64] | None
    material: Any


def _world_meshes(scene: trimesh.Scene, name: str) -> list[_Part]:
    """Every triangle-mesh instance with its node transform applied; clear errors for point clouds and empties."""
    import trimesh

    parts: list[_Part] = []
    others: list[str] = []
    for node in scene.graph.nodes_geometry:
        transform, geometry_name = scene.graph[node]
        geometry = scene.geometry[geometry_name]
        if not (isinstance(geometry, trimesh.Trimesh) and len(geometry.faces)):
            others.append(type(geometry).__name__)
            continue
        vertices = np.asarray(geometry.vertices, dtype=np.float64)
        faces = np.asarray(geometry.faces, dtype=np.int64)
        if faces.ndim != 2 or faces.shape[1] != 3 or faces.min() < 0 or faces.max() >= len(vertices):
            raise InvalidMesh(f"{name} is corrupt: a face refers to a vertex that does not exist")
        uv = getattr(geometry.visual, "uv", None)
        usable_uv = uv is not None and np.shape(uv) == (len(vertices), 2)
        world = trimesh.transformations.transform_points(vertices, np.asarray(transform, dtype=np.float64))
        material = getattr(geometry.visual, "material", None)
        parts.append(_Part(world, faces, np.asarray(uv, dtype=np.float64) if usable_uv else None, material))
    if parts:
        return parts
    if "PointCloud" in others:
        raise InvalidMesh(
            f"{name} is a point cloud (points, no faces): texturing needs a surface — reconstruct a mesh first "
            "(e.g. Poisson surface reconstruction)"
        )
    if others:
        raise InvalidMesh(f"{name} holds no triangles (only {', '.join(sorted(set(others)))})")
    raise InvalidMesh(f"{name} holds no geometry")


def _first_material(parts: list[_Part]) -> SourceMaterial | None:
    for part in parts:
        metallic = getattr(part.material, "metallicFactor", None)
        roughness = getattr(part.material, "roughnessFactor", None)
        if metallic is not None or roughness is not None:
            # glTF's defaults for a factor left out: 1.0 each
            return SourceMaterial(
                metallic=float(1.0 if metallic is None else metallic),
                roughness=float(1.0 if roughness is None else roughness),
            )
    return None


def _merge(parts: list[_Part], notes: list[str]) -> trimesh.Trimesh:
    import trimesh

    keep_uv = all(part.uv is not None for part in parts)
    if not keep_uv and any(part.uv is not None for part in parts):
        notes.append("some primitives have no UVs: the mesh gets a new UV atlas")
    if len(parts) > 1:
        materials = {id(part.material) for part in parts}
        notes.append(f"merged {len(parts)} primitives ({len(materials)} materials) into one mesh with one texture")
    offsets = np.cumsum([0] + [len(part.vertices) for part in parts[:-1]])
    vertices = np.concatenate([part.vertices for part in parts])
    faces = np.concatenate([part.faces + offset for part, offset in zip(parts, offsets, strict=True)])
    if not np.all(np.isfinite(vertices)):
        raise InvalidMesh("the mesh has vertices at infinity or NaN coordinates")
    visual = None
    if keep_uv:
        uv = np.concatenate([part.uv for part in parts if part.uv is not None])
        if np.all(np.isfinite(uv)):
            visual = trimesh.visual.TextureVisuals(uv=uv)
        else:
            notes.append("its UVs hold NaN or infinite values: the mesh gets a new UV atlas")
    return trimesh.Trimesh(vertices=vertices, faces=faces, visual=visual, process=False)


# --- 6-8. limits, cleaning, frame -----------------------------------------------------------------------------------


def _within_face_limit(mesh: trimesh.Trimesh, limits: MeshLimits, name: str, notes: list[str]) -> trimesh.Trimesh:
    faces = len(mesh.faces)
    if faces <= limits.max_faces:
        return mesh
    if not limits.decimate:
        raise MeshTooLarge(
            f"{name} has {faces:,} faces; the most we texture is {limits.max_faces:,}. Decimate it to "
            f"{limits.max_faces:,} faces (retexture --decimate, or decimate=true in the API: its UVs are then "
            "replaced by a new atlas), or simplify it in a 3D tool first"
        )
    had_uv = getattr(mesh.visual, "uv", None) is not None
    simplified = mesh.simplify_quadric_decimation(face_count=limits.max_faces)
    lost = "; its UVs were dropped (a new atlas is made)" if had_uv else ""
    notes.append(f"decimated from {faces:,} to {len(simplified.faces):,} faces{lost}")
    return simplified


def _clean(mesh: trimesh.Trimesh, name: str, notes: list[str]) -> trimesh.Trimesh:
    import trimesh

    good = mesh.nondegenerate_faces(height=1e-12)
    if not good.any():
        raise InvalidMesh(f"{name}: every face is degenerate (zero area): there is no surface to texture")
    if not good.all():
        notes.append(f"dropped {int((~good).sum()):,} degenerate (zero-area) faces")
        mesh.update_faces(good)
        mesh.remove_unreferenced_vertices()
    # Orientation and manifoldness are properties of the surface, not of the UV-split vertices: check a welded copy.
    welded = trimesh.Trimesh(vertices=mesh.vertices, faces=mesh.faces, process=True)
    counts = np.unique(welded.edges_sorted, axis=0, return_counts=True)[1]
    if np.any(counts > 2):
        notes.append(f"{int(np.sum(counts > 2)):,} non-manifold edges (kept: texturing does not need a manifold)")
    if welded.is_watertight and welded.is_winding_consistent and welded.volume < 0:
        mesh.invert()
        notes.append("the mesh was inside-out (closed, normals pointing in): its faces were flipped")
    elif not welded.is_watertight:
        notes.append("the mesh is open: its faces are textured from both sides")
    return mesh


def _normalise(mesh: trimesh.Trimesh, up_axis: str, notes: list[str]) -> NDArray[np.float64]:
    """Turn ``mesh`` y-up, centre it, scale its longest side to 1; return the matrix that undoes all of it."""
    to_product = Z_UP_TO_Y_UP.copy() if up_axis == "z" else np.eye(4)
    mesh.apply_transform(to_product)
    lower, upper = mesh.bounds
    extent = float(np.max(upper - lower))
    if not np.isfinite(extent) or extent <= 0:
        raise InvalidMesh("the mesh has no extent (all its vertices are at one point)")
    centre = (lower + upper) / 2.0
    if np.linalg.norm(centre) > FAR_FROM_ORIGIN * extent:
        notes.append(f"the mesh was far from the origin (centre {np.round(centre, 3).tolist()}): centred")
    if not 1.0 / ODD_SCALE <= extent <= ODD_SCALE:
        notes.append(f"the mesh was {extent:.4g} units across: scaled to 1 (to_source restores it)")
    scale_translate = np.diag([1.0 / extent, 1.0 / extent, 1.0 / extent, 1.0])
    scale_translate[:3, 3] = -centre / extent
    mesh.apply_transform(scale_translate)
    return np.asarray(np.linalg.inv(scale_translate @ to_product))
