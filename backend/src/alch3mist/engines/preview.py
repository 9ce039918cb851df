"""The built-in CPU engine: silhouette inflation. Honest and fast, and labelled "preview engine" everywhere.

1. segment the object from its plain background (``mesh.segment``);
2. resample the mask to a grid of at most ``MAX_CELLS`` cells (so at most ``4 * MAX_CELLS`` triangles);
3. inflate: each grid vertex gets a height from the distance transform (a rounded profile, zero on the outline);
4. build a closed mesh: the front surface at +height, the back surface at -height, sharing the outline;
5. texture: a two-square atlas, the image itself on the front, a softened, shaded copy (what the back plausibly
   looks like: the same colours without the front's details) on the back, background colours bled out;
6. write a PBR GLB whose ``asset.generator`` and ``asset.extras`` say "preview engine".
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageFilter

from ..mesh.glb import export_glb
from ..mesh.segment import Silhouette, segment_object
from ..stages.progress import StageControl
from .base import PREVIEW_LABEL, EngineHealth, EngineParams, EngineResult

if TYPE_CHECKING:
    import trimesh

logger = logging.getLogger(__name__)

MAX_CELLS = 10_000  # grid cells inside the silhouette: faces = 4 * cells at most (front + back, 2 per cell)
DEPTH = 0.55  # thickness at the thickest point, relative to the largest inscribed radius (1 = a sphere)
OUTLINE_SMOOTHING = (4, 0.5)  # iterations, step of the Laplacian smoothing of the outline
ATLAS_MARGIN = 0.01  # UV inset of each half of the atlas (so filtering never mixes front and back)
BACK_SHADE = 0.85
METHOD = "silhouette inflation (distance-transform height field, front and back)"


@dataclass
class _Grid:
    mask: NDArray[np.bool_]  # (H, W) cells inside the object
    box: tuple[float, float, float, float]  # x0, x1, y0, y1 of the grid in the image, 0..1


@dataclass
class _Surface:
    vertices: NDArray[np.float64]  # (n, 3), front surface
    rows: NDArray[np.float64]  # (n,) lattice coordinates 0..H, used for UVs
    cols: NDArray[np.float64]
    faces: NDArray[np.int64]  # (m, 3), front faces, counter-clockwise seen from +Z
    outline: NDArray[np.bool_]  # (n,) on the silhouette (height 0, shared with the back)


class PreviewEngine:
    """Image → closed, textured GLB on the CPU in about a second. Not a generative model: a preview."""

    name = "preview"
    is_preview = True

    def health(self) -> EngineHealth:
        return EngineHealth(
            name=self.name, available=True, is_preview=True, detail="built-in CPU silhouette inflation (preview engine)"
        )

    def generate(self, image: Image.Image, params: EngineParams, out_path: Path, control: StageControl) -> EngineResult:
        started = time.perf_counter()
        silhouette = segment_object(image)
        control.report(0.2, "preview engine: object segmented")
        control.raise_if_cancelled()
        grid = _make_grid(silhouette)
        surface = _inflate(grid)
        control.report(0.5, "preview engine: silhouette inflated")
        control.raise_if_cancelled()
        texture_side = max(128, min(params.texture_size, 2048) // 2)
        atlas = _texture_atlas(image, silhouette, grid, texture_side)
        mesh = _closed_textured_mesh(surface, grid, atlas)
        details = _details(silhouette, grid, mesh, atlas)
        export_glb(_scene(mesh), out_path, generator=f"material-alch3mist {PREVIEW_LABEL}", extras=_extras())
        seconds = time.perf_counter() - started
        warnings = []
        if silhouette.method == "whole-frame":
            warnings.append("no plain background found around an object: the whole picture became a relief")
        logger.info("preview engine: %d faces in %.2f s", len(mesh.faces), seconds)
        control.report(1.0, "preview engine: GLB written")
        return EngineResult(
            glb_path=out_path,
            engine=self.name,
            is_preview=True,
            variant=PREVIEW_LABEL,
            sent={"texture_size": params.texture_size},
            applied={"texture_size": params.texture_size},  # everything else in EngineParams is ignored
            warnings=warnings,
            glb_bytes=out_path.stat().st_size,
            method=METHOD,
            details={**details, "seconds": round(seconds, 3)},
        )


def _details(silhouette: Silhouette, grid: _Grid, mesh: trimesh.Trimesh, atlas: Image.Image) -> dict[str, Any]:
    return {
        "segmentation": silhouette.method,
        "object_coverage": round(silhouette.coverage, 4),
        "grid": list(grid.mask.shape),
        "faces": len(mesh.faces),
        "vertices": len(mesh.vertices),
        "closed": _is_closed(mesh),
        "texture_atlas": list(atlas.size),
    }


def _extras() -> dict[str, Any]:
    return {"alch3mist": {"engine": "preview", "is_preview": True, "label": PREVIEW_LABEL, "method": METHOD}}


# --- 2. grid -----------------------------------------------------------------------------------------------------


def _make_grid(silhouette: Silhouette) -> _Grid:
    row0, row1, col0, col1 = silhouette.bbox
    crop = silhouette.mask[row0:row1, col0:col1]
    height, width = silhouette.mask.shape
    factor = min(1.0, float(np.sqrt(MAX_CELLS / max(int(crop.sum()), 1))))
    crop_image = Image.fromarray(crop.astype(np.uint8) * 255)
    while True:  # resampling may round the cell count up a little: shrink until within budget
        size = (max(2, round(crop.shape[1] * factor)), max(2, round(crop.shape[0] * factor)))
        mask = _manifold_cells(np.asarray(crop_image.resize(size, Image.Resampling.BILINEAR)) > 127)
        if mask.sum() <= MAX_CELLS:
            break
        factor *= 0.97
    if not mask.any():
        mask = np.ones((2, 2), dtype=bool)
    return _Grid(mask=mask, box=(col0 / width, col1 / width, row0 / height, row1 / height))


def _manifold_cells(mask: NDArray[np.bool_]) -> NDArray[np.bool_]:
    """Drop one-cell-thin parts: every cell keeps an inner corner, so front and back never touch inside the outline."""
    from scipy import ndimage

    for _ in range(8):
        mask = np.asarray(ndimage.binary_opening(mask, structure=np.ones((2, 2), dtype=bool)), dtype=bool)
        mask = np.asarray(ndimage.binary_fill_holes(mask), dtype=bool)
        pinched = _cells_on_pinched_edges(mask)
        if not pinched.any():
            break
        mask &= ~pinched
    labels, count = ndimage.label(mask)
    if count > 1:
        mask = labels == (int(np.argmax(np.bincount(labels.ravel())[1:])) + 1)
    return mask


def _cells_on_pinched_edges(mask: NDArray[np.bool_]) -> NDArray[np.bool_]:
    """Cells on both sides of an inner edge whose two ends are on the outline."""
    padded = np.pad(mask, 1)
    around = padded[:-1, :-1].astype(np.int8) + padded[:-1, 1:] + padded[1:, :-1] + padded[1:, 1:]
    on_outline = (around > 0) & (around < 4)
    bad = np.zeros_like(mask)
    # horizontal inner edges (r, c)-(r, c+1), r = 1..H-1, between cells (r-1, c) and (r, c)
    pinched_h = mask[:-1, :] & mask[1:, :] & on_outline[1:-1, :-1] & on_outline[1:-1, 1:]
    bad[:-1, :] |= pinched_h
    bad[1:, :] |= pinched_h
    # vertical inner edges (r, c)-(r+1, c), c = 1..W-1, between cells (r, c-1) and (r, c)
    pinched_v = mask[:, :-1] & mask[:, 1:] & on_outline[:-1, 1:-1] & on_outline[1:, 1:-1]
    bad[:, :-1] |= pinched_v
    bad[:, 1:] |= pinched_v
    return bad


# --- 3. inflate --------------------------------------------------------------------------------------------------


def _inflate(grid: _Grid) -> _Surface:
    mask = grid.mask
    h, w = mask.shape
    padded = np.pad(mask, 1)
    # the four cells around each lattice vertex (r, c): padded[r:r+2, c:c+2]
    around = padded[:-1, :-1].astype(np.int8) + padded[:-1, 1:] + padded[1:, :-1] + padded[1:, 1:]
    used = around > 0
    outline = used & (around < 4)
    index = np.full(used.shape, -1, dtype=np.int64)
    index[used] = np.arange(int(used.sum()))
    rows, cols = np.nonzero(used)
    height = _height_field(padded, around)[used]
    height[outline[used]] = 0.0
    scale = 1.0 / max(h, w)
    xy = np.stack([cols - w / 2.0, -(rows - h / 2.0)], axis=1).astype(np.float64)
    xy = _smooth_outline(xy, _outline_edges(padded, index), outline[used])
    vertices = np.column_stack([xy * scale, height * scale])
    return _Surface(
        vertices=vertices,
        rows=rows.astype(np.float64),
        cols=cols.astype(np.float64),
        faces=_grid_faces(mask, index, used & ~outline),
        outline=outline[used],
    )


def _height_field(padded: NDArray[np.bool_], around: NDArray[np.int8]) -> NDArray[np.float64]:
    """Height at each lattice vertex: a rounded profile of the distance to the outline."""
    from scipy import ndimage

    distance = ndimage.distance_transform_edt(padded)
    at_vertex = (distance[:-1, :-1] + distance[:-1, 1:] + distance[1:, :-1] + distance[1:, 1:]) / 4.0
    at_vertex = np.where(around == 4, np.maximum(at_vertex - 0.5, 0.0), 0.0)
    radius = max(float(at_vertex.max()), 1.0)
    ratio = np.clip(at_vertex / radius, 0.0, 1.0)
    return np.asarray(DEPTH * radius * np.sqrt(1.0 - (1.0 - ratio) ** 2), dtype=np.float64)


def _grid_faces(mask: NDArray[np.bool_], index: NDArray[np.int64], inner: NDArray[np.bool_]) -> NDArray[np.int64]:
    """Two triangles per cell, split along the diagonal through an inner corner (never a flat outline triangle)."""
    r, c = np.nonzero(mask)
    v00, v01, v10, v11 = index[r, c], index[r, c + 1], index[r + 1, c], index[r + 1, c + 1]
    main = (inner[r, c] | inner[r + 1, c + 1])[:, None]
    first = np.where(main, np.stack([v00, v10, v11], axis=1), np.stack([v00, v10, v01], axis=1))
    second = np.where(main, np.stack([v00, v11, v01], axis=1), np.stack([v10, v11, v01], axis=1))
    return np.concatenate([first, second]).astype(np.int64)


def _outline_edges(padded: NDArray[np.bool_], index: NDArray[np.int64]) -> NDArray[np.int64]:
    """Lattice edges with the object on exactly one side, as vertex index pairs."""
    h, w = padded.shape[0] - 2, padded.shape[1] - 2
    horizontal = padded[0 : h + 1, 1 : w + 1] ^ padded[1 : h + 2, 1 : w + 1]  # edge (r, c)-(r, c+1)
    vertical = padded[1 : h + 1, 0 : w + 1] ^ padded[1 : h + 1, 1 : w + 2]  # edge (r, c)-(r+1, c)
    hr, hc = np.nonzero(horizontal)
    vr, vc = np.nonzero(vertical)
    starts = np.concatenate([index[hr, hc], index[vr, vc]])
    ends = np.concatenate([index[hr, hc + 1], index[vr + 1, vc]])
    return np.stack([starts, ends], axis=1)


def _smooth_outline(
    xy: NDArray[np.float64], edges: NDArray[np.int64], outline: NDArray[np.bool_]
) -> NDArray[np.float64]:
    """Round off the pixel staircase: Laplacian smoothing of outline vertices along outline edges."""
    from scipy import sparse

    if len(edges) == 0:
        return xy
    n = len(xy)
    data = np.ones(2 * len(edges))
    adjacency = sparse.coo_matrix(
        (data, (np.concatenate([edges[:, 0], edges[:, 1]]), np.concatenate([edges[:, 1], edges[:, 0]]))), shape=(n, n)
    ).tocsr()
    degree = np.asarray(adjacency.sum(axis=1)).ravel()
    moving = outline & (degree > 0)
    iterations, step = OUTLINE_SMOOTHING
    for _ in range(iterations):
        mean = adjacency @ xy / np.maximum(degree, 1.0)[:, None]
        xy = np.where(moving[:, None], xy + step * (mean - xy), xy)
    return xy


# --- 5. texture --------------------------------------------------------------------------------------------------


def _texture_atlas(image: Image.Image, silhouette: Silhouette, grid: _Grid, side: int) -> Image.Image:
    """A (2*side, side) atlas: the image's crop of the object on the left, a softened shaded copy on the right."""
    from scipy import ndimage

    x0, x1, y0, y1 = grid.box
    width, height = image.size
    crop_box = (round(x0 * width), round(y0 * height), max(round(x1 * width), 1), max(round(y1 * height), 1))
    front_rgba = image.crop(crop_box).resize((side, side), Image.Resampling.BILINEAR)
    front = front_rgba.convert("RGB")
    coarse = (
        np.asarray(Image.fromarray(grid.mask.astype(np.uint8) * 255).resize((side, side), Image.Resampling.BILINEAR))
        > 127
    )
    # the grid mask is coarse: near the outline trust the pixel's own colour, deep inside trust the mask
    band = max(2, round(1.5 * side / max(grid.mask.shape)))
    deep = ndimage.binary_erosion(coarse, iterations=band)
    near = ndimage.binary_dilation(coarse, iterations=band)
    keep = deep | (near & silhouette.object_pixels(front_rgba, strictness=2.5))
    front_px = _bleed(np.asarray(front), keep)
    back_px = _soften(front_px, coarse, side)
    atlas = Image.new("RGB", (2 * side, side))
    atlas.paste(Image.fromarray(front_px), (0, 0))
    atlas.paste(Image.fromarray(back_px), (side, 0))
    return atlas


