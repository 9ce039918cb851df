"""The generation chain: request → MaterialPrompt → base image → material edit → GLB → texture → views → viewer.

``Chain.run`` reads as the product does, one numbered step per stage. Each stage is its own file under
``alch3mist/stages``; this module only sequences them, records the manifest and turns failures into a partial result
(earlier artifacts stay, the manifest says which stage failed).

Two flows, one runner and one manifest:

- **generate** (no ``mesh``): rewrite → base image → material edit → 3D engine → *texture* → views → viewer. The
  texture step runs when the engine's mesh needs it (``EngineResult.texture`` is ``"none"`` or ``"placeholder"``,
  ``retexture="auto"``) or when asked (``"always"``), painting with the job's edit prompt, the textured image as
  reference and the same seed.
- **retexture** (``GenerationRequest.mesh`` set, from ``texturing.mesh_input.load_mesh``): rewrite → texture →
  views → viewer; the base image, material edit and engine are skipped (``alch3mist retexture``).
"""

from __future__ import annotations

import io
import json
import logging
import platform
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypeVar

from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, InstanceOf

from .config import MAX_SEED, Settings, TextureEngineName
from .domain import STAGE_LABELS, ChainInfo, LoraChoice, LoraInfo, StageName
from .engines.base import EngineParams
from .errors import Alch3mistError, Cancelled, InvalidRequest, UnknownLora
from .mesh.gbuffer import CameraKind
from .prompting.schema import MaterialPrompt
from .stages import texture as texture_stage
from .stages.image_to_3d import MeshManifest
from .stages.multiview import DEFAULT_VIEWS
from .stages.progress import StageControl
from .stages.texture import TextureJob, TextureManifest, TextureOptions
from .texturing.mesh_input import InputMeshManifest, LoadedMesh, MeshLimits

if TYPE_CHECKING:
    from .engines.base import ImageTo3DEngine
    from .models.loaded import GenerationDefaults, LoadedModels
    from .prompting.rewrite import PromptRewriter
    from .stages.image_to_3d import MeshResult
    from .texturing.engines import TextureEngine

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Share of the whole job each stage stands for, for one overall progress number (full preset, roughly by time);
# a run rescales them over the stages it plans (a given mesh skips three), and a skipped stage counts as done.
STAGE_WEIGHTS: dict[StageName, float] = {
    "rewrite": 0.03,
    "base_image": 0.22,
    "material_edit": 0.25,
    "mesh": 0.2,
    "texture": 0.2,
    "views": 0.08,
    "viewer": 0.02,
}
VIEW_SIZE = 512
DEFAULT_TEXTURE_SIZE = EngineParams.model_fields["texture_size"].default
MIN_ENGINE_TEXTURE_SIZE = EngineParams.model_fields["texture_size"].metadata[0].ge
DEFAULT_RETEXTURE_SIZE = 2048  # a given mesh is the deliverable itself: a sharper texture by default
MAX_INPUT_IMAGE_SIDE = 4096
Flow = Literal["generate", "retexture"]
Retexture = Literal["auto", "always", "never"]


class TextureRequest(BaseModel):
    """How the texture step paints a mesh (a given one, or an engine's that needs it)."""

    views: int = Field(
        8, ge=texture_stage.MIN_VIEWS, le=texture_stage.MAX_VIEWS, description="Views edited and projected."
    )
    view_size: int = Field(
        512,
        ge=texture_stage.MIN_VIEW_SIZE,
        le=texture_stage.MAX_VIEW_SIZE,
        description="Side of each edited view, pixels.",
    )
    elevation: float = Field(20.0, ge=0.0, le=60.0, description="Views alternate this many degrees above/below.")
    camera: CameraKind = Field("orthographic", description="Camera of the views.")
    delight: bool = Field(True, description="Divide the neutral render's shading out of the edited views.")
    engine_options: dict[str, float | int | str | bool] = Field(
        default_factory=dict, description="A remote texture engine's own parameters, by its own names."
    )


