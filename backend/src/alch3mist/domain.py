"""Domain types shared by the chain, the workers and the API — below the API edge.

The HTTP schemas (``api/schemas.py``) import these; nothing here imports from ``api``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from .engines.base import EngineHealth

__all__ = ["STAGES", "ChainInfo", "JobStatus", "LoraChoice", "LoraInfo", "StageName"]

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
StageName = Literal["rewrite", "base_image", "material_edit", "mesh", "views", "viewer"]
STAGES: tuple[StageName, ...] = ("rewrite", "base_image", "material_edit", "mesh", "views", "viewer")


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
