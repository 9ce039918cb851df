"""Stage: texture a given mesh from a material prompt — FLUX.1 Kontext + the Alch3mist LoRA on a grid of views,
projected back into one UV texture.

The mesh is rendered from K views around it (exact G-buffers, neutral "clay" renders); the renders are tiled into ONE
grid image that Kontext edits in one call (attention spans the whole grid, so the material agrees across views; a
reference image rides along as one more tile); every texel then gathers its colour from the edited views that see it;
what no view saw is filled from the nearest seen surface in 3D, and the GLB is written through the same
post-processing and glTF validation as every other mesh. docs/texturing.md explains the method and its limits.

This stage is the built-in texture engine, ``alch3mist``: it and the remote ones (``texturing/remote.py``) share the
``TextureEngine`` interface (``texturing/engines.py``): a ``TextureJob`` in, a ``TextureResult`` out.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from numpy.typing import NDArray
from PIL import Image
from pydantic import BaseModel, Field

from ..engines.base import EngineHealth, EngineResult
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
from ..texturing.views import RenderedView, remove_shading, render_views, split_grid, texturing_views, tile_grid
from .progress import StageControl

if TYPE_CHECKING:
    import trimesh

    from ..mesh.render import ViewSpec
    from ..models.loaded import LoadedModels

logger = logging.getLogger(__name__)

__all__ = [
    "ENGINE_NAME",
    "TextureJob",
    "TextureManifest",
    "TextureOptions",
    "TextureResult",
    "TextureStage",
    "timed_step",
    "write_textured_glb",
]

ENGINE_NAME = "alch3mist"  # this stage, as a texture engine
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
    engine_options: dict[str, float | int | str | bool] = field(default_factory=dict)
    """Remote texture engines' own parameters by their own names (e.g. TRELLIS.2's tex_slat_sampling_steps)."""


@dataclass
class TextureJob:
    """What any texture engine is asked to do: paint ``mesh`` with the material of ``edit_prompt``.

    Attributes
    ----------
    mesh : the mesh, loaded and normalised by ``texturing.mesh_input.load_mesh``
    edit_prompt : the Kontext instruction ("Alch3mist …")
    materials : the request's material words (metallic/roughness factors)
    reference : a picture of the material or look: one more tile in the grid Kontext edits
    picture : a picture of this very object wearing the material (the chain's textured image, the one the 3D engine
        built the mesh from). The built-in engine tiles it like a reference; remote engines paint from it, and
        without it paint from one neutral view of the mesh edited by Kontext
    options : views, sizes, the edit's knobs, the seed
    """

    mesh: LoadedMesh
    edit_prompt: str
    materials: Sequence[str] = ()
    reference: Image.Image | None = None
    picture: Image.Image | None = None
    options: TextureOptions = field(default_factory=TextureOptions)


@dataclass
class TextureResult:
    """What a texture engine made.

    Attributes
    ----------
    glb_path : the textured, post-processed, validated GLB (``model.glb``)
    texture_path : its base-colour map (``texture.png``), when it has exactly one
    engine : the texture engine that painted it (``alch3mist``, ``hunyuan3d``, ``trellis2``)
    input_grid, edited_grid : the grid of neutral views sent to Kontext, and what came back (None when no edit ran)
    picture : what a remote engine painted from (None for the built-in engine)
    coverage : share of the texture's chart texels that at least one view saw (the rest were filled); None when
        a remote engine painted (it does not say)
    uv_source : "mesh" (its own UVs were kept), "xatlas" (a new atlas; ``uv_reason`` says why) or "engine"
    pbr : the material's metallic / roughness factors and where they came from (None: the engine's own material)
    faces, vertices : of the written mesh
    timings_s : seconds per step (built in: uv, render, edit, project, fill, glb; remote: edit, paint, glb)
    validation : the glTF validator's summary (or why it did not run)
    warnings : what a person should know (low coverage, an unvalidated GLB, what a remote engine changed)
    engine_result : a remote engine's record (what was sent, applied, clamped)
    """

    glb_path: Path
    texture_path: Path | None
    engine: str
    input_grid: Path | None
    edited_grid: Path | None
    coverage: float | None
    uv_source: Literal["mesh", "xatlas", "engine"]
    uv_reason: str | None
    pbr: PbrFactors | None
    faces: int
    vertices: int
    timings_s: dict[str, float] = field(default_factory=dict)
    validation: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    picture: Path | None = None
    engine_result: EngineResult | None = None

    @property
    def artifacts(self) -> list[Path]:
        """The files it wrote, in the order a person would look at them."""
        found = [self.glb_path, self.texture_path, self.picture, self.input_grid, self.edited_grid]
        return [path for path in found if path is not None]

    def manifest(self) -> TextureManifest:
        return TextureManifest(
            engine=self.engine,
            coverage=None if self.coverage is None else round(self.coverage, 4),
            uv_source=self.uv_source,
            uv_reason=self.uv_reason,
            metallic=None if self.pbr is None else self.pbr.metallic,
            roughness=None if self.pbr is None else self.pbr.roughness,
            pbr_source=None if self.pbr is None else self.pbr.source,
            faces=self.faces,
            vertices=self.vertices,
            timings_s=self.timings_s,
            validation=self.validation,
            warnings=self.warnings,
            painter=None if self.engine_result is None else self.engine_result.manifest(),
        )


class TextureManifest(BaseModel):
    """The manifest's ``texture`` section: what the texture step made, and how."""

    engine: str = Field(description="Texture engine: alch3mist (built in), hunyuan3d or trellis2.")
    coverage: float | None = Field(
        description="Share of the texture's surface texels some view saw (the rest filled); null for remote engines."
    )
    uv_source: str = Field(description="mesh: its own UVs kept; xatlas: a new atlas; engine: the remote engine's.")
    uv_reason: str | None = Field(None, description="Why the mesh's own UVs were not kept.")
    metallic: float | None = Field(None, description="metallicFactor written (null: the remote engine's material).")
    roughness: float | None = Field(None, description="roughnessFactor written (null: the remote engine's material).")
    pbr_source: str | None = Field(None, description="Where the factors came from.")
    faces: int
    vertices: int
    timings_s: dict[str, float]
    validation: dict[str, Any]
    warnings: list[str] = Field(default_factory=list)
    painter: dict[str, Any] | None = Field(
        None, description="A remote engine's record: variant, URL, sent / applied / app defaults, clamps."
    )


