"""Stage: the material-enhanced image → a validated, normalised, textured GLB (+ its albedo map).

Input images: at least ``MIN_SIDE`` px on the shorter side; at most ``MAX_SIDE`` px on the longer side, and anything
longer than ``WORK_SIDE`` is downscaled to ``WORK_SIDE`` first (no engine uses more: TRELLIS works at 518 px,
Hunyuan3D at 512); an image that is all background is refused before any engine runs.
"""

from __future__ import annotations

import io
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError
from pydantic import BaseModel, Field

from ..engines.base import PREVIEW_LABEL, EngineParams, EngineResult, EngineTexture, ImageTo3DEngine
from ..errors import InvalidRequest
from ..mesh.compress import CompressionReport, compress_glb
from ..mesh.glb import GENERATOR
from ..mesh.postprocess import PostprocessOptions, PostprocessReport, postprocess_glb
from ..mesh.segment import segment_object
from ..mesh.validate import validate_glb, validator_available
from .progress import StageControl

logger = logging.getLogger(__name__)

MIN_SIDE = 64
MAX_SIDE = 10_000
WORK_SIDE = 2048
GLB_NAME = "model.glb"
COMPRESSED_NAME = "model.meshopt.glb"  # optional, for the web viewer only (needs its meshopt decoder)
TEXTURE_NAME = "texture.png"
RAW_NAME = "engine-raw.glb"


@dataclass
class MeshResult:
    """The stage's output: a normalised, validated GLB, its albedo map, and the record of how it was made."""

    glb_path: Path
    """The post-processed GLB (y-up, centred, unit size, textures capped), validated."""
    texture_map_path: Path | None
    """Its albedo map as a PNG, when the mesh has one."""
    engine_result: EngineResult
    """What the engine was sent, applied and left to its defaults; its clamps and warnings."""
    postprocess: PostprocessReport
    """What post-processing did (faces before/after, simplify, unwrap, texture source)."""
    validation: dict[str, Any]
    """The Khronos validator's counts (or why it did not run)."""
    compression: CompressionReport | None = None
    """The meshopt-compressed copy for the viewer, when one was made."""
    seconds: float = 0.0
    """Wall time of the whole stage."""

    @property
    def engine(self) -> str:
        return self.engine_result.engine

    @property
    def is_preview(self) -> bool:
        return self.engine_result.is_preview

    @property
    def texture(self) -> EngineTexture:
        """How the engine textured the mesh; ``"placeholder"``/``"none"`` ask for the chain's texture step."""
        return self.engine_result.texture

    @property
    def needs_texture(self) -> bool:
        return self.engine_result.needs_texture

    @property
    def faces(self) -> int:
        return self.postprocess.faces

    @property
    def vertices(self) -> int:
        return self.postprocess.vertices

    @property
    def warnings(self) -> list[str]:
        """Everything a person should know, the engine's first (clamps, ignored settings, no texture…)."""
        return [*self.engine_result.warnings, *self.postprocess.warnings]

    def manifest(self) -> MeshManifest:
        return MeshManifest(
            faces=self.faces,
            vertices=self.vertices,
            label=PREVIEW_LABEL if self.is_preview else None,
            warnings=self.warnings,
            engine=self.engine_result.manifest(),
            postprocess=self.postprocess.as_dict(),
            validation=self.validation,
            compression=None if self.compression is None else {
                "path": COMPRESSED_NAME,
                "bytes_before": self.compression.bytes_before,
                "bytes_after": self.compression.bytes_after,
            },
            seconds=round(self.seconds, 3),
        )  # fmt: skip


class MeshManifest(BaseModel):
    """The manifest's ``mesh`` section."""

    faces: int = Field(description="Faces of the delivered GLB.")
    vertices: int = Field(description="Vertices of the delivered GLB.")
    label: str | None = Field(None, description="'preview engine' when the built-in preview engine made it.")
    warnings: list[str] = Field(default_factory=list, description="The engine's and post-processing's warnings.")
    engine: dict[str, Any] = Field(
        default_factory=dict, description="The engine's record: variant, URL, sent / applied / app defaults, clamps."
    )
    postprocess: dict[str, Any] = Field(default_factory=dict, description="What post-processing did.")
    validation: dict[str, Any] = Field(default_factory=dict, description="glTF validator counts.")
    compression: dict[str, Any] | None = Field(None, description="The meshopt copy for the viewer, if any.")
    seconds: float = Field(0.0, description="Wall time of the mesh stage.")


def open_image(source: bytes | Path) -> Image.Image:
    """An uploaded file as a PIL image; ``InvalidRequest`` when it is not an image PIL can read."""
    try:
        image = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
        image.load()
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        raise InvalidRequest(f"the input is not a readable image: {exc}") from exc
    return image


