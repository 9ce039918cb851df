"""Stage: the textured GLB → N rendered views around it + one contact sheet PNG.

The same renderer for every engine's output (``alch3mist.mesh.render``: VTK on EGL, offscreen, in a child process).
Default: 8 azimuths −180 … 135 in steps of 45°, 15° above the horizon, 512² each.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from ..errors import InvalidRequest
from ..mesh.render import ViewSpec, render_glb, turntable
from .progress import StageControl

logger = logging.getLogger(__name__)

DEFAULT_VIEWS = 8
DEFAULT_SIZE = 512
ELEVATION_DEG = 15.0
MAX_VIEWS = 64
MIN_SIZE, MAX_SIZE = 64, 2048
VIEWS_DIR = "views"
CONTACT_SHEET = "contact_sheet.png"
SHEET_TILE = 256  # contact-sheet thumbnails are at most this wide
SHEET_MAX_COLUMNS = 4
LABEL_HEIGHT = 22
SHEET_BACKGROUND = (255, 255, 255)
LABEL_COLOUR = (60, 60, 60)


@dataclass
class MultiviewResult:
    """The stage's output: one PNG per camera, in turntable order, and the labelled contact sheet of them."""

    views: list[Path]
    """``views/view_NN.png``, azimuth −180° first, each ``size``² on a transparent background."""
    contact_sheet: Path
    """``contact_sheet.png``: the views as thumbnails in a grid, each labelled with its camera."""
    seconds: float
    """Wall time of the stage (rendering dominates)."""


class MultiviewStage:
    """Renders a GLB from ``views`` azimuths and lays the views out on a labelled contact sheet."""

    def __init__(self, *, elevation: float = ELEVATION_DEG, timeout_s: float = 300.0) -> None:
        self.elevation = elevation
        self.timeout_s = timeout_s

    def run(
        self,
        glb_path: Path,
        *,
        views: int = DEFAULT_VIEWS,
        size: int = DEFAULT_SIZE,
        out_dir: Path,
        control: StageControl,
    ) -> MultiviewResult:
        started = time.perf_counter()
        # 1. Check inputs
        self.check_inputs(views, size)
        control.raise_if_cancelled()

        # 2. Plan the cameras
        cameras = turntable(views, elevation=self.elevation)
        control.report(0.0, f"rendering {views} views")

        # 3. Render, one progress tick per view; cancelling kills the renderer (checked every 0.2 s)
        def on_view(index: int, path: Path) -> None:
            control.report((index + 1) / (views + 1), f"view {index + 1}/{views}")
            control.raise_if_cancelled()

        paths = render_glb(
            glb_path,
            cameras,
            size=size,
            out_dir=out_dir / VIEWS_DIR,
            on_view=on_view,
            cancel=control.cancel,
            timeout_s=self.timeout_s,
        )

        # 4. Contact sheet
        sheet = make_contact_sheet(paths, [c.label for c in cameras], out_dir / CONTACT_SHEET)
        seconds = time.perf_counter() - started
        control.report(1.0, f"{views} views in {seconds:.1f} s")
        logger.info("multiview: %d views of %s at %d² in %.2f s", views, glb_path.name, size, seconds)
        return MultiviewResult(views=paths, contact_sheet=sheet, seconds=seconds)

    @staticmethod
    def check_inputs(views: int, size: int) -> None:
        if not 1 <= views <= MAX_VIEWS:
            raise InvalidRequest(f"views must be between 1 and {MAX_VIEWS}, got {views}")
        if not MIN_SIZE <= size <= MAX_SIZE:
            raise InvalidRequest(f"view size must be between {MIN_SIZE} and {MAX_SIZE} px, got {size}")


def sheet_grid(count: int) -> tuple[int, int]:
    """(columns, rows): at most 4 columns, rows as even as possible (8 → 4×2, 6 → 3×2, 5 → 3×2)."""
    rows = math.ceil(count / SHEET_MAX_COLUMNS)
    return math.ceil(count / rows), rows


def make_contact_sheet(views: list[Path], labels: list[str], out_path: Path) -> Path:
    """Thumbnails of ``views`` in a grid, each with its label underneath, on white; written as PNG to ``out_path``."""
    columns, rows = sheet_grid(len(views))
    with Image.open(views[0]) as first:
        tile = min(first.width, SHEET_TILE)
    sheet = Image.new("RGB", (columns * tile, rows * (tile + LABEL_HEIGHT)), SHEET_BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=LABEL_HEIGHT * 0.6)
    for index, (path, label) in enumerate(zip(views, labels, strict=True)):
        x, y = (index % columns) * tile, (index // columns) * (tile + LABEL_HEIGHT)
        with Image.open(path) as view:
            sheet.paste(view.convert("RGB").resize((tile, tile), Image.Resampling.LANCZOS), (x, y))
        draw.text((x + tile / 2, y + tile + LABEL_HEIGHT / 2), label, fill=LABEL_COLOUR, font=font, anchor="mm")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out_path)
    return out_path


__all__ = ["MultiviewResult", "MultiviewStage", "ViewSpec", "make_contact_sheet", "sheet_grid"]
