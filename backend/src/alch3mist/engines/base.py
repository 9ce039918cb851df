"""The one interface every image-to-3D engine implements: image in → textured GLB + an ``EngineResult`` out — and
``MeshPainter``, what a remote texture engine implements: a given mesh + a picture in → a textured GLB out.

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
from typing import Any, Literal, Protocol

from PIL import Image
from pydantic import BaseModel, Field

from ..config import MAX_SEED
from ..errors import EngineUnavailable, MeshError
from ..stages.progress import StageControl

PREVIEW_LABEL = "preview engine"
GLB_MAGIC = b"glTF"

EngineTexture = Literal["engine", "placeholder", "none"]
"""How an engine's mesh is textured — the flag the chain's texture step reads (``GenerationRequest.retexture``):

- ``"engine"``: the engine painted it itself (TRELLIS, Hunyuan3D's paint model, the preview engine's own method);
- ``"placeholder"``: the engine put a stopgap texture on it and knows it is poor (one view projected all round): kept
  only when the texture step does not run;
- ``"none"``: no texture (Hunyuan3D-2.0 started without ``--enable_tex``, a stalled Hunyuan3D-2.1 texture stage).

With ``retexture="auto"`` (the default) the chain textures ``"placeholder"`` and ``"none"`` meshes with its texture
step (``stages/texture.py``); an engine that cannot tell says what ``glb_has_texture`` finds (``"engine"``/``"none"``).
"""


class EngineParams(BaseModel):
    """Per-job knobs. ``None`` means "the engine's own default": an engine sends a value only when the caller set it
    (or the job has a reason, like its seed and texture size), so the app's defaults stand otherwise. Each engine
    says in its ``EngineResult`` what it sent, what it applied, and which defaults it left alone."""

    seed: int = Field(0, ge=0, le=MAX_SEED)
    texture_size: int = Field(1024, ge=256, le=4096, description="The job's texture side (sent, and the cap).")
    texture: bool = Field(True, description="Ask the engine for a textured mesh (Hunyuan3D can skip texturing).")
    simplify: float | None = Field(None, ge=0.0, lt=1.0, description="Fraction of faces to remove (TRELLIS).")
    target_faces: int | None = Field(None, ge=100, description="Face budget (TRELLIS.2, Hunyuan3D, post-processing).")
    resolution: int | None = Field(None, description="TRELLIS.2's resolution (512, 1024, 1536).")
    ss_steps: int | None = Field(None, ge=1, le=100, description="Sparse-structure sampling steps (TRELLIS stage 1).")
    ss_guidance: float | None = Field(None, ge=0.0, le=20.0, description="Sparse-structure guidance.")
    slat_steps: int | None = Field(
        None, ge=1, le=100, description="Structured-latent steps (TRELLIS stage 2; TRELLIS.2 shape and material)."
    )
    slat_guidance: float | None = Field(
        None, ge=0.0, le=20.0, description="Structured-latent guidance (TRELLIS; TRELLIS.2: shape guidance)."
    )
    octree_resolution: int | None = Field(None, ge=64, le=512, description="Hunyuan3D shape resolution.")
    num_inference_steps: int | None = Field(None, ge=1, le=100, description="Hunyuan3D shape steps.")
    guidance_scale: float | None = Field(None, ge=0.1, le=20.0, description="Hunyuan3D guidance.")
    options: dict[str, float | int | str | bool] = Field(
        default_factory=dict,
        description="Engine parameters by the engine's own names (e.g. TRELLIS.2's tex_slat_guidance_strength).",
    )


@dataclass(frozen=True)
class Clamp:
    """A value the engine would have rejected or snapped, and the value sent instead."""

    name: str
    requested: float | int | str
    sent: float | int | str
    allowed: str  # what the engine declares, e.g. "1–50" or "1024–4096 in steps of 1024"

    def message(self, who: str) -> str:
        return f"{who}: {self.name}={self.requested} is outside what it accepts ({self.allowed}); sent {self.sent}"


@dataclass
class EngineResult:
    """What one engine run made, and exactly what it was asked for.

    Everything here goes into the manifest's ``mesh.engine`` section as it is; the stage and the chain read only the
    typed fields, never ``details``.
    """

    glb_path: Path
    """The raw GLB the engine wrote (the stage post-processes it)."""
    engine: str
    """Registry name: ``preview``, ``trellis``, ``hunyuan3d``…"""
    is_preview: bool
    """True for the built-in CPU preview engine (labelled as such everywhere)."""
    variant: str = ""
    """Which server or pipeline answered: ``TRELLIS``, ``TRELLIS.2``, ``Hunyuan3D-2.0``, ``Hunyuan3D-2.1``…"""
    url: str | None = None
    """The server's URL; None in-process."""
    sent: dict[str, Any] = field(default_factory=dict)
    """Parameters sent, by the engine's own names (clamped values as sent)."""
    applied: dict[str, Any] = field(default_factory=dict)
    """Those of ``sent`` the engine is known to use (Hunyuan3D-2.1's worker ignores most of them)."""
    app_defaults: dict[str, Any] = field(default_factory=dict)
    """Parameters not sent, with the engine's own defaults (what it used instead)."""
    clamps: list[Clamp] = field(default_factory=list)
    """Values moved into the range the engine declares."""
    warnings: list[str] = field(default_factory=list)
    """What a person should know (clamps, ignored options, an untextured result…); they reach the job."""
    texture: EngineTexture = "engine"
    """How the mesh is textured (see ``EngineTexture``): ``"placeholder"`` and ``"none"`` ask for the texture step."""
    glb_bytes: int = 0
    """Size of the raw GLB."""
    method: str = ""
    """How the mesh was made, when that needs saying (the preview engine's algorithm)."""
    details: dict[str, Any] = field(default_factory=dict)
    """Engine-specific facts, recorded in the manifest as they are and never read by key."""

    @property
    def needs_texture(self) -> bool:
        """Whether the chain's texture step should paint this mesh (``retexture="auto"``)."""
        return self.texture != "engine"

    def manifest(self) -> dict[str, Any]:
        """This result as the manifest records it (paths and sizes left to the stage)."""
        data = {k: v for k, v in self.__dict__.items() if k not in ("glb_path", "clamps")}
        return {**data, "clamps": [clamp.__dict__ for clamp in self.clamps]}


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