class ImageTo3DStage:
    """Runs one engine, then post-processes and validates what it made."""

    def __init__(
        self,
        engines: dict[str, ImageTo3DEngine],
        *,
        postprocess: PostprocessOptions | None = None,
        require_validator: bool = False,
        compress: bool = False,
    ) -> None:
        self.engines = engines
        self.postprocess = postprocess or PostprocessOptions()
        self.require_validator = require_validator
        self.compress = compress

    def run(
        self, image: Image.Image, *, engine: str, params: EngineParams, out_dir: Path, control: StageControl
    ) -> MeshResult:
        started = time.perf_counter()
        # 1. Check inputs
        chosen = self._engine(engine)
        image = self.check_image(image)
        control.report(0.02, "image checked")
        control.raise_if_cancelled()
        out_dir.mkdir(parents=True, exist_ok=True)

        # 2. Generate the raw GLB
        raw = chosen.generate(image, params, out_dir / RAW_NAME, control.sub(0.05, 0.8))
        control.raise_if_cancelled()

        # 3. Post-process: y-up, centred, unit size, texture cap, optional simplify → unwrap → bake
        glb_path, texture_path = out_dir / GLB_NAME, out_dir / TEXTURE_NAME
        options = self._options(params)
        extras = _asset_extras(raw)
        report = postprocess_glb(
            raw.glb_path, glb_path, texture_path, options, generator=_generator(chosen), extras=extras
        )
        control.report(0.9, "mesh post-processed")

        # 4. Validate (Khronos glTF-Validator, 0 errors)
        validation = self._validate(glb_path)
        raw.glb_path.unlink(missing_ok=True)

        # 5. Optional meshopt-compressed copy for the viewer (made from the validated GLB)
        compression = self._compress(glb_path, out_dir / COMPRESSED_NAME)
        control.report(1.0, "mesh ready")
        return MeshResult(
            glb_path=glb_path,
            texture_map_path=texture_path if texture_path.is_file() else None,
            engine_result=raw,
            postprocess=report,
            validation=validation,
            compression=compression,
            seconds=time.perf_counter() - started,
        )

    # --- steps -------------------------------------------------------------------------------------------------

    def _engine(self, name: str) -> ImageTo3DEngine:
        if name not in self.engines:
            raise InvalidRequest(f"unknown 3D engine '{name}'; available: {', '.join(sorted(self.engines))}")
        return self.engines[name]

    @staticmethod
    def check_image(image: Image.Image) -> Image.Image:
        """The image to give the engine (downscaled when large); ``InvalidRequest`` for unusable images."""
        if not isinstance(image, Image.Image):
            raise InvalidRequest(f"the input is not an image (got {type(image).__name__})")
        width, height = image.size
        if min(width, height) < MIN_SIDE:
            raise InvalidRequest(f"the image is too small ({width}x{height}); it needs at least {MIN_SIDE} px a side")
        if max(width, height) > MAX_SIDE:
            raise InvalidRequest(f"the image is too large ({width}x{height}); at most {MAX_SIDE} px a side")
        if image.mode not in ("RGB", "RGBA"):
            try:
                image = image.convert("RGBA" if "A" in image.getbands() or image.mode == "P" else "RGB")
            except (ValueError, OSError) as exc:
                raise InvalidRequest(f"unsupported image mode {image.mode}: {exc}") from exc
        if max(width, height) > WORK_SIDE:
            scale = WORK_SIDE / max(width, height)
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            image = image.resize(size, Image.Resampling.LANCZOS, reducing_gap=2.0)
            logger.info("input image %dx%d downscaled to %dx%d", width, height, *image.size)
        segment_object(image)  # raises InvalidRequest when there is no object (all background)
        return image

    def _options(self, params: EngineParams) -> PostprocessOptions:
        options = PostprocessOptions(**self.postprocess.__dict__)
        if params.target_faces is not None:
            options.target_faces = params.target_faces
        options.texture_cap = min(options.texture_cap, params.texture_size)
        return options

    def _validate(self, glb_path: Path) -> dict[str, Any]:
        if not validator_available() and not self.require_validator:
            logger.warning("glTF validator not installed: %s handed out unvalidated", glb_path.name)
            return {"validator": None, "note": "gltf-validator not installed (scripts/setup-engine-test-servers.sh)"}
        return validate_glb(glb_path).as_dict()

    def _compress(self, glb_path: Path, target: Path) -> CompressionReport | None:
        return compress_glb(glb_path, target) if self.compress else None


def _generator(engine: ImageTo3DEngine) -> str:
    return f"{GENERATOR} {PREVIEW_LABEL}" if engine.is_preview else f"{GENERATOR} ({engine.name} engine)"


def _asset_extras(result: EngineResult) -> dict[str, Any]:
    info: dict[str, Any] = {"engine": result.engine, "is_preview": result.is_preview}
    if result.is_preview:
        info["label"] = PREVIEW_LABEL
        info["method"] = result.method
    return {"alch3mist": info}
