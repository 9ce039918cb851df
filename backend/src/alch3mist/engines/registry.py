"""Which image-to-3D engines this backend has, built from ``Settings``, and which one a job gets by default."""

from __future__ import annotations

from typing import Literal

from ..config import Settings
from .base import ImageTo3DEngine
from .hunyuan3d import Hunyuan3DEngine
from .hunyuan3d_local import Hunyuan3DLocalEngine
from .preview import PreviewEngine
from .trellis import TrellisEngine, trellis_importable


def build_engines(settings: Settings) -> dict[str, ImageTo3DEngine]:
    """Always ``preview``; ``trellis`` with a URL (or the trellis package importable); ``hunyuan3d`` with a URL;
    ``hunyuan3d-local`` when enabled (its model loads on its first job, not here)."""
    engines: dict[str, ImageTo3DEngine] = {"preview": PreviewEngine()}
    if settings.trellis_url or trellis_importable():
        engines["trellis"] = TrellisEngine(settings.trellis_url, timeout_s=settings.engine_timeout_s)
    if settings.hunyuan3d_url:
        engines["hunyuan3d"] = Hunyuan3DEngine(settings.hunyuan3d_url, timeout_s=settings.engine_timeout_s)
    if settings.hunyuan3d_local:
        engines["hunyuan3d-local"] = Hunyuan3DLocalEngine(settings)
    return engines


def default_engine(settings: Settings, preset: Literal["tiny", "full"]) -> str:
    """``settings.engine_3d`` unless it is ``auto``: then trellis on the full preset when configured, else preview."""
    if settings.engine_3d != "auto":
        return settings.engine_3d
    if preset == "full" and (settings.trellis_url or trellis_importable()):
        return "trellis"
    return "preview"