class PaintParams(BaseModel):
    """Per-job knobs of a mesh painter. Like ``EngineParams``: the seed and texture size are always sent, anything
    else only when the caller set it (``options``, by the engine's own names), so the app's defaults stand."""

    seed: int = Field(0, ge=0, le=MAX_SEED)
    texture_size: int = Field(2048, ge=64, le=4096, description="The job's texture side (sent, clamped to the app's).")
    options: dict[str, float | int | str | bool] = Field(
        default_factory=dict,
        description="Engine parameters by the engine's own names (e.g. TRELLIS.2's tex_slat_sampling_steps).",
    )


class MeshPainter(Protocol):
    """A remote engine that paints a given mesh from a picture of it (Hunyuan3D-2.0's ``mesh`` field, TRELLIS.2's
    texturing app). ``texturing/remote.py`` puts it behind the ``TextureEngine`` interface."""

    name: str

    def health(self) -> EngineHealth: ...

    def paint(
        self, mesh_glb: bytes, picture: Image.Image, params: PaintParams, out_path: Path, control: StageControl
    ) -> EngineResult:
        """Write the painted GLB to ``out_path``; raise ``EngineError`` (naming engine and URL) on failure.

        ``mesh_glb`` is one triangle mesh without node transforms, in our frame (y up, centred, longest side 1)."""
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


def texture_of(data: bytes) -> EngineTexture:
    """``"engine"`` when the GLB carries a texture image, else ``"none"`` (for engines that paint or do not)."""
    return "engine" if glb_has_texture(data) else "none"


def glb_has_texture(data: bytes) -> bool:
    """Whether a GLB carries at least one texture image (read from its JSON chunk; no geometry is loaded)."""
    import json
    import struct

    if len(data) < 20 or data[:4] != GLB_MAGIC:
        return False
    chunk_length, chunk_type = struct.unpack_from("<II", data, 12)
    if chunk_type != 0x4E4F534A:  # "JSON"
        return False
    try:
        document = json.loads(data[20 : 20 + chunk_length])
    except ValueError:
        return False
    return bool(document.get("textures")) and bool(document.get("images"))


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
