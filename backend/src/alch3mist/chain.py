"""The generation chain: request → MaterialPrompt → base image → material edit → textured GLB → views → viewer.

``Chain.run`` reads as the product does, one numbered step per stage. Each stage is its own file under
``alch3mist/stages``; this module only sequences them, records the manifest and turns failures into a partial result
(earlier artifacts stay, the manifest says which stage failed).
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
from pydantic import BaseModel, ConfigDict, Field

from .config import MAX_SEED, Settings
from .domain import STAGE_LABELS, ChainInfo, LoraChoice, StageName
from .engines.base import EngineParams
from .errors import Alch3mistError, Cancelled, InvalidRequest, UnknownLora
from .prompting.schema import MaterialPrompt
from .stages.image_to_3d import MeshManifest
from .stages.multiview import DEFAULT_VIEWS
from .stages.progress import StageControl

if TYPE_CHECKING:
    from .engines.base import ImageTo3DEngine
    from .models.loaded import GenerationDefaults, LoadedModels
    from .prompting.rewrite import PromptRewriter

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Share of the whole job each stage stands for, for one overall progress number (full preset, roughly by time).
STAGE_WEIGHTS: dict[StageName, float] = {
    "rewrite": 0.03,
    "base_image": 0.27,
    "material_edit": 0.35,
    "mesh": 0.25,
    "views": 0.08,
    "viewer": 0.02,
}
VIEW_SIZE = 512
DEFAULT_TEXTURE_SIZE = EngineParams.model_fields["texture_size"].default
MAX_INPUT_IMAGE_SIDE = 4096


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
    texture_size: int | None = Field(None, ge=256, le=4096)
    views: int | None = Field(None, ge=0, le=36)
    view_size: int = Field(VIEW_SIZE, ge=64, le=2048)
    rewrite_reply: str | None = Field(None, description="The caller's own model's answer for the rewrite.")
    earlier: MaterialPrompt | None = Field(None, description="The prompt of the job this one refines (context).")


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
    base_image: Literal["generated", "given"] = Field(
        "generated", description="given: the caller's image or the parent job's base image (FLUX.1-dev skipped)."
    )

    @classmethod
    def resolve(cls, req: GenerationRequest, defaults: GenerationDefaults) -> Parameters:
        def pick(value: T | None, default: T) -> T:
            return default if value is None else value

        return cls(
            steps=pick(req.steps, defaults.steps),
            guidance=pick(req.guidance, defaults.guidance),
            size=pick(req.size, defaults.size),
            edit_steps=pick(req.edit_steps, defaults.edit_steps),
            edit_guidance=pick(req.edit_guidance, defaults.edit_guidance),
            kontext_max_area=defaults.kontext_max_area,
            texture_size=pick(req.texture_size, DEFAULT_TEXTURE_SIZE),
            views=pick(req.views, DEFAULT_VIEWS),
            view_size=req.view_size,
            base_image="given" if req.base_image is not None else "generated",
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
    """Everything needed to understand and reproduce one run; written as ``manifest.json``."""

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
    warnings: list[str] = Field(default_factory=list)
    error: ManifestError | None = None
    versions: dict[str, str] = Field(default_factory=dict)


EventSink = Callable[[ChainEvent], None]


def _drop_event(event: ChainEvent) -> None:
    return None


@dataclass
class _Run:
    """Per-run state: where artifacts go, who hears about them, and the manifest being filled in."""

    out_dir: Path
    on_event: EventSink
    cancel: threading.Event
    manifest: Manifest
    done_weight: float = 0.0
    stage_started: dict[str, float] = field(default_factory=dict)

    def emit(self, event: ChainEvent) -> None:
        try:
            self.on_event(event)
        except Exception:
            logger.exception("event sink failed; the run goes on")

    def control(self, stage: StageName) -> StageControl:
        weight = STAGE_WEIGHTS[stage]

        def on_progress(fraction: float, message: str) -> None:
            overall = self.done_weight + weight * fraction
            self.emit(
                ChainEvent(type="progress", stage=stage, stage_progress=fraction, progress=overall, message=message)
            )

        return StageControl(on_progress=on_progress, cancel=self.cancel)

    def artifact(self, stage: StageName, path: Path) -> None:
        name = path.relative_to(self.out_dir).as_posix()
        self.manifest.artifacts.append(name)
        self.emit(ChainEvent(type="artifact", stage=stage, progress=self.done_weight, artifact=name))

    def warn(self, stage: StageName | None, message: str) -> None:
        # The rewrite's notes can quote the person's request: they go to the job, not to the backend log.
        logger.warning("%s", "rewrite: note recorded in the manifest" if stage == "rewrite" else message)
        self.manifest.warnings.append(message)
        self.emit(ChainEvent(type="warning", stage=stage, progress=self.done_weight, message=message))


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
    ) -> None:
        from .engines.registry import default_engine
        from .stages.base_image import BaseImageStage
        from .stages.image_to_3d import ImageTo3DStage
        from .stages.material_edit import MaterialEditStage
        from .stages.multiview import MultiviewStage

        self.settings = settings
        self.models = models
        self.engines = engines
        self.rewriter = rewriter
        self.default_engine = default_engine(settings, models.preset)
        self.base_image = BaseImageStage(models)
        self.material_edit = MaterialEditStage(models)
        self.image_to_3d = ImageTo3DStage(engines)
        self.multiview = MultiviewStage()

    # ------------------------------------------------------------------ info / validation

    def info(self) -> ChainInfo:
        defaults = Parameters.resolve(GenerationRequest(), self.models.defaults)
        return ChainInfo(
            preset=self.models.preset,
            device=self.models.device,
            memory_plan=self.models.memory_plan,
            models=self.models.model_ids,
            engines=[engine.health() for engine in self.engines.values()],
            default_engine=self.default_engine,
            loras=self.models.loras.available(),
            default_lora=self._default_lora_name(),
            defaults=defaults.model_dump(exclude={"base_image"}),
        )

    def validate(self, req: GenerationRequest) -> None:
        """Reject what would fail anyway, before any work (the API turns these into 4xx)."""
        from .prompting.rewrite import caller_prompt, clean_request

        if req.base_prompt or req.edit_prompt:
            if not (req.base_prompt and req.edit_prompt) and req.base_image is None:
                raise InvalidRequest("give both base_prompt and edit_prompt (or a request to rewrite)")
            if req.edit_prompt is None and not req.request:
                raise InvalidRequest("edit_prompt is missing: give it, or a request to rewrite")
        elif req.request is None:
            raise InvalidRequest("nothing to make: give a request, or base_prompt + edit_prompt")
        if req.request is not None:
            clean_request(req.request, self.settings.max_request_chars)
        caller_prompt(req.base_prompt, req.edit_prompt, req.title, req.base_image is not None)
        if req.base_image is not None:
            _check_input_image(req.base_image, self.models.defaults.kontext_max_area)
        engine = req.engine_3d or self.default_engine
        if engine not in self.engines:
            raise InvalidRequest(f"unknown 3D engine {engine!r}; available: {', '.join(sorted(self.engines))}")
        lora_name = self._lora_name(req)
        if lora_name is not None:
            names = [info.name for info in self.models.loras.available()]
            if lora_name not in names:
                raise UnknownLora(f"unknown LoRA {lora_name!r}; available: {', '.join(names) or 'none'}")

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
        run = _Run(out_dir, on_event, cancel or threading.Event(), self._new_manifest(req))
        try:
            # 1. Rewrite the request into base + edit prompts (the LLM, else the offline rewriter)
            prompt = self._rewrite(run, req)
            # 2. Base image: FLUX.1-dev, or the caller's / parent job's image
            base = self._make_base_image(run, req, prompt)
            # 3. Material edit: FLUX.1 Kontext [dev] + the Alch3mist LoRA
            textured = self._apply_material(run, prompt, base)
            # 4. Image → textured GLB (TRELLIS / Hunyuan3D / the preview engine), normalised and validated
            glb_path = self._build_mesh(run, textured)
            # 5. Multiview renders + contact sheet
            self._render_views(run, glb_path)
            # 6. Self-contained viewer page (the API also serves a URL-mode page)
            self._write_viewer(run, prompt, glb_path, textured)
        except _StageStopped:
            pass
        finally:
            run.manifest.total_seconds = round(time.perf_counter() - started, 4)
            _write_json(out_dir / "manifest.json", run.manifest)
        return run.manifest

    # ------------------------------------------------------------------ stages

    def _rewrite(self, run: _Run, req: GenerationRequest) -> MaterialPrompt:
        from .prompting.rewrite import caller_prompt, clean_request

        with self._stage(run, "rewrite") as control:
            given = caller_prompt(req.base_prompt, req.edit_prompt, req.title, req.base_image is not None)
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

    def _build_mesh(self, run: _Run, textured: Image.Image) -> Path:
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
        return result.glb_path

    def _render_views(self, run: _Run, glb_path: Path) -> None:
        views, view_size = run.manifest.parameters.views, run.manifest.parameters.view_size
        if views == 0:
            return
        with self._stage(run, "views") as control:
            result = self._timed(
                run,
                lambda: self.multiview.run(
                    glb_path, views=views, size=view_size, out_dir=run.out_dir, control=control
                ),
            )
        for view in result.views:
            run.artifact("views", view)
        run.artifact("views", result.contact_sheet)

    def _write_viewer(self, run: _Run, prompt: MaterialPrompt, glb_path: Path, textured: Image.Image) -> None:
        from .viewer.page import render_inline_page

        with self._stage(run, "viewer"):
            poster = io.BytesIO()
            textured.save(poster, format="PNG")
            caption = prompt.edit_prompt
            if run.manifest.engine_is_preview:
                caption += " — preview engine"
            page = render_inline_page(
                title=prompt.title,
                glb_bytes=glb_path.read_bytes(),
                poster_png=poster.getvalue(),
                download_name=f"{_slug(prompt.title)}.glb",
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
        run.emit(ChainEvent(type="stage", stage=stage, progress=run.done_weight, message=STAGE_LABELS[stage]))
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
        run.done_weight += STAGE_WEIGHTS[stage]

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
            request=req.request,
            seed=req.seed if req.seed is not None else secrets.randbelow(MAX_SEED + 1),
            preset=self.models.preset,
            device=self.models.device,
            memory_plan=self.models.memory_plan,
            models=self.models.model_ids,
            lora=LoraChoice(name=lora_name, scale=scale) if lora_name else None,
            engine_3d=req.engine_3d or self.default_engine,
            parameters=Parameters.resolve(req, self.models.defaults),
            versions=_versions(),
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




def build_chain(settings: Settings) -> Chain:
    """Load everything once (heavy: call from a lifespan or a CLI command, never at import)."""
    from .engines.registry import build_engines
    from .models.registry import load_models
    from .prompting.rewrite import PromptRewriter

    models = load_models(settings)
    return Chain(settings, models, build_engines(settings), PromptRewriter(settings))


def _check_input_image(image: Image.Image, kontext_max_area: int) -> None:
    width, height = image.size
    if min(width, height) < 64:
        raise InvalidRequest(f"input image is {width}×{height}; it must be at least 64 pixels on each side")
    if max(width, height) > MAX_INPUT_IMAGE_SIDE:
        raise InvalidRequest(f"input image is {width}×{height}; the largest side allowed is {MAX_INPUT_IMAGE_SIDE}")
    from .stages.image_backend import edit_size
    from .stages.image_to_3d import MIN_SIDE

    edited = edit_size(width, height, kontext_max_area)
    if min(edited) < MIN_SIDE:  # the material edit keeps the aspect ratio at its own area: too thin for the 3D stage
        raise InvalidRequest(
            f"input image is {width}×{height}: too narrow — the material edit works at {edited[0]}×{edited[1]} and "
            f"the 3D stage needs at least {MIN_SIDE} px a side; crop it closer to square"
        )


def _slug(text: str) -> str:
    slug = "".join(ch.lower() if ch.isalnum() else "-" for ch in text).strip("-")
    return "-".join(filter(None, slug.split("-")))[:60] or "alch3mist"


def _versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for package in ("alch3mist", "torch", "diffusers", "transformers", "peft", "trimesh"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "not installed"
    return found


def _write_json(path: Path, model: BaseModel) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(model.model_dump(mode="json"), indent=2, ensure_ascii=False), encoding="utf-8")
    tmp.replace(path)
