"""The one interface every image-to-3D engine implements: image in → textured GLB + metadata out.

Engines write a raw GLB; the image-to-3D stage post-processes and validates it. Shared helpers for the engines live
here too: ``check_glb`` (is what an engine produced a usable GLB?) and ``run_with_deadline`` (poll a background call,
honouring cancellation and a timeout).
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from PIL import Image
from pydantic import BaseModel, Field

from ..config import MAX_SEED
from ..errors import EngineUnavailable, MeshError
from ..stages.progress import StageControl

PREVIEW_LABEL = "preview engine"
GLB_MAGIC = b"glTF"


class EngineParams(BaseModel):
    """Per-job knobs; an engine ignores the ones it has no use for (and says so in its metadata)."""

    seed: int = Field(0, ge=0, le=MAX_SEED)
    texture_size: int = Field(1024, ge=256, le=4096)
    simplify: float = Field(0.95, ge=0.0, lt=1.0, description="Fraction of faces to remove (TRELLIS' mesh_simplify).")
    target_faces: int | None = Field(None, ge=100, description="Face budget (Hunyuan3D face_count, post-processing).")
    ss_steps: int = Field(12, ge=1, le=100, description="Sparse-structure sampling steps (TRELLIS stage 1).")
    ss_guidance: float = Field(7.5, ge=0.0, le=20.0)
    slat_steps: int = Field(12, ge=1, le=100, description="Structured-latent sampling steps (TRELLIS stage 2).")
    slat_guidance: float = Field(3.0, ge=0.0, le=20.0)
    octree_resolution: int = Field(256, ge=64, le=512, description="Hunyuan3D shape resolution.")
    num_inference_steps: int = Field(
        20, ge=1, le=100, description="Hunyuan3D shape steps (its 2.1 server accepts at most 20)."
    )
    guidance_scale: float = Field(5.0, ge=0.1, le=20.0, description="Hunyuan3D guidance.")
    texture: bool = Field(True, description="Hunyuan3D: paint a texture (needs its texture model on the server).")


@dataclass
class EngineResult:
    glb_path: Path
    engine: str
    is_preview: bool
    metadata: dict[str, Any] = field(default_factory=dict)


class EngineHealth(BaseModel):
    name: str
    available: bool
    url: str | None = None
    detail: str = ""
    is_preview: bool = False


class ImageTo3DEngine(Protocol):
    name: str
    is_preview: bool

    def health(self) -> EngineHealth: ...

    def generate(self, image: Image.Image, params: EngineParams, out_path: Path, control: StageControl) -> EngineResult:
        """Write a textured GLB to ``out_path``; raise ``EngineError`` (naming engine and URL) on failure."""
        ...


def check_glb(data: bytes, engine: str) -> None:
    """Raise ``MeshError`` naming ``engine`` unless ``data`` is a GLB holding at least one triangle."""
    if not data:
        raise MeshError(f"3D engine '{engine}' returned an empty file instead of a GLB")
    if data[:4] != GLB_MAGIC:
        raise MeshError(f"3D engine '{engine}' returned something that is not a GLB (starts with {data[:16]!r})")
    import trimesh  # heavy: only when an engine has produced something

    try:
        scene = trimesh.load(io.BytesIO(data), file_type="glb", force="scene")
    except Exception as exc:  # trimesh raises many types for a corrupt file
        raise MeshError(f"3D engine '{engine}' returned a GLB that cannot be read: {exc}") from exc
    geometries: list[Any] = list(getattr(scene, "geometry", {}).values())
    faces = sum(len(getattr(g, "faces", ())) for g in geometries)
    if faces == 0:
        raise MeshError(f"3D engine '{engine}' returned a GLB with no triangles")


def image_png_bytes(image: Image.Image) -> bytes:
    """The image as PNG bytes (RGBA kept, other modes converted to RGB)."""
    buffer = io.BytesIO()
    image.convert("RGBA" if image.mode in ("RGBA", "LA", "P") else "RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def wait_for(
    done: Callable[[], bool],
    *,
    engine: str,
    url: str | None,
    what: str,
    timeout_s: float,
    control: StageControl,
    on_cancel: Callable[[], object] | None = None,
    poll_s: float = 0.1,
) -> None:
    """Poll ``done()`` until it is true; ``Cancelled`` on cancel, ``EngineUnavailable`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not done():
        if control.cancel.is_set():
            if on_cancel is not None:
                on_cancel()
            control.raise_if_cancelled()
        if time.monotonic() > deadline:
            if on_cancel is not None:
                on_cancel()
            raise EngineUnavailable(engine, url, f"{what} timed out after {timeout_s:.0f} s")
        time.sleep(poll_s)
