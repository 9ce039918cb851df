"""The one interface every image-to-3D engine implements: image in → textured GLB + metadata out."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from PIL import Image
from pydantic import BaseModel, Field

from ..stages.progress import StageControl


class EngineParams(BaseModel):
    """Per-job knobs; an engine ignores the ones it has no use for (and says so in its metadata)."""

    seed: int = 0
    texture_size: int = Field(1024, ge=256, le=4096)
    simplify: float = Field(0.95, ge=0.0, lt=1.0, description="Fraction of faces to remove (TRELLIS' mesh_simplify).")
    target_faces: int | None = Field(None, ge=100, description="Face budget (Hunyuan3D face_count).")
    ss_steps: int = Field(12, ge=1, le=100, description="Sparse-structure sampling steps (TRELLIS stage 1).")
    ss_guidance: float = Field(7.5, ge=0.0, le=20.0)
    slat_steps: int = Field(12, ge=1, le=100, description="Structured-latent sampling steps (TRELLIS stage 2).")
    slat_guidance: float = Field(3.0, ge=0.0, le=20.0)
    octree_resolution: int = Field(256, ge=64, le=512, description="Hunyuan3D shape resolution.")
    num_inference_steps: int = Field(30, ge=1, le=100, description="Hunyuan3D shape steps.")
    guidance_scale: float = Field(5.0, ge=0.0, le=20.0, description="Hunyuan3D guidance.")


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
