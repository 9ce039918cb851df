"""The texture engines: everything that paints a given mesh, behind one interface, ``TextureEngine``.

- ``alch3mist`` (always; the default) — the built-in method, ``stages/texture.py``: multi-view FLUX.1 Kontext + LoRA
  edits projected into a UV texture.
- ``hunyuan3d`` — Hunyuan3D-2.0's api_server ``mesh`` field (``ALCH3MIST_HUNYUAN3D_URL``; the server must run with
  ``--enable_tex``), through ``texturing/remote.py``.
- ``trellis2`` — TRELLIS.2's texturing app, ``app_texturing.py`` (``ALCH3MIST_TRELLIS2_TEXTURING_URL``), likewise.

The chain's texture step and ``alch3mist retexture --texture-engine`` pick one by name.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol, get_args

from ..config import TextureEngineName
from ..engines.base import EngineHealth
from ..stages.progress import StageControl
from ..stages.texture import ENGINE_NAME, TextureJob, TextureResult, TextureStage

if TYPE_CHECKING:
    from ..config import Settings
    from ..engines.base import ImageTo3DEngine

__all__ = ["TEXTURE_ENGINES", "TextureEngine", "TextureEngineName", "build_texture_engines"]

TEXTURE_ENGINES: tuple[TextureEngineName, ...] = get_args(TextureEngineName)


class TextureEngine(Protocol):
    """Paints a given mesh: a ``TextureJob`` in, a ``TextureResult`` (a validated ``model.glb`` …) out."""

    name: str

    def health(self) -> EngineHealth: ...

    def texture(self, job: TextureJob, out_dir: Path, control: StageControl) -> TextureResult:
        """Write ``out_dir/model.glb`` (+ ``texture.png``, ``texture_views/``); errors as the stages raise them."""
        ...


def build_texture_engines(
    settings: Settings, stage: TextureStage, engines: dict[str, ImageTo3DEngine] | None = None
) -> dict[str, TextureEngine]:
    """Always ``alch3mist``; ``hunyuan3d`` with a Hunyuan3D URL (sharing the 3D engine's client, so its texture
    probe is made once); ``trellis2`` with a TRELLIS.2 texturing-app URL."""
    from ..engines.hunyuan3d import Hunyuan3DEngine, Hunyuan3DPainter
    from ..engines.trellis2_texturing import Trellis2Painter
    from .remote import RemoteTexture

    found: dict[str, TextureEngine] = {ENGINE_NAME: stage}
    if settings.hunyuan3d_url:
        shared = (engines or {}).get("hunyuan3d")
        client = shared if isinstance(shared, Hunyuan3DEngine) else None
        client = client or Hunyuan3DEngine(settings.hunyuan3d_url, timeout_s=settings.engine_timeout_s)
        found["hunyuan3d"] = RemoteTexture(Hunyuan3DPainter(client), stage)
    if settings.trellis2_texturing_url:
        painter = Trellis2Painter(settings.trellis2_texturing_url, timeout_s=settings.engine_timeout_s)
        found["trellis2"] = RemoteTexture(painter, stage)
    return found
