"""A remote mesh painter (Hunyuan3D-2.0's ``mesh`` field, TRELLIS.2's texturing app) as a texture engine.

Both paint from ONE picture of the object, not from a prompt. In the chain that picture exists: the textured image the
3D engine built the mesh from. For a mesh given by the caller it is made the way the built-in engine makes its
views: one neutral front view of the mesh, edited by Kontext + the LoRA with the material prompt (the reference
image as one more tile), and cut out by the view's exact silhouette. Then the painter paints the mesh, and the GLB
goes through the same post-processing (which also turns TRELLIS.2's WebP textures into PNG) and glTF validation as
every other mesh. Steps 1 and 4 are the built-in engine's; the painter replaces its UVs, projection and fill.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..engines.base import EngineHealth, MeshPainter, PaintParams
from ..errors import InvalidRequest
from ..mesh.gbuffer import MeshArrays
from ..mesh.glb import GENERATOR
from ..mesh.postprocess import PostprocessOptions, postprocess_glb
from ..mesh.render import ViewSpec
from ..stages.progress import StageControl
from ..stages.texture import GLB_NAME, TEXTURE_NAME, VIEWS_DIR, TextureJob, TextureResult, TextureStage, timed_step
from .mesh_input import LoadedMesh
from .views import BACKGROUND

logger = logging.getLogger(__name__)

__all__ = ["PAINTER_VIEW", "RemoteTexture"]

# The picture a painter gets: the front, a little from above, like a product shot (glTF front = +Z = azimuth 0)
PAINTER_VIEW = ViewSpec(azimuth=0.0, elevation=10.0)
PICTURE_NAME = "picture.png"
RAW_NAME = "painter-raw.glb"
# Where each step ends on this engine's 0..1 progress
PROGRESS = {"picture": 0.3, "paint": 0.95, "glb": 1.0}


class RemoteTexture:
    """``painter`` behind the ``TextureEngine`` interface; ``stage`` (the built-in engine) lends its Kontext edit,
    its option checks and its validator."""

    def __init__(self, painter: MeshPainter, stage: TextureStage) -> None:
        self.painter = painter
        self.stage = stage
        self.name = painter.name

    def health(self) -> EngineHealth:
        return self.painter.health()

    def texture(self, job: TextureJob, out_dir: Path, control: StageControl) -> TextureResult:
        options, timings = job.options, dict[str, float]()

        # 1. Check inputs
        TextureStage.check_options(options)
        if not job.edit_prompt.strip():
            raise InvalidRequest("the edit prompt is empty")
        control.raise_if_cancelled()
        (out_dir / VIEWS_DIR).mkdir(parents=True, exist_ok=True)

        # 2. The picture to paint from: the chain's picture of this object, else one neutral front view of the mesh
        #    edited by Kontext + LoRA (the reference as one more tile), cut out by its exact silhouette
        picture, input_grid, edited_grid = self._picture(job, out_dir, control.sub(0.0, PROGRESS["picture"]), timings)
        picture_path = out_dir / VIEWS_DIR / PICTURE_NAME
        picture.save(picture_path)

        # 3. The painter paints the mesh, sent welded, without UVs or node transforms, in our frame
        params = PaintParams(seed=options.seed, texture_size=options.texture_size, options=options.engine_options)
        with timed_step(timings, "paint"):
            raw = self.painter.paint(
                bare_glb(job.mesh),
                picture,
                params,
                out_dir / RAW_NAME,
                control.sub(PROGRESS["picture"], PROGRESS["paint"]),
            )
        control.raise_if_cancelled()

        # 4. Post-process (y up, unit size, WebP → PNG, texture cap) and validate; texture.png beside the GLB
        glb_path, texture_path = out_dir / GLB_NAME, out_dir / TEXTURE_NAME
        texture_path.unlink(missing_ok=True)  # an engine's map from an earlier step must not pass for this one's
        with timed_step(timings, "glb"):
            report = postprocess_glb(
                raw.glb_path,
                glb_path,
                texture_path,
                PostprocessOptions(texture_cap=options.texture_size, unwrap="never"),
                generator=f"{GENERATOR} ({self.name} texture engine)",
                extras=_extras(job.mesh, self.name),
            )
            validation = self.stage.validate(glb_path)
        raw.glb_path.unlink(missing_ok=True)
        control.report(PROGRESS["glb"], "textured GLB ready")

        warnings = [*raw.warnings, *report.warnings]
        sent_faces = len(job.mesh.mesh.faces)
        if report.faces_in < sent_faces:
            warnings.append(
                f"{raw.variant or self.name} returned {report.faces_in:,} of the {sent_faces:,} faces it was sent "
                "(it deletes small loose parts and decimates before painting)"
            )
        if raw.texture == "none":
            warnings.append(f"{raw.variant or self.name} returned the mesh without a texture")
        if validation.get("validator") is None:
            warnings.append("the GLB was not checked: the glTF validator is not installed")
        logger.info("texture (%s): %s", self.name, timings)
        return TextureResult(
            glb_path=glb_path,
            texture_path=texture_path if texture_path.is_file() else None,
            engine=self.name,
            input_grid=input_grid,
            edited_grid=edited_grid,
            coverage=None,
            uv_source="engine",
            uv_reason=None,
            pbr=None,
            faces=report.faces,
            vertices=report.vertices,
            timings_s=timings,
            validation=validation,
            warnings=warnings,
            picture=picture_path,
            engine_result=raw,
        )

    def _picture(
        self, job: TextureJob, out_dir: Path, control: StageControl, timings: dict[str, float]
    ) -> tuple[Image.Image, Path | None, Path | None]:
        """(picture, Kontext's input grid, its output grid); no grids when the job brings its own picture."""
        if job.picture is not None:
            control.report(1.0, "painting from the textured image")
            return job.picture.convert("RGB"), None, None
        arrays = MeshArrays.from_trimesh(job.mesh.mesh)
        rendered, tiles, input_grid, edited_grid = self.stage.edit_views(
            arrays, [PAINTER_VIEW], job.edit_prompt, job.reference, job.options, out_dir, control, timings
        )
        # The object as edited, on the plain background, its exact silhouette as alpha: TRELLIS.2 takes the alpha as
        # its mask; Hunyuan3D's background removal sees an object on a plain backdrop (it drops the alpha)
        mask = rendered[0].gbuffer.mask
        rgb = np.clip(np.rint(tiles[0] * 255.0), 0, 255).astype(np.uint8)
        rgb[~mask] = BACKGROUND
        alpha = mask.astype(np.uint8) * 255
        return Image.fromarray(np.dstack([rgb, alpha]), "RGBA"), input_grid, edited_grid


def bare_glb(mesh: LoadedMesh) -> bytes:
    """``mesh`` as a GLB holding only its surface: vertices welded (UV seams would split it into loose parts that a
    painter may delete), no UVs, no material, no node transform."""
    import trimesh

    surface = trimesh.Trimesh(vertices=mesh.mesh.vertices, faces=mesh.mesh.faces, process=True)
    buffer = io.BytesIO()
    buffer.write(bytes(trimesh.Scene(surface).export(file_type="glb")))
    return buffer.getvalue()


def _extras(mesh: LoadedMesh, engine: str) -> dict[str, Any]:
    return {
        "alch3mist": {
            "stage": "texture",
            "texture_engine": engine,
            "source_format": mesh.source_format,
            "to_source": np.round(mesh.to_source, 9).tolist(),
        }
    }