def _bleed(pixels: NDArray[np.uint8], inside: NDArray[np.bool_]) -> NDArray[np.uint8]:
    """Replace background pixels by the nearest object pixel, so no background colour shows at the outline."""
    from scipy import ndimage

    if not inside.any() or inside.all():
        return pixels
    nearest = ndimage.distance_transform_edt(~inside, return_distances=False, return_indices=True)
    bled: NDArray[np.uint8] = np.asarray(pixels[nearest[0], nearest[1]], dtype=np.uint8)
    return bled


def _soften(front: NDArray[np.uint8], inside: NDArray[np.bool_], side: int) -> NDArray[np.uint8]:
    blurred = np.asarray(Image.fromarray(front).filter(ImageFilter.GaussianBlur(radius=max(side / 48, 1.0))))
    mean = front[inside].mean(axis=0) if inside.any() else front.reshape(-1, 3).mean(axis=0)
    mixed = (0.7 * blurred.astype(np.float32) + 0.3 * mean) * BACK_SHADE
    softened: NDArray[np.uint8] = np.clip(mixed, 0, 255).astype(np.uint8)
    return softened


# --- 4 + 6. closed mesh, GLB -------------------------------------------------------------------------------------


def _closed_textured_mesh(surface: _Surface, grid: _Grid, atlas: Image.Image) -> trimesh.Trimesh:
    import trimesh

    n = len(surface.vertices)
    back_vertices = surface.vertices * np.array([1.0, 1.0, -1.0])
    vertices = np.concatenate([surface.vertices, back_vertices])
    faces = np.concatenate([surface.faces, surface.faces[:, ::-1] + n])
    h, w = grid.mask.shape
    u = ATLAS_MARGIN + (surface.cols / w) * (1.0 - 2 * ATLAS_MARGIN)
    v = 1.0 - (ATLAS_MARGIN + (surface.rows / h) * (1.0 - 2 * ATLAS_MARGIN))
    uv = np.concatenate([np.column_stack([u / 2.0, v]), np.column_stack([0.5 + u / 2.0, v])])
    normals = _seamless_normals(vertices, faces, surface.outline, n)
    material = trimesh.visual.material.PBRMaterial(
        name="alch3mist-preview", baseColorTexture=atlas, metallicFactor=0.0, roughnessFactor=0.85
    )
    return trimesh.Trimesh(
        vertices=vertices,
        faces=faces,
        vertex_normals=normals,
        visual=trimesh.visual.TextureVisuals(uv=uv, material=material),
        process=False,
    )


def _seamless_normals(
    vertices: NDArray[np.float64], faces: NDArray[np.int64], outline: NDArray[np.bool_], n: int
) -> NDArray[np.float64]:
    """Vertex normals with the outline's front and back copies welded (so the rim is smooth, not creased)."""
    import trimesh

    remap = np.arange(2 * n)
    remap[n:][outline] = np.flatnonzero(outline)
    welded = trimesh.Trimesh(vertices=vertices, faces=remap[faces], process=False)
    normals = np.array(welded.vertex_normals, dtype=np.float64)
    normals[n:][outline] = normals[:n][outline]
    return normals


def _is_closed(mesh: trimesh.Trimesh) -> bool:
    welded = mesh.copy()
    welded.merge_vertices(merge_tex=True, merge_norm=True)
    return bool(welded.is_watertight)


def _scene(mesh: trimesh.Trimesh) -> trimesh.Scene:
    import trimesh

    scene = trimesh.Scene()
    scene.add_geometry(mesh, geom_name="preview")
    return scene
