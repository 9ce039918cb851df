"""Reading and writing GLB files with trimesh, with our label in ``asset.generator`` / ``asset.extras``."""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import MeshError

if TYPE_CHECKING:
    import trimesh

GENERATOR = "material-alch3mist"


def load_glb(path: Path, what: str = "GLB") -> trimesh.Scene:
    """The file as a trimesh Scene; ``MeshError`` when it is unreadable or holds no triangles."""
    import trimesh

    data = path.read_bytes()
    if not data:
        raise MeshError(f"{what} {path.name} is empty")
    try:
        scene = trimesh.load(io.BytesIO(data), file_type="glb", force="scene")
    except Exception as exc:  # trimesh raises many types for a corrupt file
        raise MeshError(f"{what} {path.name} cannot be read: {exc}") from exc
    if not isinstance(scene, trimesh.Scene) or not any(len(getattr(g, "faces", ())) for g in scene.geometry.values()):
        raise MeshError(f"{what} {path.name} holds no triangles")
    return scene


def export_glb(
    scene: trimesh.Scene, path: Path, *, generator: str = GENERATOR, extras: dict[str, Any] | None = None
) -> int:
    """Write ``scene`` as a GLB with our generator string and ``asset.extras``; returns the byte count."""

    def label(tree: dict[str, Any]) -> None:
        tree.setdefault("asset", {"version": "2.0"})
        tree["asset"]["generator"] = generator
        if extras:
            tree["asset"]["extras"] = extras

    data = scene.export(file_type="glb", include_normals=True, tree_postprocessor=label)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return len(data)


def read_asset(path: Path) -> dict[str, Any]:
    """The ``asset`` object of a GLB's JSON chunk (generator, extras…), without loading the mesh."""
    import json
    import struct

    data = path.read_bytes()
    if data[:4] != b"glTF" or len(data) < 20:
        raise MeshError(f"{path.name} is not a GLB")
    (json_length,) = struct.unpack_from("<I", data, 12)
    tree = json.loads(data[20 : 20 + json_length])
    asset = tree.get("asset", {})
    return asset if isinstance(asset, dict) else {}
