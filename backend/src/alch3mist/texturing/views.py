"""The views a mesh is textured from: cameras around it, neutral renders for the edit, and the grid image.

Cameras follow :mod:`alch3mist.mesh.render`'s turntable convention (azimuth 0 looks at the glTF front, +Z), but the
elevation alternates above and below the horizon (+e, −e, +e, …): with every view above it, the bottom of a sphere
below latitude −74° is never seen by 8 views at 15° (≈ 9 % of an equirectangular texture); alternating sees it all
(measured in docs/texturing.md). Orthographic by default: every view has the same scale everywhere, so a texel's
footprint does not depend on its distance, and the grid's tiles show the object at the same size.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from ..mesh.gbuffer import Camera, CameraKind, GBuffer, MeshArrays, render_gbuffers

# The multiview renderer's own camera placement, so perspective texturing views frame the object as its renders do.
from ..mesh.render import VIEW_ANGLE_DEG, ViewSpec, fit_distance, turntable, view_direction
from ..stages.multiview import sheet_grid

__all__ = [
    "BACKGROUND",
    "NeutralRender",
    "RenderedView",
    "orbit_cameras",
    "remove_shading",
    "render_views",
    "split_grid",
    "texturing_views",
    "tile_grid",
]

BACKGROUND = (238, 238, 238)  # the plain light studio background the base images have
BASE_GREY = 0.78  # albedo of the neutral "clay" the views show
AMBIENT = 0.55  # share of light that does not depend on the view angle: soft shape cues, little to bake in
ORTHO_MARGIN = 1.08  # empty space around the object in each view (as render.FRAME_MARGIN)
MIN_SHADING = 0.2


def texturing_views(count: int = 8, *, elevation: float = 20.0) -> list[ViewSpec]:
    """``count`` azimuths evenly spaced from −180°, at elevations alternating ``+elevation`` / ``−elevation``."""
    return [
        ViewSpec(azimuth=view.azimuth, elevation=elevation if index % 2 == 0 else -elevation)
        for index, view in enumerate(turntable(count, elevation=0.0))
    ]


def orbit_cameras(
    points: NDArray[np.floating], views: Sequence[ViewSpec], size: int, kind: CameraKind = "orthographic"
) -> list[Camera]:
    """One camera per view around ``points`` ((N, 3), e.g. the vertices), all framing the object at one scale.

    Perspective cameras use the multiview renderer's field of view and fitted distance; orthographic ones span the
    object's widest extent across all views, plus a margin.
    """
    points = np.asarray(points, dtype=np.float64)
    lower, upper = points.min(axis=0), points.max(axis=0)
    centre = (lower + upper) / 2.0
    radius = float(np.linalg.norm(upper - lower)) / 2.0 or 1.0
    if kind == "perspective":
        distance = fit_distance(points, centre, views)
        return [
            Camera.look_at(
                "perspective",
                eye=centre + distance * np.asarray(view_direction(view)),
                target=centre,
                width=size,
                height=size,
                up=_up(view),
                fov_y_deg=VIEW_ANGLE_DEG,
            )
            for view in views
        ]
    eyes = [centre + 3.0 * radius * np.asarray(view_direction(view)) for view in views]
    probes = [
        Camera.look_at("orthographic", eye=eye, target=centre, width=size, height=size, up=_up(view), ortho_height=1.0)
        for eye, view in zip(eyes, views, strict=True)
    ]
    half = max(float(np.abs(probe.to_camera(points)[:, :2]).max()) for probe in probes)
    span = 2.0 * max(half, 1e-9) * ORTHO_MARGIN
    return [
        Camera.look_at("orthographic", eye=eye, target=centre, width=size, height=size, up=_up(view), ortho_height=span)
        for eye, view in zip(eyes, views, strict=True)
    ]


@dataclass(eq=False)
class RenderedView:
    """One view of the mesh: its exact G-buffer and the neutral render the edit starts from."""

    view: ViewSpec
    gbuffer: GBuffer
    neutral: NeutralRender


def render_views(
    mesh: MeshArrays,
    views: Sequence[ViewSpec],
    size: int,
    *,
    kind: CameraKind = "orthographic",
    on_view: Callable[[int], None] | None = None,
    cancel: threading.Event | None = None,
) -> list[RenderedView]:
    """G-buffers and neutral renders of ``mesh`` from ``views`` (``size``² each), one renderer process for all."""
    cameras = orbit_cameras(mesh.vertices, views, size, kind)

    def report(index: int, gbuffer: GBuffer) -> None:
        if on_view is not None:
            on_view(index)

    gbuffers = render_gbuffers(mesh, cameras, on_view=report, cancel=cancel)
    return [
        RenderedView(view=view, gbuffer=gbuffer, neutral=NeutralRender.from_gbuffer(gbuffer))
        for view, gbuffer in zip(views, gbuffers, strict=True)
    ]


def _up(view: ViewSpec) -> tuple[float, float, float]:
    return (0.0, 1.0, 0.0) if abs(view.elevation) < 89.0 else (0.0, 0.0, -1.0)


@dataclass(eq=False)
class NeutralRender:
    """A view as the edit sees it: light grey "clay" under a headlight, on the plain background.

    Attributes
    ----------
    image : PIL RGB image, the camera's size
    shading : (H, W) float32 — the light factor applied to each object pixel (1 = facing the camera), 0 elsewhere
    """

    image: Image.Image
    shading: NDArray[np.float32]

    @classmethod
    def from_gbuffer(cls, gbuffer: GBuffer) -> NeutralRender:
        """Shade ``gbuffer``: ``AMBIENT + (1 − AMBIENT)·|n·v|`` with the interpolated normal, both sides lit.

        A headlight makes the shading depend only on the angle between the surface and the view, which the
        G-buffer knows exactly: :func:`remove_shading` can divide it out of the edited view again.
        """
        mask = gbuffer.mask
        towards = gbuffer.camera.directions_to_camera(gbuffer.position[mask])
        facing = np.abs(np.einsum("ij,ij->i", gbuffer.normal[mask].astype(np.float64), towards))
        shading = np.zeros(mask.shape, dtype=np.float32)
        shading[mask] = AMBIENT + (1.0 - AMBIENT) * facing
        pixels = np.empty((*mask.shape, 3), dtype=np.float32)
        pixels[:] = np.asarray(BACKGROUND, dtype=np.float32)
        pixels[mask] = (255.0 * BASE_GREY * shading[mask])[:, None]
        return cls(Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8)), shading)


def remove_shading(edited: NDArray[np.float32], shading: NDArray[np.float32]) -> NDArray[np.float32]:
    """(H, W, 3) edited view in 0..1 with the neutral render's light divided out on the object (clipped to 0..1).

    Kontext keeps the lighting of the image it edits, so the edit is about ``albedo × shading`` on the object.
    """
    factor = np.where(shading > 0, np.maximum(shading, MIN_SHADING), 1.0)
    return np.asarray(np.clip(edited / factor[..., None], 0.0, 1.0), dtype=np.float32)


def tile_grid(tiles: Sequence[Image.Image], tile_size: int) -> Image.Image:
    """The tiles (each resized to ``tile_size``², the aspect kept on the background) in the contact-sheet grid."""
    columns, rows = sheet_grid(len(tiles))
    grid = Image.new("RGB", (columns * tile_size, rows * tile_size), BACKGROUND)
    for index, tile in enumerate(tiles):
        fitted = tile.convert("RGB")
        if fitted.size != (tile_size, tile_size):
            fitted = _letterbox(fitted, tile_size)
        grid.paste(fitted, ((index % columns) * tile_size, (index // columns) * tile_size))
    return grid


def split_grid(grid: Image.Image, count: int, tile_size: int) -> list[NDArray[np.float32]]:
    """The ``count`` tiles of an edited grid (laid out as :func:`tile_grid` does) as (S, S, 3) floats in 0..1.

    The edit may come back at another size (Kontext works at about 1 MP): it is resized to the grid's size first.
    """
    columns, rows = sheet_grid(count)
    full = grid.convert("RGB")
    if full.size != (columns * tile_size, rows * tile_size):
        full = full.resize((columns * tile_size, rows * tile_size), Image.Resampling.BICUBIC)
    pixels = np.asarray(full, dtype=np.float32) / 255.0
    return [
        np.ascontiguousarray(
            pixels[
                (index // columns) * tile_size : (index // columns + 1) * tile_size,
                (index % columns) * tile_size : (index % columns + 1) * tile_size,
            ]
        )
        for index in range(count)
    ]


def _letterbox(image: Image.Image, size: int) -> Image.Image:
    scale = size / max(image.size)
    resized = image.resize(
        (max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.Resampling.LANCZOS
    )
    tile = Image.new("RGB", (size, size), BACKGROUND)
    tile.paste(resized, ((size - resized.width) // 2, (size - resized.height) // 2))
    return tile