class TextureStage:
    """Textures meshes with the loaded Kontext pipeline (the same ``MaterialEditStage`` the chain uses).

    As a texture engine it is ``alch3mist``: ``texture(job, out_dir, control)``.
    """

    name = ENGINE_NAME

    def __init__(self, models: LoadedModels, *, require_validator: bool = False) -> None:
        from .material_edit import MaterialEditStage  # torch: imported when a stage is built, not with the CLI

        self.models = models
        self.material_edit = MaterialEditStage(models)
        self.require_validator = require_validator

    def health(self) -> EngineHealth:
        detail = "built in: multi-view FLUX.1 Kontext + LoRA edits projected into a UV texture"
        return EngineHealth(name=self.name, available=True, detail=detail)

    def texture(self, job: TextureJob, out_dir: Path, control: StageControl) -> TextureResult:
        """The ``TextureEngine`` call: ``run`` with the job's picture (if any) as the grid's reference."""
        return self.run(
            job.mesh,
            job.edit_prompt,
            materials=job.materials,
            reference=job.reference or job.picture,
            options=job.options,
            out_dir=out_dir,
            control=control,
        )

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
        timings: dict[str, float] = {}

        # 1. Check inputs
        self.check_options(options)
        if not edit_prompt.strip():
            raise InvalidRequest("the edit prompt is empty")
        control.raise_if_cancelled()
        (out_dir / VIEWS_DIR).mkdir(parents=True, exist_ok=True)

        # 2. UV layout: the mesh's own when usable, else a new xatlas atlas (in its own process)
        with timed_step(timings, "uv"):
            layout = ensure_uv_layout(mesh.mesh, options.texture_size, options.unwrap_timeout_s)
            arrays = MeshArrays.from_trimesh(layout.mesh)
            texels = rasterise_uv(arrays, options.texture_size)
        control.report(PROGRESS["uv"], "UV layout ready" if layout.source == "mesh" else "UVs unwrapped")
        control.raise_if_cancelled()

        # 3-4. Render the views (exact G-buffers, neutral renders at alternating elevations) and edit them all at
        #      once: one Kontext + LoRA call on their grid, the reference image as one more tile
        views = texturing_views(options.views, elevation=options.elevation)
        window = control.sub(PROGRESS["uv"], PROGRESS["edit"])
        rendered, edited_tiles, input_grid, edited_grid = self.edit_views(
            arrays, views, edit_prompt, reference, options, out_dir, window, timings
        )

        # 5. Back-project: each texel blends the views that see it (visibility, view angle, distance from edges)
        edited_views = [
            EditedView(view.gbuffer, remove_shading(tile, view.neutral.shading) if options.delight else tile)
            for view, tile in zip(rendered, edited_tiles, strict=True)
        ]
        with timed_step(timings, "project"):
            projection = back_project(
                texels,
                edited_views,
                sharpness=options.sharpness,
                on_view=_ticks(control, PROGRESS["edit"], PROGRESS["project"], len(views), "projected view"),
            )

        # 6. Fill what no view saw from the nearest seen surface in 3D; pad the charts' gutters
        with timed_step(timings, "fill"):
            colours = fill_unseen(texels, projection.colours, projection.seen, seed=options.seed)
            texture = Image.fromarray(texture_from_texels(texels, colours))
        control.report(PROGRESS["fill"], f"{projection.coverage:.0%} of the surface seen")
        control.raise_if_cancelled()

        # 7. The PBR GLB through post-processing and glTF validation, and the texture PNG
        factors = pbr_factors(materials, _mesh_factors(mesh))
        glb_path, texture_path = out_dir / GLB_NAME, out_dir / TEXTURE_NAME
        with timed_step(timings, "glb"):
            report = write_textured_glb(layout.mesh, texture, factors, mesh, glb_path, texture_path)
            validation = self.validate(glb_path)
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
            engine=self.name,
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

    def edit_views(
        self,
        arrays: MeshArrays,
        views: Sequence[ViewSpec],
        edit_prompt: str,
        reference: Image.Image | None,
        options: TextureOptions,
        out_dir: Path,
        control: StageControl,
        timings: dict[str, float],
    ) -> tuple[list[RenderedView], list[NDArray[np.float32]], Path, Path]:
        """Render ``views`` of the mesh and edit their grid in ONE Kontext + LoRA call (the reference as one more
        tile); the rendered views, the edited tiles (0..1 floats, one per view), and both grids' paths.

        Progress: rendering takes this control's first third, the edit the rest. Remote texture engines call it with
        one view (the picture they paint from).
        """
        defaults = self.models.defaults
        rendered_share = 1 / 3
        with timed_step(timings, "render"):
            rendered = render_views(
                arrays,
                views,
                options.view_size,
                kind=options.camera,
                on_view=_ticks(control, 0.0, rendered_share, len(views), "view"),
                cancel=control.cancel,
            )
        tiles = [view.neutral.image for view in rendered] + ([reference.convert("RGB")] if reference else [])
        grid = tile_grid(tiles, options.view_size)
        (out_dir / VIEWS_DIR).mkdir(parents=True, exist_ok=True)
        input_grid = out_dir / VIEWS_DIR / INPUT_GRID
        grid.save(input_grid)
        with timed_step(timings, "edit"):
            edited = self.material_edit.run(
                grid,
                edit_prompt,
                seed=options.seed,
                steps=options.steps or defaults.edit_steps,
                guidance=defaults.edit_guidance if options.guidance is None else options.guidance,
                lora=options.lora,
                lora_scale=options.lora_scale,
                control=control.sub(rendered_share, 1.0),
            )
        edited_grid = out_dir / VIEWS_DIR / EDITED_GRID
        edited.save(edited_grid)
        return rendered, split_grid(edited, len(tiles), options.view_size)[: len(rendered)], input_grid, edited_grid

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

    def validate(self, glb_path: Path) -> dict[str, Any]:
        """The glTF validator's summary of ``glb_path`` (or why it did not run, unless a validator is required)."""
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
def timed_step(timings: dict[str, float], step: str) -> Iterator[None]:
    """Record the seconds the ``with`` block takes as ``timings[step]`` (rounded to ms), even when it raises."""
    started = time.perf_counter()
    try:
        yield
    finally:
        timings[step] = round(time.perf_counter() - started, 3)
