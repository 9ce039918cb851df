"""Stage: texture a given mesh from a material prompt — FLUX.1 Kontext + the Alch3mist LoRA on a grid of views,
projected back into one UV texture.

The mesh is rendered from K views around it (exact G-buffers, neutral "clay" renders); the renders are tiled into ONE
grid image that Kontext edits in one call (attention spans the whole grid, so the material agrees across views; a
reference image rides along as one more tile); every texel then gathers its colour from the edited views that see it;
what no view saw is filled from the nearest seen surface in 3D, and the GLB is written through the same
post-processing and glTF validation as every other mesh. docs/texturing.md explains the method and its limits.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from ..errors import InvalidRequest
from ..mesh.gbuffer import CameraKind, MeshArrays
from ..mesh.glb import GENERATOR, export_glb
from ..mesh.postprocess import PostprocessOptions, PostprocessReport, postprocess_glb
from ..mesh.validate import validate_glb, validator_available
from ..texturing.fill import fill_unseen, texture_from_texels
from ..texturing.mesh_input import LoadedMesh
from ..texturing.pbr import PbrFactors, pbr_factors
from ..texturing.projection import EditedView, back_project
from ..texturing.uv import ensure_uv_layout, rasterise_uv
from ..texturing.views import remove_shading, render_views, split_grid, texturing_views, tile_grid
from .progress import StageControl

if TYPE_CHECKING:
    import trimesh

    from ..models.loaded import LoadedModels

logger = logging.getLogger(__name__)

__all__ = ["TextureOptions", "TextureResult", "TextureStage", "write_textured_glb"]

LABEL = "texturing"
MIN_VIEWS, MAX_VIEWS = 2, 16
MIN_VIEW_SIZE, MAX_VIEW_SIZE = 64, 1024
MIN_TEXTURE, MAX_TEXTURE = 64, 4096
LOW_COVERAGE = 0.9  # below this share of texels seen, the result carries a warning
GLB_NAME, TEXTURE_NAME, RAW_NAME = "model.glb", "texture.png", "texture-raw.glb"
VIEWS_DIR = "texture_views"
INPUT_GRID, EDITED_GRID = "input_grid.png", "edited_grid.png"
# Where each step ends on this stage's 0..1 progress
PROGRESS = {"uv": 0.08, "render": 0.25, "edit": 0.75, "project": 0.9, "fill": 0.94, "glb": 1.0}


@dataclass
class TextureOptions:
    """How to texture: views, sizes, the edit's knobs. ``None`` edit steps/guidance = the preset's defaults."""

    views: int = 8
    view_size: int = 512
    texture_size: int = 2048
    elevation: float = 20.0
    camera: CameraKind = "orthographic"
    sharpness: float = 4.0  # view-angle exponent of the blend weights (projection.back_project)
    delight: bool = True  # divide the neutral render's shading out of the edited views
    seed: int = 0
    steps: int | None = None
    guidance: float | None = None
    lora: str | None = None
    lora_scale: float = 1.0
    unwrap_timeout_s: float = 300.0


@dataclass
class TextureResult:
    """What the texture stage made.

    Attributes
    ----------
    glb_path : the textured, post-processed, validated GLB (``model.glb``)
    texture_path : its base-colour map (``texture.png``, ``texture_size``²)
    input_grid, edited_grid : the grid of neutral views sent to Kontext, and what came back
    coverage : share of the texture's chart texels that at least one view saw (the rest were filled)
    uv_source : "mesh" (its own UVs were kept) or "xatlas" (a new atlas; ``uv_reason`` says why)
    pbr : the material's metallic / roughness factors and where they came from
    faces, vertices : of the written mesh
    timings_s : seconds per step (uv, render, edit, project, fill, glb)
    validation : the glTF validator's summary (or why it did not run)
    warnings : what a person should know (low coverage, an unvalidated GLB)
    """

    glb_path: Path
    texture_path: Path
    input_grid: Path
    edited_grid: Path
    coverage: float
    uv_source: str
    uv_reason: str | None
    pbr: PbrFactors
    faces: int
    vertices: int
    timings_s: dict[str, float] = field(default_factory=dict)
    validation: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


class TextureStage:
    """Textures meshes with the loaded Kontext pipeline (the same ``MaterialEditStage`` the chain uses)."""

    def __init__(self, models: LoadedModels, *, require_validator: bool = False) -> None:
        from .material_edit import MaterialEditStage  # torch: imported when a stage is built, not with the CLI

        self.models = models
        self.material_edit = MaterialEditStage(models)
        self.require_validator = require_validator

    def run(
        self,
        mesh: LoadedMesh,
        edit_prompt: str,
        *,
        materials: Sequence[str] = (),
        reference: Image.Image | None = None,
        options: TextureOptions | None = None,
        out_dir: Path,
        control: StageControl,
    ) -> TextureResult:
        """Texture ``mesh`` with the material of ``edit_prompt``; write ``out_dir/model.glb`` and the maps."""
        options = options or TextureOptions()
        defaults = self.models.defaults
        timings: dict[str, float] = {}

        # 1. Check inputs
        self.check_options(options)
        if not edit_prompt.strip():
            raise InvalidRequest("the edit prompt is empty")
        control.raise_if_cancelled()
        (out_dir / VIEWS_DIR).mkdir(parents=True, exist_ok=True)

        # 2. UV layout: the mesh's own when usable, else a new xatlas atlas (in its own process)
        with _timed(timings, "uv"):
            layout = ensure_uv_layout(mesh.mesh, options.texture_size, options.unwrap_timeout_s)
            arrays = MeshArrays.from_trimesh(layout.mesh)
            texels = rasterise_uv(arrays, options.texture_size)
        control.report(PROGRESS["uv"], "UV layout ready" if layout.source == "mesh" else "UVs unwrapped")
        control.raise_if_cancelled()

        # 3. Render the views: exact G-buffers and neutral renders, at alternating elevations
        views = texturing_views(options.views, elevation=options.elevation)
        with _timed(timings, "render"):
            rendered = render_views(
                arrays,
                views,
                options.view_size,
                kind=options.camera,
                on_view=_ticks(control, PROGRESS["uv"], PROGRESS["render"], len(views), "view"),
                cancel=control.cancel,
            )

        # 4. Edit every view at once: one Kontext + LoRA call on the grid (the reference image as one more tile)
        tiles = [view.neutral.image for view in rendered] + ([reference.convert("RGB")] if reference else [])
        grid = tile_grid(tiles, options.view_size)
        input_grid = out_dir / VIEWS_DIR / INPUT_GRID
        grid.save(input_grid)
        with _timed(timings, "edit"):
            edited = self.material_edit.run(
                grid,
                edit_prompt,
                seed=options.seed,
                steps=options.steps or defaults.edit_steps,
                guidance=defaults.edit_guidance if options.guidance is None else options.guidance,
                lora=options.lora,
                lora_scale=options.lora_scale,
                control=control.sub(PROGRESS["render"], PROGRESS["edit"]),
            )
        edited_grid = out_dir / VIEWS_DIR / EDITED_GRID
        edited.save(edited_grid)
        edited_tiles = split_grid(edited, len(tiles), options.view_size)[: len(rendered)]

        # 5. Back-project: each texel blends the views that see it (visibility, view angle, distance from edges)
        edited_views = [
            EditedView(view.gbuffer, remove_shading(tile, view.neutral.shading) if options.delight else tile)
            for view, tile in zip(rendered, edited_tiles, strict=True)
        ]
        with _timed(timings, "project"):
            projection = back_project(
                texels,
                edited_views,
                sharpness=options.sharpness,
                on_view=_ticks(control, PROGRESS["edit"], PROGRESS["project"], len(views), "projected view"),
            )

        # 6. Fill what no view saw from the nearest seen surface in 3D; pad the charts' gutters
        with _timed(timings, "fill"):
            colours = fill_unseen(texels, projection.colours, projection.seen, seed=options.seed)
            texture = Image.fromarray(texture_from_texels(texels, colours))
        control.report(PROGRESS["fill"], f"{projection.coverage:.0%} of the surface seen")
        control.raise_if_cancelled()

        # 7. The PBR GLB through post-processing and glTF validation, and the texture PNG
        factors = pbr_factors(materials, _mesh_factors(mesh))
        glb_path, texture_path = out_dir / GLB_NAME, out_dir / TEXTURE_NAME
        with _timed(timings, "glb"):
            report = write_textured_glb(layout.mesh, texture, factors, mesh, glb_path, texture_path)
            validation = self._validate(glb_path)
        control.report(PROGRESS["glb"], "textured GLB ready")

        warnings = [*report.warnings]
        if projection.coverage < LOW_COVERAGE:
            warnings.append(
                f"the views saw {projection.coverage:.0%} of the surface; the rest was filled from the nearest seen "
                "surface (more --views help)"
            )
        if validation.get("validator") is None:
            warnings.append("the GLB was not checked: the glTF validator is not installed")
        logger.info("texture: coverage %.3f, %s", projection.coverage, timings)
        return TextureResult(
            glb_path=glb_path,
            texture_path=texture_path,
            input_grid=input_grid,
            edited_grid=edited_grid,
            coverage=projection.coverage,
            uv_source=layout.source,
            uv_reason=layout.reason,
            pbr=factors,
            faces=report.faces,
            vertices=report.vertices,
            timings_s=timings,
            validation=validation,
            warnings=warnings,
        )

    # --- steps -------------------------------------------------------------------------------------------------

    @staticmethod
    def check_options(options: TextureOptions) -> None:
        if not MIN_VIEWS <= options.views <= MAX_VIEWS:
            raise InvalidRequest(f"views must be between {MIN_VIEWS} and {MAX_VIEWS}, got {options.views}")
        if not MIN_VIEW_SIZE <= options.view_size <= MAX_VIEW_SIZE:
            raise InvalidRequest(
                f"view size must be between {MIN_VIEW_SIZE} and {MAX_VIEW_SIZE} px, got {options.view_size}"
            )
        if not MIN_TEXTURE <= options.texture_size <= MAX_TEXTURE:
            raise InvalidRequest(
                f"texture size must be between {MIN_TEXTURE} and {MAX_TEXTURE} px, got {options.texture_size}"
            )
        if not 0.0 <= options.elevation <= 60.0:
            raise InvalidRequest(f"elevation must be between 0 and 60 degrees, got {options.elevation}")
        if options.lora_scale < 0:
            raise InvalidRequest(f"the LoRA scale must be 0 or more, got {options.lora_scale}")

    def _validate(self, glb_path: Path) -> dict[str, Any]:
        if not validator_available() and not self.require_validator:
            logger.warning("glTF validator not installed: %s handed out unvalidated", glb_path.name)
            return {"validator": None, "note": "gltf-validator not installed (scripts/setup-engine-test-servers.sh)"}
        return validate_glb(glb_path).as_dict()


def write_textured_glb(
    mesh: trimesh.Trimesh,
    texture: Image.Image,
    factors: PbrFactors,
    source: LoadedMesh,
    glb_path: Path,
    texture_path: Path,
) -> PostprocessReport:
    """``mesh`` (with UVs) + ``texture`` as a PBR GLB at ``glb_path``, through the GLB post-processing (which also
    writes ``texture_path``). The GLB's ``asset.extras.alch3mist.to_source`` maps it back to the file's coordinates.
    """
    import trimesh as trimesh_module

    material = trimesh_module.visual.material.PBRMaterial(
        name="alch3mist-texture",
        baseColorTexture=texture,
        metallicFactor=factors.metallic,
        roughnessFactor=factors.roughness,
        doubleSided=True,  # open meshes are textured from both sides
    )
    textured = trimesh_module.Trimesh(
        vertices=mesh.vertices,
        faces=mesh.faces,
        visual=trimesh_module.visual.TextureVisuals(uv=getattr(mesh.visual, "uv", None), material=material),
        process=False,
    )
    extras = {
        "alch3mist": {
            "stage": "texture",
            "source_format": source.source_format,
            "to_source": np.round(source.to_source, 9).tolist(),
        }
    }
    raw = glb_path.with_name(RAW_NAME)
    generator = f"{GENERATOR} (texture stage)"
    export_glb(trimesh_module.Scene(textured), raw, generator=generator, extras=extras)
    options = PostprocessOptions(texture_cap=texture.width, unwrap="never")
    try:
        return postprocess_glb(raw, glb_path, texture_path, options, generator=generator, extras=extras)
    finally:
        raw.unlink(missing_ok=True)


def _mesh_factors(mesh: LoadedMesh) -> PbrFactors | None:
    if mesh.material is None:
        return None
    return PbrFactors(metallic=mesh.material.metallic, roughness=mesh.material.roughness, source="the mesh's material")


def _ticks(control: StageControl, start: float, end: float, total: int, what: str) -> Callable[[int], None]:
    """A per-item callback reporting progress from ``start`` to ``end`` and stopping at the next item on cancel."""

    def tick(index: int) -> None:
        control.report(start + (end - start) * (index + 1) / total, f"{what} {index + 1}/{total}")
        control.raise_if_cancelled()

    return tick


@contextmanager
def _timed(timings: dict[str, float], step: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        timings[step] = round(time.perf_counter() - started, 3)
