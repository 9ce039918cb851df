"""Domain types shared by the chain, the workers and the API — below the API edge.

The HTTP schemas (``api/schemas.py``) import these; nothing here imports from ``api``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from pydantic import BaseModel, Field

from .engines.base import EngineHealth

if TYPE_CHECKING:
    from .chain import ChainEvent, ChainRules, GenerationRequest, Manifest

__all__ = [
    "STAGES",
    "STAGE_LABELS",
    "ChainCatalog",
    "ChainInfo",
    "GenerationChain",
    "JobStatus",
    "LoraChoice",
    "LoraInfo",
    "StageName",
]

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
# The chain's stages in order. "texture" paints a given mesh (the retexture flow skips base_image, material_edit and
# mesh) or an engine's untextured one; a run may skip stages, never reorder them.
StageName = Literal["rewrite", "base_image", "material_edit", "mesh", "texture", "views", "viewer"]
STAGES: tuple[StageName, ...] = ("rewrite", "base_image", "material_edit", "mesh", "texture", "views", "viewer")
# What a person is told while a stage runs (the chain's ``stage`` events; the plugins keep marked copies).
STAGE_LABELS: dict[StageName, str] = {
    "rewrite": "Writing the prompts",
    "base_image": "Painting the base image (FLUX.1-dev)",
    "material_edit": "Applying the material (FLUX.1 Kontext + Alch3mist LoRA)",
    "mesh": "Building the 3D mesh",
    "texture": "Texturing the mesh (FLUX.1 Kontext + Alch3mist LoRA on a grid of views)",
    "views": "Rendering the views",
    "viewer": "Preparing the 3D viewer",
}


class LoraChoice(BaseModel):
    name: str | None = Field(None, description="LoRA in the LoRA folder; None = the server default.")
    scale: float = Field(1.0, ge=0.0, le=2.0, description="0 runs the edit without the LoRA (baseline).")


class LoraInfo(BaseModel):
    name: str
    file: str
    size_bytes: int | None = Field(None, description="File size; unknown (null) for a LoRA on a ComfyUI server.")
    rank: int | None = None


class ChainInfo(BaseModel):
    """What the loaded chain runs: preset, device, memory plan, models, 3D engines with their health, LoRAs."""

    preset: Literal["tiny", "full"]
    device: str
    memory_plan: str
    models: dict[str, str]
    engines: list[EngineHealth]
    default_engine: str
    loras: list[LoraInfo]
    default_lora: str | None
    defaults: dict[str, Any]
    texture_engines: list[EngineHealth] = Field(
        default_factory=list, description="Texture engines (alch3mist built in; hunyuan3d, trellis2 when configured)."
    )
    default_texture_engine: str = Field("alch3mist", description="The texture engine a job gets when it names none.")


class ChainCatalog(Protocol):
    """What the API needs of the chain without running it: what it runs, and whether a request would fail anyway.

    The loaded chain is one; so is the API process's view of the chain in the worker process (``jobs.worker``)."""

    def info(self) -> ChainInfo: ...

    def validate(self, req: GenerationRequest) -> None: ...


class GenerationChain(ChainCatalog, Protocol):
    """The loaded chain (``alch3mist.chain.Chain``): what the worker process runs jobs on."""

    def rules(self) -> ChainRules: ...

    def loras(self) -> list[LoraInfo]: ...

    def run(
        self,
        req: GenerationRequest,
        out_dir: Path,
        on_event: Callable[[ChainEvent], None],
        cancel: threading.Event | None = None,
    ) -> Manifest: ...
