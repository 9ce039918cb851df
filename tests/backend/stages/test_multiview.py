"""MultiviewStage: real renders of a small trimesh PBR GLB, progress, cancellation, contact sheet, bad input."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import trimesh
from alch3mist.errors import Cancelled, InvalidRequest, MeshError
from alch3mist.stages.multiview import LABEL_HEIGHT, MultiviewStage, make_contact_sheet, sheet_grid
from alch3mist.stages.progress import StageControl
from PIL import Image


@pytest.fixture(scope="module")
def textured_box(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1×1×1 box with a PNG base-colour texture: red where it faces +Z (the front), blue at the back."""
    pixels = np.zeros((32, 32, 3), np.uint8)
    pixels[:16] = (220, 30, 30)
    pixels[16:] = (30, 40, 220)
    box = trimesh.creation.box(extents=(1.0, 1.0, 1.0))
    uv = np.where(box.vertices[:, 2:3] > 0, [[0.5, 0.75]], [[0.5, 0.25]])
    material = trimesh.visual.material.PBRMaterial(baseColorTexture=Image.fromarray(pixels), metallicFactor=0.0)
    box.visual = trimesh.visual.TextureVisuals(uv=uv, material=material)
    path = tmp_path_factory.mktemp("glb") / "box.glb"
    box.export(path)
    return path


def test_eight_views_and_a_contact_sheet(textured_box: Path, tmp_path: Path) -> None:
    ticks: list[tuple[float, str]] = []
    control = StageControl(on_progress=lambda fraction, message: ticks.append((fraction, message)))

    result = MultiviewStage().run(textured_box, views=8, size=64, out_dir=tmp_path, control=control)

    assert result.views == [tmp_path / "views" / f"view_{i:02d}.png" for i in range(8)]
    assert all(Image.open(p).size == (64, 64) for p in result.views)
    front = np.asarray(Image.open(result.views[4]).convert("RGB")).astype(int)  # azimuth 0
    back = np.asarray(Image.open(result.views[0]).convert("RGB")).astype(int)  # azimuth −180
    assert front[32, 32, 0] > front[32, 32, 2] + 60
    assert back[32, 32, 2] > back[32, 32, 0] + 60
    assert Image.open(result.contact_sheet).size == (4 * 64, 2 * (64 + LABEL_HEIGHT))
    fractions = [f for f, _ in ticks]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert sum("view" in message for _, message in ticks) >= 8
    assert 0 < result.seconds < 120


def test_cancel_between_views(textured_box: Path, tmp_path: Path) -> None:
    cancel = threading.Event()

    def on_progress(fraction: float, message: str) -> None:
        if message.startswith("view 2/"):
            cancel.set()

    control = StageControl(on_progress=on_progress, cancel=cancel)
    with pytest.raises(Cancelled):
        MultiviewStage().run(textured_box, views=8, size=64, out_dir=tmp_path, control=control)
    assert len(list((tmp_path / "views").glob("*.png"))) < 8
    assert not (tmp_path / "contact_sheet.png").exists()


def test_cancelled_before_start_renders_nothing(textured_box: Path, tmp_path: Path) -> None:
    control = StageControl()
    control.cancel.set()
    with pytest.raises(Cancelled):
        MultiviewStage().run(textured_box, views=8, size=64, out_dir=tmp_path, control=control)
    assert not (tmp_path / "views").exists()


@pytest.mark.parametrize(("views", "size"), [(0, 512), (65, 512), (8, 8), (8, 10_000)])
def test_bad_options_are_invalid_requests(views: int, size: int, textured_box: Path, tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest):
        MultiviewStage().run(textured_box, views=views, size=size, out_dir=tmp_path, control=StageControl())


def test_not_a_glb_is_a_mesh_error(tmp_path: Path) -> None:
    bogus = tmp_path / "model.glb"
    bogus.write_text("{}")
    with pytest.raises(MeshError, match="not a binary glTF"):
        MultiviewStage().run(bogus, views=2, size=64, out_dir=tmp_path, control=StageControl())


@pytest.mark.parametrize(
    ("count", "grid"), [(1, (1, 1)), (4, (4, 1)), (5, (3, 2)), (6, (3, 2)), (8, (4, 2)), (12, (4, 3))]
)
def test_sheet_grid(count: int, grid: tuple[int, int]) -> None:
    assert sheet_grid(count) == grid


def test_contact_sheet_labels_are_drawn(tmp_path: Path) -> None:
    views = []
    for i in range(3):
        views.append(tmp_path / f"v{i}.png")
        Image.new("RGB", (300, 300), (200, 200, 200)).save(views[-1])
    sheet = Image.open(make_contact_sheet(views, ["az −180°", "az 0°", "az 90°"], tmp_path / "sheet.png"))
    assert sheet.size == (3 * 256, 256 + LABEL_HEIGHT)  # thumbnails capped at 256 px
    label_band = np.asarray(sheet.convert("L"))[256:, :]
    assert (label_band < 150).sum() > 50  # dark text on white
