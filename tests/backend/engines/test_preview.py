"""The built-in preview engine: silhouette inflation of a segmented object into a closed, textured GLB."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import trimesh
from alch3mist.engines.base import PREVIEW_LABEL, EngineParams
from alch3mist.engines.preview import MAX_CELLS, PreviewEngine
from alch3mist.errors import Cancelled, InvalidRequest
from alch3mist.mesh.glb import read_asset
from alch3mist.mesh.validate import validate_glb
from alch3mist.stages.progress import StageControl
from PIL import Image

from .servers import object_image


def _generate(tmp_path: Path, image: Image.Image) -> tuple[Path, dict[str, object]]:
    out = tmp_path / "preview.glb"
    result = PreviewEngine().generate(image, EngineParams(), out, StageControl())
    assert result.engine == "preview" and result.is_preview and result.variant == PREVIEW_LABEL
    return out, result.details


def test_preview_makes_a_closed_textured_labelled_glb(tmp_path: Path) -> None:
    started = time.perf_counter()
    out, metadata = _generate(tmp_path, object_image(1024))
    seconds = time.perf_counter() - started

    assert metadata["segmentation"] == "border-colour"
    assert metadata["closed"] is True
    assert 5_000 < int(metadata["faces"]) <= 4 * MAX_CELLS  # type: ignore[call-overload]
    assert seconds < 20, f"preview engine took {seconds:.1f} s on a 1024² image"

    mesh = next(iter(_load(out, force="scene").geometry.values()))
    assert isinstance(mesh.visual, trimesh.visual.TextureVisuals)
    assert mesh.visual.uv is not None and len(mesh.visual.uv) == len(mesh.vertices)
    assert (mesh.visual.uv >= 0).all() and (mesh.visual.uv <= 1).all()
    texture = getattr(mesh.visual.material, "baseColorTexture", None)
    assert texture is not None and texture.size == (1024, 512)
    welded = mesh.copy()
    welded.merge_vertices(merge_tex=True, merge_norm=True)
    assert welded.is_watertight and welded.is_winding_consistent and welded.volume > 0

    asset = read_asset(out)
    assert PREVIEW_LABEL in asset["generator"]
    assert asset["extras"]["alch3mist"]["is_preview"] is True
    assert validate_glb(out).errors == 0


def test_preview_front_is_textured_from_the_image(tmp_path: Path) -> None:
    out, _ = _generate(tmp_path, object_image(512))
    mesh = next(iter(_load(out, force="scene").geometry.values()))
    atlas = np.asarray(mesh.visual.material.baseColorTexture.convert("RGB"), dtype=np.float64)
    side = atlas.shape[0]
    front, back = atlas[:, :side], atlas[:, side:]
    # the body is green (60, 140, 70) with darker stripes: the front's centre is green, the back a softer copy
    centre = front[side // 2 - 20 : side // 2 + 20, side // 3 : side // 2].reshape(-1, 3).mean(axis=0)
    assert centre[1] > centre[0] + 30 and centre[1] > centre[2] + 20
    assert np.abs(back.mean(axis=(0, 1)) - front.mean(axis=(0, 1))).max() < 40
    # no background (near-white) colour bled into the object texture
    assert (front.min(axis=2) > 235).mean() < 0.01


def test_preview_uses_the_alpha_channel_when_there_is_one(tmp_path: Path) -> None:
    _, metadata = _generate(tmp_path, object_image(256, mode="RGBA"))
    assert metadata["segmentation"] == "alpha"


def test_preview_refuses_an_image_that_is_all_background(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest, match="no object found"):
        _generate(tmp_path, Image.new("RGB", (512, 512), (250, 250, 250)))


def test_preview_stops_when_cancelled(tmp_path: Path) -> None:
    control = StageControl(cancel=threading.Event())
    control.cancel.set()
    with pytest.raises(Cancelled):
        PreviewEngine().generate(object_image(256), EngineParams(), tmp_path / "x.glb", control)
    assert not (tmp_path / "x.glb").exists()


def test_preview_health_is_always_available() -> None:
    health = PreviewEngine().health()
    assert health.available and health.is_preview and PREVIEW_LABEL in health.detail


def _load(path: Path, **kwargs: Any) -> Any:
    """trimesh.load, untyped (its declared return type is the Geometry base class)."""
    return trimesh.load(path, **kwargs)
