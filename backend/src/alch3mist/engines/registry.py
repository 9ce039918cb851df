"""Which image-to-3D engines this backend has, built from ``Settings``, and which one a job gets by default.

Each engine has one builder in ``BUILDERS``: it returns the engine when the settings (or installed packages) make it
available, else None. A new engine is one builder function and one line in ``BUILDERS``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from ..config import Settings
from .base import ImageTo3DEngine
from .hunyuan3d import Hunyuan3DEngine
from .hunyuan3d_local import Hunyuan3DLocalEngine
from .preview import PreviewEngine
from .trellis import TrellisEngine, trellis2_importable, trellis_importable


def _preview(settings: Settings) -> ImageTo3DEngine | None:
    return PreviewEngine()


def _trellis(settings: Settings) -> ImageTo3DEngine | None:
    """TRELLIS / TRELLIS.2 through its Gradio app, or in-process when the trellis2 / trellis package is installed."""
    if settings.trellis_url or trellis_in_process():
        return TrellisEngine(settings.trellis_url, timeout_s=settings.engine_timeout_s)
    return None


def _hunyuan3d(settings: Settings) -> ImageTo3DEngine | None:
    if not settings.hunyuan3d_url:
        return None
    return Hunyuan3DEngine(
        settings.hunyuan3d_url,
        timeout_s=settings.engine_timeout_s,
        shape_deadline_s=settings.hunyuan3d_shape_deadline_s,
        texture_deadline_s=settings.hunyuan3d_texture_deadline_s,
    )


def _hunyuan3d_local(settings: Settings) -> ImageTo3DEngine | None:
    return Hunyuan3DLocalEngine(settings) if settings.hunyuan3d_local else None


BUILDERS: dict[str, Callable[[Settings], ImageTo3DEngine | None]] = {
    "preview": _preview,
    "trellis": _trellis,
    "hunyuan3d": _hunyuan3d,
    "hunyuan3d-local": _hunyuan3d_local,
}


def trellis_in_process() -> bool:
    return trellis2_importable() or trellis_importable()


def build_engines(settings: Settings) -> dict[str, ImageTo3DEngine]:
    """Always ``preview``; ``trellis`` with a URL (or a TRELLIS package importable); ``hunyuan3d`` with a URL;
    ``hunyuan3d-local`` when enabled (its model loads on its first job, not here)."""
    engines = {name: build(settings) for name, build in BUILDERS.items()}
    return {name: engine for name, engine in engines.items() if engine is not None}


def default_engine(settings: Settings, preset: Literal["tiny", "full"]) -> str:
    """``settings.engine_3d`` unless it is ``auto``: then trellis on the full preset when configured, else preview."""
    if settings.engine_3d != "auto":
        return settings.engine_3d
    if preset == "full" and (settings.trellis_url or trellis_in_process()):
        return "trellis"
    return "preview"