class GenerationRequest(BaseModel):
    """What one run of the chain needs. Mirrors ``JobCreate`` with the input image already decoded."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    request: str | None = None
    base_prompt: str | None = None
    edit_prompt: str | None = None
    title: str | None = None
    base_image: Image.Image | None = Field(None, description="Input or parent base image: skips FLUX.1-dev.")
    seed: int | None = Field(None, ge=0, le=MAX_SEED)
    engine_3d: str | None = None
    lora: LoraChoice | None = None
    steps: int | None = Field(None, ge=1, le=100)
    guidance: float | None = Field(None, ge=0.0, le=30.0)
    edit_steps: int | None = Field(None, ge=1, le=100)
    edit_guidance: float | None = Field(None, ge=0.0, le=30.0)
    size: int | None = Field(None, ge=64, le=2048)
    texture_size: int | None = Field(
        None, ge=64, le=4096, description="Texture side; at least 256 when a 3D engine makes the mesh."
    )
    views: int | None = Field(None, ge=0, le=36)
    view_size: int = Field(VIEW_SIZE, ge=64, le=2048)
    rewrite_reply: str | None = Field(None, description="The caller's own model's answer for the rewrite.")
    earlier: MaterialPrompt | None = Field(None, description="The prompt of the job this one refines (context).")
    # --- texturing: a given mesh (the retexture flow), or the engine's ---
    mesh: InstanceOf[LoadedMesh] | None = Field(
        None,
        description="A mesh to texture (texturing.mesh_input.load_mesh): the base image, material edit and 3D engine "
        "are skipped and the texture step paints it.",
    )
    reference_image: Image.Image | None = Field(
        None, description="With a mesh: a picture of the material or look, one more tile of the texture grid."
    )
    retexture: Retexture = Field(
        "auto",
        description="The texture step on the 3D engine's mesh: auto = when the engine's texture is 'none' or "
        "'placeholder' (EngineResult.texture); always; never.",
    )
    texture_engine: TextureEngineName | None = Field(
        None, description="alch3mist (built in), hunyuan3d or trellis2; None = ALCH3MIST_TEXTURE_ENGINE."
    )
    texture: TextureRequest = Field(default_factory=TextureRequest, description="The texture step's knobs.")

    @property
    def flow(self) -> Flow:
        return "generate" if self.mesh is None else "retexture"


class TextureParameters(BaseModel):
    """The texture step's knobs, resolved (the seed, texture size and edit steps are the job's own)."""

    engine: str = Field(description="Texture engine: alch3mist (built in), hunyuan3d or trellis2.")
    views: int = Field(description="Views edited and projected (alch3mist).")
    view_size: int = Field(description="Side of each edited view, pixels.")
    elevation: float
    camera: CameraKind
    delight: bool
    reference_image: Literal["given", "textured image", "none"] = Field(
        description="What rode along in the grid: the caller's picture, the chain's textured image, or nothing."
    )
    engine_options: dict[str, float | int | str | bool] = Field(default_factory=dict)

    @classmethod
    def resolve(cls, req: GenerationRequest, engine: str) -> TextureParameters:
        knobs = req.texture
        reference: Literal["given", "textured image", "none"] = (
            "textured image" if req.mesh is None else "given" if req.reference_image is not None else "none"
        )
        return cls(
            engine=engine,
            views=knobs.views,
            view_size=knobs.view_size,
            elevation=knobs.elevation,
            camera=knobs.camera,
            delight=knobs.delight,
            reference_image=reference,
            engine_options=knobs.engine_options,
        )


class Parameters(BaseModel):
    """The knobs one run used, every default resolved once (from the request, else the preset's defaults)."""

    steps: int = Field(description="FLUX.1-dev steps.")
    guidance: float
    size: int = Field(description="Base image side, pixels.")
    edit_steps: int = Field(description="Kontext steps.")
    edit_guidance: float
    kontext_max_area: int = Field(description="Kontext works at an area of about this many pixels.")
    texture_size: int
    views: int = Field(description="Multiview renders (0 = none).")
    view_size: int
    base_image: Literal["generated", "given", "none"] = Field(
        "generated",
        description="given: the caller's or the parent job's image (FLUX.1-dev skipped); none: a given mesh.",
    )
    retexture: Retexture = Field("auto", description="When the texture step paints the 3D engine's mesh.")
    texture: TextureParameters | None = Field(
        None, description="The texture step's knobs, when it may run (a given mesh, or retexture auto/always)."
    )

    @classmethod
    def resolve(cls, req: GenerationRequest, defaults: GenerationDefaults, texture_engine: str) -> Parameters:
        def pick(value: T | None, default: T) -> T:
            return default if value is None else value

        texture_size = pick(req.texture_size, DEFAULT_TEXTURE_SIZE if req.mesh is None else DEFAULT_RETEXTURE_SIZE)
        plans_texture = req.mesh is not None or req.retexture != "never"
        return cls(
            steps=pick(req.steps, defaults.steps),
            guidance=pick(req.guidance, defaults.guidance),
            size=pick(req.size, defaults.size),
            edit_steps=pick(req.edit_steps, defaults.edit_steps),
            edit_guidance=pick(req.edit_guidance, defaults.edit_guidance),
            kontext_max_area=defaults.kontext_max_area,
            texture_size=texture_size,
            views=pick(req.views, DEFAULT_VIEWS),
            view_size=req.view_size,
            base_image="none" if req.mesh is not None else "given" if req.base_image is not None else "generated",
            retexture=req.retexture,
            texture=TextureParameters.resolve(req, req.texture_engine or texture_engine) if plans_texture else None,
        )


class ChainEvent(BaseModel):
    type: Literal["stage", "progress", "artifact", "warning"]
    stage: StageName | None = None
    stage_progress: float = 0.0
    progress: float = 0.0
    message: str = ""
    artifact: str | None = None


class ManifestError(BaseModel):
    stage: StageName
    code: str
    message: str


class Manifest(BaseModel):
    """Everything needed to understand and reproduce one run; written as ``manifest.json``.

    One type for both flows: ``mesh`` (the 3D engine's record) is set by a generate run, ``input_mesh`` and
    ``texture`` whenever the texture step painted a mesh (the given one, or the engine's).
    """

    flow: Flow = Field("generate", description="generate: from a request; retexture: a given mesh painted.")
    status: Literal["succeeded", "failed", "cancelled"] = "succeeded"
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    request: str | None = None
    prompt: MaterialPrompt | None = None
    seed: int
    preset: str
    device: str
    memory_plan: str
    models: dict[str, str]
    lora: LoraChoice | None = None
    engine_3d: str | None = None
    engine_is_preview: bool = False
    parameters: Parameters
    timings_s: dict[str, float] = Field(default_factory=dict)
    model_seconds: float = Field(0.0, description="Time inside the model/engine/renderer calls alone.")
    total_seconds: float = 0.0
    artifacts: list[str] = Field(default_factory=list)
    mesh: MeshManifest | None = Field(None, description="What the mesh stage made and how (engine record included).")
    input_mesh: InputMeshManifest | None = Field(None, description="The mesh the texture step was given.")
    texture: TextureManifest | None = Field(None, description="What the texture step made and how.")
    warnings: list[str] = Field(default_factory=list)
    error: ManifestError | None = None
    versions: dict[str, str] = Field(default_factory=dict)


EventSink = Callable[[ChainEvent], None]


def _drop_event(event: ChainEvent) -> None:
    return None


@dataclass
class _Run:
    """Per-run state: where artifacts go, who hears about them, the manifest being filled in, and each planned
    stage's share of the overall progress (rescaled so the planned stages make 1)."""

    out_dir: Path
    on_event: EventSink
    cancel: threading.Event
    manifest: Manifest
    weights: dict[StageName, float] = field(default_factory=dict)
    done_weight: float = 0.0

    @classmethod
    def plan(
        cls, out_dir: Path, on_event: EventSink, cancel: threading.Event, manifest: Manifest, stages: list[StageName]
    ) -> _Run:
        total = sum(STAGE_WEIGHTS[stage] for stage in stages)
        weights = {stage: STAGE_WEIGHTS[stage] / total for stage in stages}
        return cls(out_dir, on_event, cancel, manifest, weights)

    @property
    def progress(self) -> float:
        """Overall progress so far, 0..1 (the shares sum to 1 up to rounding)."""
        return min(self.done_weight, 1.0)

    def skip(self, stage: StageName) -> None:
        """A planned stage that turned out not to be needed: its share counts as done."""
        self.done_weight += self.weights.get(stage, 0.0)

    def emit(self, event: ChainEvent) -> None:
        try:
            self.on_event(event)
        except Exception:
            logger.exception("event sink failed; the run goes on")

    def control(self, stage: StageName) -> StageControl:
        weight = self.weights.get(stage, 0.0)

        def on_progress(fraction: float, message: str) -> None:
            overall = min(self.done_weight + weight * fraction, 1.0)
            self.emit(
                ChainEvent(type="progress", stage=stage, stage_progress=fraction, progress=overall, message=message)
            )

        return StageControl(on_progress=on_progress, cancel=self.cancel)

    def artifact(self, stage: StageName, path: Path) -> None:
        """Announce a file (again, when a later stage rewrote it: the texture step repaints ``model.glb``)."""
        name = path.relative_to(self.out_dir).as_posix()
        if name not in self.manifest.artifacts:
            self.manifest.artifacts.append(name)
        self.emit(ChainEvent(type="artifact", stage=stage, progress=self.progress, artifact=name))

    def warn(self, stage: StageName | None, message: str) -> None:
        # The rewrite's notes can quote the person's request: they go to the job, not to the backend log.
        logger.warning("%s", "rewrite: note recorded in the manifest" if stage == "rewrite" else message)
        self.manifest.warnings.append(message)
        self.emit(ChainEvent(type="warning", stage=stage, progress=self.progress, message=message))


class _StageStopped(Exception):
    """Internal: a stage failed or was cancelled; the manifest already says so."""


class Chain:
    """Loaded models + engines + rewriter, reused across jobs. Not thread-safe: one run at a time (one GPU)."""

    def __init__(
        self,
        settings: Settings,
        models: LoadedModels,
        engines: dict[str, ImageTo3DEngine],
        rewriter: PromptRewriter,
        texture_engines: dict[str, TextureEngine] | None = None,
    ) -> None:
        from .engines.registry import default_engine
        from .stages.base_image import BaseImageStage
        from .stages.image_to_3d import ImageTo3DStage
        from .stages.material_edit import MaterialEditStage
        from .stages.multiview import MultiviewStage
        from .stages.texture import TextureStage
        from .texturing.engines import build_texture_engines

        self.settings = settings
        self.models = models
        self.engines = engines
        self.rewriter = rewriter
        self.default_engine = default_engine(settings, models.preset)
        self.base_image = BaseImageStage(models)
        self.material_edit = MaterialEditStage(models)
        self.image_to_3d = ImageTo3DStage(engines)
        self.texture = TextureStage(models)
        self.texture_engines = (
            build_texture_engines(settings, self.texture, engines) if texture_engines is None else texture_engines
        )
        self.multiview = MultiviewStage()

    # ------------------------------------------------------------------ info / validation

    def info(self) -> ChainInfo:
        defaults = Parameters.resolve(GenerationRequest(), self.models.defaults, self.settings.texture_engine)
        return ChainInfo(
            preset=self.models.preset,
            device=self.models.device,
            memory_plan=self.models.memory_plan,
            models=self.models.model_ids,
            engines=[engine.health() for engine in self.engines.values()],
            default_engine=self.default_engine,
            loras=self.models.loras.available(),
            default_lora=self._default_lora_name(),
            defaults=defaults.model_dump(exclude={"base_image", "texture"}),
            texture_engines=[engine.health() for engine in self.texture_engines.values()],
            default_texture_engine=self.settings.texture_engine,
        )

    def rules(self) -> ChainRules:
        """What validating a request needs of this chain, without a model (the API process checks with it)."""
        return ChainRules(
            max_request_chars=self.settings.max_request_chars,
            kontext_max_area=self.models.defaults.kontext_max_area,
            default_engine=self.default_engine,
            engines=tuple(self.engines),
            texture_engines=tuple(self.texture_engines),
            default_texture_engine=self.settings.texture_engine,
            default_lora=self.settings.default_lora,
        )

    def loras(self) -> list[LoraInfo]:
        """The LoRAs a job may name now (the folder, or the ComfyUI server's, as it is at this moment)."""
        return self.models.loras.available()

    def validate(self, req: GenerationRequest) -> None:
        """Reject what would fail anyway, before any work (the API turns these into 4xx)."""
        validate_request(req, self.rules(), [info.name for info in self.loras()])

    # ------------------------------------------------------------------ the chain

    def run(
        self,
        req: GenerationRequest,
        out_dir: Path,
        on_event: EventSink = _drop_event,
        cancel: threading.Event | None = None,
    ) -> Manifest:
        out_dir.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        manifest = self._new_manifest(req)
        run = _Run.plan(out_dir, on_event, cancel or threading.Event(), manifest, _planned_stages(req))
        made: MeshResult | None = None
        picture: Image.Image | None = None
        try:
            # 1. Rewrite the request into base + edit prompts (the LLM, else the offline rewriter)
            prompt = self._rewrite(run, req)
            if req.mesh is None:
                # 2. Base image: FLUX.1-dev, or the caller's / parent job's image
                base = self._make_base_image(run, req, prompt)
                # 3. Material edit: FLUX.1 Kontext [dev] + the Alch3mist LoRA
                picture = self._apply_material(run, prompt, base)
                # 4. Image → GLB (TRELLIS / Hunyuan3D / the preview engine), normalised and validated
                made = self._build_mesh(run, picture)
            # 5. Texture: the given mesh, or the engine's when it came back untextured (retexture auto) or always
            glb_path = self._texture(run, req, prompt, made, picture)
            # 6. Multiview renders + contact sheet
            first_view = self._render_views(run, glb_path)
            # 7. Self-contained viewer page (the API also serves a URL-mode page)
            self._write_viewer(run, prompt, glb_path, picture, first_view)
        except _StageStopped:
            pass
        finally:
            run.manifest.total_seconds = round(time.perf_counter() - started, 4)
            write_json(out_dir / "manifest.json", run.manifest)
        return run.manifest

    # ------------------------------------------------------------------ stages

    def _rewrite(self, run: _Run, req: GenerationRequest) -> MaterialPrompt:
        from .prompting.rewrite import caller_prompt, clean_request

        with self._stage(run, "rewrite") as control:
            given = caller_prompt(req.base_prompt, req.edit_prompt, req.title, _has_image(req))
            if given is not None:
                prompt = given
            else:
                assert req.request is not None  # validate() guarantees it
                text = clean_request(req.request, self.settings.max_request_chars)
                outcome = self.rewriter.rewrite(text, earlier=req.earlier, reply=req.rewrite_reply)
                for warning in outcome.warnings:
                    run.warn("rewrite", warning)
                prompt = outcome.prompt
            control.report(1.0, prompt.title)
        run.manifest.prompt = prompt
        return prompt

    def _make_base_image(self, run: _Run, req: GenerationRequest, prompt: MaterialPrompt) -> Image.Image:
        p = run.manifest.parameters
        with self._stage(run, "base_image") as control:
            if req.base_image is not None:
                image = req.base_image.convert("RGB")
            else:
                image = self._timed(
                    run,
                    lambda: self.base_image.run(
                        prompt.base_prompt,
                        seed=run.manifest.seed,
                        steps=p.steps,
                        guidance=p.guidance,
                        size=p.size,
                        control=control,
                    ),
                )
            path = run.out_dir / "base.png"
            image.save(path)
        run.artifact("base_image", path)
        return image

    def _apply_material(self, run: _Run, prompt: MaterialPrompt, base: Image.Image) -> Image.Image:
        p = run.manifest.parameters
        lora = run.manifest.lora
        with self._stage(run, "material_edit") as control:
            image = self._timed(
                run,
                lambda: self.material_edit.run(
                    base,
                    prompt.edit_prompt,
                    seed=run.manifest.seed,
                    steps=p.edit_steps,
                    guidance=p.edit_guidance,
                    lora=lora.name if lora else None,
                    lora_scale=lora.scale if lora else 0.0,
                    control=control,
                ),
            )
            path = run.out_dir / "textured.png"
            image.save(path)
        run.artifact("material_edit", path)
        return image

    def _build_mesh(self, run: _Run, textured: Image.Image) -> MeshResult:
        engine = run.manifest.engine_3d or self.default_engine
        params = EngineParams(seed=run.manifest.seed, texture_size=run.manifest.parameters.texture_size)
        with self._stage(run, "mesh") as control:
            result = self._timed(
                run,
                lambda: self.image_to_3d.run(
                    textured, engine=engine, params=params, out_dir=run.out_dir, control=control
                ),
            )
        run.manifest.engine_is_preview = result.is_preview
        run.manifest.mesh = result.manifest()
        for warning in result.warnings:
            run.warn("mesh", f"{engine}: {warning}")
        if result.is_preview:
            run.warn("mesh", "3D model made by the built-in preview engine (silhouette inflation), not TRELLIS")
        run.artifact("mesh", result.glb_path)
        if result.texture_map_path is not None:
            run.artifact("mesh", result.texture_map_path)
        return result

    def _texture(
        self,
        run: _Run,
        req: GenerationRequest,
        prompt: MaterialPrompt,
        made: MeshResult | None,
        picture: Image.Image | None,
    ) -> Path:
        """Paint the given mesh, or the engine's when the ``retexture`` policy asks; the GLB the next steps show."""
        settings = run.manifest.parameters.texture
        if made is not None and (settings is None or not _wants_texture(req.retexture, made)):
            run.skip("texture")
            return made.glb_path
        assert settings is not None  # planned whenever a mesh is given or retexture is not "never"
        with self._stage(run, "texture") as control:
            if made is not None:
                run.warn("texture", _why_textured(made, settings.engine))
            mesh = req.mesh or self._engine_mesh(made)
            run.manifest.input_mesh = mesh.manifest()
            job = TextureJob(
                mesh=mesh,
                edit_prompt=prompt.edit_prompt,
                materials=prompt.materials,
                reference=req.reference_image,
                picture=picture,
                options=self._texture_options(run),
            )
            engine = self.texture_engines[settings.engine]
            result = self._timed(run, lambda: engine.texture(job, run.out_dir, control))
        run.manifest.texture = result.manifest()
        for warning in result.warnings:
            run.warn("texture", f"{result.engine} texture engine: {warning}")
        for path in result.artifacts:
            run.artifact("texture", path)
        return result.glb_path

    def _engine_mesh(self, made: MeshResult | None) -> LoadedMesh:
        """The engine's GLB as the texture step's input (decimated to the texturing face limit when over it)."""
        from .texturing.mesh_input import load_mesh

        assert made is not None
        limits = MeshLimits(
            max_bytes=max(self.settings.mesh_max_bytes, made.glb_path.stat().st_size),
            max_faces=self.settings.mesh_max_faces,
            decimate=True,
        )
        return load_mesh(made.glb_path, limits=limits)

    def _texture_options(self, run: _Run) -> TextureOptions:
        p, lora = run.manifest.parameters, run.manifest.lora
        assert p.texture is not None
        return TextureOptions(
            views=p.texture.views,
            view_size=p.texture.view_size,
            texture_size=p.texture_size,
            elevation=p.texture.elevation,
            camera=p.texture.camera,
            delight=p.texture.delight,
            seed=run.manifest.seed,
            steps=p.edit_steps,
            guidance=p.edit_guidance,
            lora=lora.name if lora else None,
            lora_scale=lora.scale if lora else 0.0,
            engine_options=dict(p.texture.engine_options),
        )

    def _render_views(self, run: _Run, glb_path: Path) -> Path | None:
        """The turntable renders; the first one (the poster of a given mesh's viewer), or None when there are none."""
        views, view_size = run.manifest.parameters.views, run.manifest.parameters.view_size
        if views == 0:
            run.skip("views")
            return None
        with self._stage(run, "views") as control:
            result = self._timed(
                run,
                lambda: self.multiview.run(glb_path, views=views, size=view_size, out_dir=run.out_dir, control=control),
            )
        for view in result.views:
            run.artifact("views", view)
        run.artifact("views", result.contact_sheet)
        return result.views[0]

    def _write_viewer(
        self,
        run: _Run,
        prompt: MaterialPrompt,
        glb_path: Path,
        picture: Image.Image | None,
        first_view: Path | None,
    ) -> None:
        from .viewer.page import render_inline_page

        with self._stage(run, "viewer"):
            caption = prompt.edit_prompt
            if run.manifest.engine_is_preview:
                caption += " — preview engine"
            page = render_inline_page(
                title=prompt.title,
                glb_bytes=glb_path.read_bytes(),
                poster_png=_poster(picture, first_view, run.out_dir),
                download_name=f"{slug(prompt.title)}.glb",
                caption=caption,
                bundle=self.settings.model_viewer_bundle,
            )
            path = run.out_dir / "viewer.html"
            path.write_text(page, encoding="utf-8")
        run.artifact("viewer", path)

    # ------------------------------------------------------------------ helpers

    @contextmanager
    def _stage(self, run: _Run, stage: StageName) -> Iterator[StageControl]:
        control = run.control(stage)
        if run.cancel.is_set():
            self._stop(run, stage, Cancelled("job cancelled"))
        run.emit(ChainEvent(type="stage", stage=stage, progress=run.progress, message=STAGE_LABELS[stage]))
        started = time.perf_counter()
        try:
            yield control
        except Cancelled as exc:
            self._stop(run, stage, exc)
        except Alch3mistError as exc:
            self._stop(run, stage, exc)
        except Exception as exc:
            logger.exception("stage %s failed", stage)
            self._stop(run, stage, exc)
        finally:
            run.manifest.timings_s[stage] = round(time.perf_counter() - started, 4)
        run.done_weight += run.weights.get(stage, 0.0)

    @staticmethod
    def _stop(run: _Run, stage: StageName, exc: BaseException) -> None:
        cancelled = isinstance(exc, Cancelled)
        code = exc.code if isinstance(exc, Alch3mistError) else type(exc).__name__
        message = exc.message if isinstance(exc, Alch3mistError) else str(exc) or type(exc).__name__
        run.manifest.status = "cancelled" if cancelled else "failed"
        run.manifest.error = ManifestError(stage=stage, code=code, message=message)
        if not cancelled:
            logger.warning("stage %s failed: %s", stage, message)
        raise _StageStopped from exc

    @staticmethod
    def _timed(run: _Run, call: Callable[[], T]) -> T:
        started = time.perf_counter()
        try:
            return call()
        finally:
            run.manifest.model_seconds += time.perf_counter() - started

    def _new_manifest(self, req: GenerationRequest) -> Manifest:
        lora_name = self._lora_name(req)
        scale = req.lora.scale if req.lora else self.settings.default_lora_scale
        return Manifest(
            flow=req.flow,
            request=req.request,
            seed=req.seed if req.seed is not None else secrets.randbelow(MAX_SEED + 1),
            preset=self.models.preset,
            device=self.models.device,
            memory_plan=self.models.memory_plan,
            models=self.models.model_ids,
            lora=LoraChoice(name=lora_name, scale=scale) if lora_name else None,
            engine_3d=(req.engine_3d or self.default_engine) if req.mesh is None else None,
            parameters=Parameters.resolve(req, self.models.defaults, self.settings.texture_engine),
            versions=versions(),
        )

    def _lora_name(self, req: GenerationRequest) -> str | None:
        if req.lora is not None and req.lora.name is not None:
            return req.lora.name
        return self._default_lora_name()

    def _default_lora_name(self) -> str | None:
        default = self.settings.default_lora
        if default and default in {info.name for info in self.models.loras.available()}:
            return default
        return None


def _has_image(req: GenerationRequest) -> bool:
    """Whether the caller brought something of their own to edit (an image, a mesh): then an edit prompt suffices."""
    return req.base_image is not None or req.mesh is not None


def _planned_stages(req: GenerationRequest) -> list[StageName]:
    """The stages a run may go through, in order: a given mesh skips the base image, material edit and engine; the
    texture step is planned unless the engine's mesh is never retextured."""
    if req.mesh is not None:
        return ["rewrite", "texture", "views", "viewer"]
    texture: list[StageName] = [] if req.retexture == "never" else ["texture"]
    return ["rewrite", "base_image", "material_edit", "mesh", *texture, "views", "viewer"]


def _wants_texture(policy: Retexture, made: MeshResult) -> bool:
    return policy == "always" or (policy == "auto" and made.needs_texture)


def _why_textured(made: MeshResult, engine: str) -> str:
    state = {"none": "came back untextured", "placeholder": "came back with a placeholder texture"}
    why = state.get(made.texture, "was textured by the engine; retexture=always asked for ours")
    return f"the {made.engine} engine's mesh {why}: painting it with the {engine} texture engine"


def _poster(picture: Image.Image | None, first_view: Path | None, out_dir: Path) -> bytes:
    """The viewer's poster: the textured image, else the first turntable render, else the texture grid Kontext made."""
    if picture is not None:
        buffer = io.BytesIO()
        picture.save(buffer, format="PNG")
        return buffer.getvalue()
    for candidate in (first_view, out_dir / texture_stage.VIEWS_DIR / texture_stage.EDITED_GRID):
        if candidate is not None and candidate.is_file():
            return candidate.read_bytes()
    return b""


@dataclass(frozen=True)
class ChainRules:
    """What checking a request needs to know of a loaded chain — names and numbers, no model — so the API process can
    validate requests while the chain itself lives in the worker process (``jobs/child.py``)."""

    max_request_chars: int
    kontext_max_area: int
    default_engine: str
    engines: tuple[str, ...]
    texture_engines: tuple[str, ...]
    default_texture_engine: str
    default_lora: str | None  # Settings.default_lora: used when a job names none, if it is in the LoRA list


def validate_request(req: GenerationRequest, rules: ChainRules, loras: list[str]) -> None:
    """Reject what would fail anyway, before any work (the API turns these into 4xx); ``loras`` are the LoRA names
    available now."""
    from .prompting.rewrite import caller_prompt, clean_request

    if req.mesh is not None or req.reference_image is not None:
        _validate_texturing(req)
    elif req.base_prompt or req.edit_prompt:
        if not (req.base_prompt and req.edit_prompt) and req.base_image is None:
            raise InvalidRequest("give both base_prompt and edit_prompt (or a request to rewrite)")
        if req.edit_prompt is None and not req.request:
            raise InvalidRequest("edit_prompt is missing: give it, or a request to rewrite")
    elif req.request is None:
        raise InvalidRequest("nothing to make: give a request, or base_prompt + edit_prompt")
    if req.request is not None:
        clean_request(req.request, rules.max_request_chars)
    caller_prompt(req.base_prompt, req.edit_prompt, req.title, _has_image(req))
    if req.base_image is not None:
        _check_input_image(req.base_image, rules.kontext_max_area)
    engine = req.engine_3d or rules.default_engine
    if req.mesh is None and engine not in rules.engines:
        raise InvalidRequest(f"unknown 3D engine {engine!r}; available: {', '.join(sorted(rules.engines))}")
    if req.mesh is None and req.texture_size is not None and req.texture_size < MIN_ENGINE_TEXTURE_SIZE:
        raise InvalidRequest(f"texture_size must be at least {MIN_ENGINE_TEXTURE_SIZE} when a 3D engine makes the mesh")
    texture_engine = req.texture_engine or rules.default_texture_engine
    if (req.mesh is not None or req.retexture != "never") and texture_engine not in rules.texture_engines:
        raise InvalidRequest(
            f"texture engine {texture_engine!r} is not configured here; available: "
            f"{', '.join(sorted(rules.texture_engines))}"
        )
    lora_name = req.lora.name if req.lora is not None and req.lora.name is not None else None
    if lora_name is None and rules.default_lora in loras:
        lora_name = rules.default_lora
    if lora_name is not None and lora_name not in loras:
        raise UnknownLora(f"unknown LoRA {lora_name!r}; available: {', '.join(loras) or 'none'}")


def _validate_texturing(req: GenerationRequest) -> None:
    """A given mesh replaces the base image, the material edit and the engine: refuse what contradicts that."""
    if req.mesh is None:
        raise InvalidRequest("reference_image goes with a mesh; without one, give the picture as the base image")
    if req.base_image is not None:
        raise InvalidRequest("with a mesh there is no base image: give the picture as reference_image")
    if req.base_prompt is not None:
        raise InvalidRequest("with a mesh there is no base image to prompt: give edit_prompt or a request")
    if not (req.request or req.edit_prompt):
        raise InvalidRequest("nothing to do: give a material request (or an edit prompt) for the mesh")
    if req.reference_image is not None:
        _check_image_size(req.reference_image)  # a tile of the grid: any aspect is letterboxed


def build_chain(settings: Settings) -> Chain:
    """Load everything once (heavy: call from a lifespan or a CLI command, never at import)."""
    from .engines.registry import build_engines
    from .models.registry import load_models
    from .prompting.rewrite import PromptRewriter

    models = load_models(settings)
    return Chain(settings, models, build_engines(settings), PromptRewriter(settings))


def _check_image_size(image: Image.Image) -> None:
    width, height = image.size
    if min(width, height) < 64:
        raise InvalidRequest(f"input image is {width}×{height}; it must be at least 64 pixels on each side")
    if max(width, height) > MAX_INPUT_IMAGE_SIDE:
        raise InvalidRequest(f"input image is {width}×{height}; the largest side allowed is {MAX_INPUT_IMAGE_SIDE}")


def _check_input_image(image: Image.Image, kontext_max_area: int) -> None:
    _check_image_size(image)
    width, height = image.size
    from .stages.image_backend import edit_size
    from .stages.image_to_3d import MIN_SIDE

    edited = edit_size(width, height, kontext_max_area)
    if min(edited) < MIN_SIDE:  # the material edit keeps the aspect ratio at its own area: too thin for the 3D stage
        raise InvalidRequest(
            f"input image is {width}×{height}: too narrow — the material edit works at {edited[0]}×{edited[1]} and "
            f"the 3D stage needs at least {MIN_SIDE} px a side; crop it closer to square"
        )


def slug(text: str) -> str:
    """A file-name-safe lowercase form of ``text`` (at most 60 characters; "alch3mist" when nothing is left)."""
    slug = "".join(ch.lower() if ch.isalnum() else "-" for ch in text).strip("-")
    return "-".join(filter(None, slug.split("-")))[:60] or "alch3mist"


def versions() -> dict[str, str]:
    """Python's and the main packages' versions, for the manifest."""
    found = {"python": platform.python_version()}
    for package in ("alch3mist", "torch", "diffusers", "transformers", "peft", "trimesh"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "not installed"
    return found


def write_json(path: Path, model: BaseModel) -> None:
    """``model`` as indented JSON at ``path``, written to a temporary file first and renamed into place."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(model.model_dump(mode="json"), indent=2, ensure_ascii=False), encoding="utf-8")
    tmp.replace(path)
