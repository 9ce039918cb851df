"""``alch3mist retexture MESH "request"``: texture a mesh you already have, from a material request.

The flow is the chain's with the mesh given instead of made: rewrite → texture (multi-view Kontext + LoRA edits
projected into a UV texture) → views → viewer. The output folder holds what ``alch3mist generate`` writes —
``model.glb``, ``texture.png``, ``views/``, ``contact_sheet.png``, ``viewer.html``, ``manifest.json`` — plus the
grid of views sent to Kontext and what came back (``texture_views/``).

The mesh is checked before any model loads (:func:`~alch3mist.texturing.mesh_input.load_mesh`, the loader the API
will use for uploads): a wrong file fails in a second with a clear message.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from PIL import Image
from pydantic import BaseModel, Field

# The chain's events and error record (one format for every run), its helpers, and the CLI's progress bars and Ctrl-C
from ..chain import ChainEvent, EventSink, ManifestError, _slug, _versions, _write_json
from ..cli import _cancel_on_signal, _StageBars
from ..config import MAX_SEED, Settings
from ..domain import LoraChoice, StageName
from ..errors import Alch3mistError, Cancelled, InvalidRequest, UnknownLora
from ..mesh.gbuffer import CameraKind
from ..prompting.schema import MaterialPrompt
from ..stages.image_to_3d import open_image
from ..stages.progress import StageControl
from ..stages.texture import TextureOptions, TextureResult, TextureStage
from .mesh_input import LoadedMesh, MeshLimits, load_mesh

if TYPE_CHECKING:
    from ..models.loaded import GenerationDefaults, LoadedModels
    from ..prompting.rewrite import PromptRewriter

__all__ = [
    "RETEXTURE_STAGES",
    "InputMeshFacts",
    "RetextureManifest",
    "RetextureParameters",
    "RetextureRequest",
    "Retexturer",
    "TextureFacts",
    "add_arguments",
    "main",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

RETEXTURE_STAGES: tuple[StageName, ...] = ("rewrite", "texture", "views", "viewer")
STAGE_WEIGHTS: dict[StageName, float] = {"rewrite": 0.02, "texture": 0.85, "views": 0.1, "viewer": 0.03}
STAGE_MESSAGES: dict[StageName, str] = {
    "rewrite": "Writing the prompts",
    "texture": "Texturing the mesh (FLUX.1 Kontext + Alch3mist LoRA on a grid of views)",
    "views": "Rendering views",
    "viewer": "Preparing the viewer",
}
EXAMPLE = "make it crocodile leather"


@dataclass
class RetextureRequest:
    """One retexture run: the material request (or an already-written Kontext instruction) and its knobs."""

    request: str | None = None
    edit_prompt: str | None = None
    reference: Image.Image | None = None
    seed: int | None = None
    lora: LoraChoice | None = None
    options: TextureOptions = field(default_factory=TextureOptions)
    views: int = 8  # turntable renders of the result (0 = none)
    view_size: int = 512


class RetextureParameters(BaseModel):
    """The knobs one retexture run used, every default resolved once (from the request, else the preset's)."""

    texture_views: int = Field(description="Views edited and projected.")
    texture_view_size: int = Field(description="Side of each edited view, pixels.")
    texture_size: int
    elevation: float = Field(description="The views alternate this many degrees above and below the horizon.")
    camera: CameraKind
    delight: bool = Field(description="The neutral render's shading was divided out of the edited views.")
    edit_steps: int
    edit_guidance: float
    kontext_max_area: int
    reference_image: bool
    views: int = Field(description="Turntable renders of the result (0 = none).")
    view_size: int

    @classmethod
    def resolve(cls, req: RetextureRequest, defaults: GenerationDefaults) -> RetextureParameters:
        options = req.options
        return cls(
            texture_views=options.views,
            texture_view_size=options.view_size,
            texture_size=options.texture_size,
            elevation=options.elevation,
            camera=options.camera,
            delight=options.delight,
            edit_steps=defaults.edit_steps if options.steps is None else options.steps,
            edit_guidance=defaults.edit_guidance if options.guidance is None else options.guidance,
            kontext_max_area=defaults.kontext_max_area,
            reference_image=req.reference is not None,
            views=req.views,
            view_size=req.view_size,
        )


class InputMeshFacts(BaseModel):
    """The mesh as given, and what loading it changed."""

    format: str
    faces: int = Field(description="Triangles in the file.")
    primitives: int = Field(description="Mesh instances merged into one.")
    had_uv: bool
    to_source: list[list[float]] = Field(description="4x4 matrix from model.glb's frame back to the file's.")
    notes: list[str]

    @classmethod
    def of(cls, mesh: LoadedMesh) -> InputMeshFacts:
        return cls(
            format=mesh.source_format,
            faces=mesh.source_faces,
            primitives=mesh.source_primitives,
            had_uv=mesh.has_uv,
            to_source=mesh.to_source.round(9).tolist(),
            notes=mesh.notes,
        )


class TextureFacts(BaseModel):
    """What the texture stage reported."""

    coverage: float = Field(description="Share of the texture's surface texels some view saw (the rest filled).")
    uv_source: str = Field(description="mesh: its own UVs were kept; xatlas: a new atlas.")
    uv_reason: str | None = Field(None, description="Why the mesh's own UVs were not kept.")
    metallic: float
    roughness: float
    pbr_source: str
    faces: int
    vertices: int
    timings_s: dict[str, float]
    validation: dict[str, Any]

    @classmethod
    def of(cls, result: TextureResult) -> TextureFacts:
        return cls(
            coverage=round(result.coverage, 4),
            uv_source=result.uv_source,
            uv_reason=result.uv_reason,
            metallic=result.pbr.metallic,
            roughness=result.pbr.roughness,
            pbr_source=result.pbr.source,
            faces=result.faces,
            vertices=result.vertices,
            timings_s=result.timings_s,
            validation=result.validation,
        )


class RetextureManifest(BaseModel):
    """Everything needed to understand and reproduce one retexture run; written as ``manifest.json``.

    The same fields as the chain's ``Manifest`` where they mean the same; ``input_mesh`` and ``texture`` instead of
    the engine's ``mesh``.
    """

    flow: Literal["retexture"] = "retexture"
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
    parameters: RetextureParameters
    input_mesh: InputMeshFacts
    texture: TextureFacts | None = None
    timings_s: dict[str, float] = Field(default_factory=dict)
    model_seconds: float = Field(0.0, description="Time inside the model/renderer calls alone.")
    total_seconds: float = 0.0
    artifacts: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    error: ManifestError | None = None
    versions: dict[str, str] = Field(default_factory=dict)


class Retexturer:
    """Loaded models + rewriter, reused across runs (one at a time, like the chain)."""

    def __init__(self, settings: Settings, models: LoadedModels, rewriter: PromptRewriter) -> None:
        from ..stages.multiview import MultiviewStage

        self.settings = settings
        self.models = models
        self.rewriter = rewriter
        self.texture = TextureStage(models)
        self.multiview = MultiviewStage()

    def validate(self, req: RetextureRequest) -> None:
        """Refuse what would fail anyway, before any work."""
        if not (req.request or req.edit_prompt):
            raise InvalidRequest("nothing to do: give a material request (or an edit prompt)")
        if req.seed is not None and not 0 <= req.seed <= MAX_SEED:
            raise InvalidRequest(f"the seed must be within 0..{MAX_SEED}")
        TextureStage.check_options(req.options)
        lora = self._lora_name(req)
        if lora is not None and lora not in {info.name for info in self.models.loras.available()}:
            names = ", ".join(info.name for info in self.models.loras.available()) or "none"
            raise UnknownLora(f"unknown LoRA {lora!r}; available: {names}")

    def run(
        self,
        req: RetextureRequest,
        mesh: LoadedMesh,
        out_dir: Path,
        on_event: EventSink | None = None,
        cancel: threading.Event | None = None,
    ) -> RetextureManifest:
        """Rewrite → texture → views → viewer into ``out_dir``; the manifest says what ran and what failed."""
        out_dir.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        run = _Run(out_dir, on_event or (lambda event: None), cancel or threading.Event(), self._manifest(req, mesh))
        try:
            # 1. Rewrite the request into the Kontext instruction (the LLM, else the offline rewriter)
            prompt = self._rewrite(run, req)
            # 2. Texture the mesh: views → one Kontext + LoRA edit of their grid → back-projection → GLB
            result = self._texture(run, req, mesh, prompt)
            # 3. Turntable renders of the textured GLB + contact sheet
            first_view = self._render_views(run, req, result.glb_path)
            # 4. The self-contained viewer page
            self._write_viewer(run, prompt, result, first_view)
        except _Stopped:
            pass
        finally:
            run.manifest.total_seconds = round(time.perf_counter() - started, 4)
            _write_json(out_dir / "manifest.json", run.manifest)
        return run.manifest

    # --- steps ------------------------------------------------------------------------------------------------

    def _rewrite(self, run: _Run, req: RetextureRequest) -> MaterialPrompt:
        from ..prompting.rewrite import prompt_from_caller

        with run.stage("rewrite") as control:
            if req.edit_prompt is not None:
                prompt = prompt_from_caller(req.edit_prompt, req.edit_prompt, None)
            else:
                assert req.request is not None  # validate() guarantees it
                outcome = self.rewriter.rewrite(req.request)
                for warning in outcome.warnings:
                    run.warn("rewrite", warning)
                prompt = outcome.prompt
            control.report(1.0, prompt.title)
        run.manifest.prompt = prompt
        return prompt

    def _texture(self, run: _Run, req: RetextureRequest, mesh: LoadedMesh, prompt: MaterialPrompt) -> TextureResult:
        lora, parameters = run.manifest.lora, run.manifest.parameters
        options = replace(
            req.options,
            seed=run.manifest.seed,
            steps=parameters.edit_steps,
            guidance=parameters.edit_guidance,
            lora=lora.name if lora else None,
            lora_scale=lora.scale if lora else 0.0,
        )
        with run.stage("texture") as control:
            result = run.timed(
                lambda: self.texture.run(
                    mesh,
                    prompt.edit_prompt,
                    materials=prompt.materials,
                    reference=req.reference,
                    options=options,
                    out_dir=run.out_dir,
                    control=control,
                )
            )
        run.manifest.texture = TextureFacts.of(result)
        for warning in result.warnings:
            run.warn("texture", warning)
        for path in (result.glb_path, result.texture_path, result.input_grid, result.edited_grid):
            run.artifact("texture", path)
        return result

    def _render_views(self, run: _Run, req: RetextureRequest, glb_path: Path) -> Path | None:
        if req.views == 0:
            return None
        with run.stage("views") as control:
            result = run.timed(
                lambda: self.multiview.run(
                    glb_path, views=req.views, size=req.view_size, out_dir=run.out_dir, control=control
                )
            )
        for view in result.views:
            run.artifact("views", view)
        run.artifact("views", result.contact_sheet)
        return result.views[0]

    def _write_viewer(self, run: _Run, prompt: MaterialPrompt, result: TextureResult, first_view: Path | None) -> None:
        from ..viewer.page import render_inline_page

        with run.stage("viewer"):
            poster = (first_view or result.input_grid).read_bytes()
            page = render_inline_page(
                title=prompt.title,
                glb_bytes=result.glb_path.read_bytes(),
                poster_png=poster,
                download_name=f"{_slug(prompt.title)}.glb",
                caption=prompt.edit_prompt,
                bundle=self.settings.model_viewer_bundle,
            )
            path = run.out_dir / "viewer.html"
            path.write_text(page, encoding="utf-8")
        run.artifact("viewer", path)

    # --- helpers ----------------------------------------------------------------------------------------------

    def _manifest(self, req: RetextureRequest, mesh: LoadedMesh) -> RetextureManifest:
        import secrets

        lora_name = self._lora_name(req)
        scale = req.lora.scale if req.lora else self.settings.default_lora_scale
        return RetextureManifest(
            request=req.request,
            seed=req.seed if req.seed is not None else secrets.randbelow(MAX_SEED + 1),
            preset=self.models.preset,
            device=self.models.device,
            memory_plan=self.models.memory_plan,
            models=self.models.model_ids,
            lora=LoraChoice(name=lora_name, scale=scale) if lora_name else None,
            parameters=RetextureParameters.resolve(req, self.models.defaults),
            input_mesh=InputMeshFacts.of(mesh),
            versions=_versions(),
        )

    def _lora_name(self, req: RetextureRequest) -> str | None:
        if req.lora is not None and req.lora.name is not None:
            return req.lora.name
        default = self.settings.default_lora
        if default and default in {info.name for info in self.models.loras.available()}:
            return default
        return None


class _Stopped(Exception):
    """Internal: a stage failed or was cancelled; the manifest already says so."""


# Adapted from alch3mist.chain._Run and Chain._stage/_stop/_timed: the same events and manifest records, for this
# flow's stages and weights (the chain's are keyed to its six stages); one runner for both once the chain runs it.
@dataclass
class _Run:
    """Per-run state: where artifacts go, who hears about them, the manifest being filled in."""

    out_dir: Path
    on_event: EventSink
    cancel: threading.Event
    manifest: RetextureManifest
    done_weight: float = 0.0

    def emit(self, event: ChainEvent) -> None:
        try:
            self.on_event(event)
        except Exception:
            logger.exception("event sink failed; the run goes on")

    @contextmanager
    def stage(self, stage: StageName) -> Iterator[StageControl]:
        weight = STAGE_WEIGHTS[stage]

        def on_progress(fraction: float, message: str) -> None:
            overall = self.done_weight + weight * fraction
            self.emit(
                ChainEvent(type="progress", stage=stage, stage_progress=fraction, progress=overall, message=message)
            )

        if self.cancel.is_set():
            self._stop(stage, Cancelled("job cancelled"))
        self.emit(ChainEvent(type="stage", stage=stage, progress=self.done_weight, message=STAGE_MESSAGES[stage]))
        started = time.perf_counter()
        try:
            yield StageControl(on_progress=on_progress, cancel=self.cancel)
        except Alch3mistError as exc:
            self._stop(stage, exc)
        except Exception as exc:
            logger.exception("stage %s failed", stage)
            self._stop(stage, exc)
        finally:
            self.manifest.timings_s[stage] = round(time.perf_counter() - started, 4)
        self.done_weight += weight

    def _stop(self, stage: StageName, exc: BaseException) -> None:
        cancelled = isinstance(exc, Cancelled)
        code = exc.code if isinstance(exc, Alch3mistError) else type(exc).__name__
        message = exc.message if isinstance(exc, Alch3mistError) else str(exc) or type(exc).__name__
        self.manifest.status = "cancelled" if cancelled else "failed"
        self.manifest.error = ManifestError(stage=stage, code=code, message=message)
        raise _Stopped from exc

    def timed(self, call: Callable[[], T]) -> T:
        started = time.perf_counter()
        try:
            return call()
        finally:
            self.manifest.model_seconds += time.perf_counter() - started

    def artifact(self, stage: StageName, path: Path) -> None:
        name = path.relative_to(self.out_dir).as_posix()
        self.manifest.artifacts.append(name)
        self.emit(ChainEvent(type="artifact", stage=stage, progress=self.done_weight, artifact=name))

    def warn(self, stage: StageName, message: str) -> None:
        logger.warning("%s", message)
        self.manifest.warnings.append(message)
        self.emit(ChainEvent(type="warning", stage=stage, progress=self.done_weight, message=message))


# --------------------------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("mesh", type=Path, help="The mesh to texture: GLB, glTF (data embedded), OBJ or PLY.")
    parser.add_argument("request", nargs="?", default=None, help=f'The material, in any language (e.g. "{EXAMPLE}").')
    parser.add_argument("--out", type=Path, required=True, help="Output folder (model.glb, texture.png, views, …).")
    parser.add_argument("--image", type=Path, default=None, help="A reference picture of the material or look.")
    parser.add_argument("--views", type=int, default=8, help="Views edited and projected (2-16).")
    parser.add_argument("--view-size", type=int, default=512, help="Side of each edited view in pixels.")
    parser.add_argument("--texture-size", type=int, default=2048, help="Side of the texture in pixels.")
    parser.add_argument(
        "--seed", type=int, default=None, help="Seed; the same mesh + request + seed repeats the result."
    )
    parser.add_argument(
        "--preset",
        choices=("tiny", "full", "auto"),
        default=None,
        help="tiny: random local models (CPU, offline); full: real weights; auto: full on CUDA (default: settings).",
    )
    parser.add_argument("--lora", default=None, help="LoRA name from the LoRA folder (default: the server default).")
    parser.add_argument("--lora-scale", type=float, default=1.0, help="LoRA strength; 0 runs the edit without it.")
    parser.add_argument("--edit-prompt", default=None, help="Already-written Kontext instruction (skips the rewrite).")
    parser.add_argument("--edit-steps", type=int, default=None, help="Kontext denoising steps (default: by preset).")
    parser.add_argument(
        "--camera", choices=("orthographic", "perspective"), default="orthographic", help="Camera of the views."
    )
    parser.add_argument("--elevation", type=float, default=20.0, help="Views alternate ± this many degrees.")
    parser.add_argument("--no-delight", action="store_true", help="Keep the edit's shading in the texture.")
    parser.add_argument("--up-axis", choices=("y", "z"), default="y", help="The mesh's up axis (glTF: y).")
    parser.add_argument(
        "--decimate", action="store_true", help="Simplify a mesh over the face limit instead of refusing it."
    )
    parser.add_argument("--render-views", type=int, default=8, help="Turntable renders of the result (0 = none).")
    parser.add_argument("--render-size", type=int, default=512, help="Side of each turntable render in pixels.")


def main(args: argparse.Namespace) -> int:
    """Check the mesh, load the models, run; 0 when every stage succeeded."""
    from ..models.registry import load_models
    from ..prompting.rewrite import PromptRewriter

    settings = Settings(**({"preset": args.preset} if args.preset else {}))
    # 1. Check the inputs before loading any model
    mesh = load_mesh(args.mesh, limits=MeshLimits.from_settings(settings, decimate=args.decimate), up_axis=args.up_axis)
    for note in mesh.notes:
        logger.info("mesh: %s", note)
    req = _request(args)
    TextureStage.check_options(req.options)
    # 2. Load the models once
    retexturer = Retexturer(settings, load_models(settings), PromptRewriter(settings))
    retexturer.validate(req)
    # 3. Run, with progress bars; Ctrl-C cancels at the next step
    cancel = threading.Event()
    previous = signal.signal(signal.SIGINT, _cancel_on_signal(cancel))
    try:
        with _StageBars() as bars:
            manifest = retexturer.run(req, mesh, args.out, on_event=bars.update, cancel=cancel)
    finally:
        signal.signal(signal.SIGINT, previous)
    for warning in manifest.warnings:
        logger.warning("%s", warning)
    summary = {"status": manifest.status, "out": str(args.out.resolve()), "seed": manifest.seed}
    summary["coverage"] = manifest.texture.coverage if manifest.texture else None
    summary["artifacts"] = [name for name in manifest.artifacts if not name.startswith("views/view_")]
    sys.stdout.write(json.dumps(summary, indent=2) + "\n")
    if manifest.error is not None:
        logger.error("stage %s failed: %s", manifest.error.stage, manifest.error.message)
        return 1 if manifest.status == "failed" else 130
    return 0


def _request(args: argparse.Namespace) -> RetextureRequest:
    reference = None
    if args.image is not None:
        if not args.image.is_file():
            raise InvalidRequest(f"--image {args.image}: no such file")
        reference = open_image(args.image)
    camera: Literal["orthographic", "perspective"] = args.camera
    return RetextureRequest(
        request=args.request,
        edit_prompt=args.edit_prompt,
        reference=reference,
        seed=args.seed,
        lora=LoraChoice(name=args.lora, scale=args.lora_scale) if args.lora or args.lora_scale != 1.0 else None,
        options=TextureOptions(
            views=args.views,
            view_size=args.view_size,
            texture_size=args.texture_size,
            elevation=args.elevation,
            camera=camera,
            delight=not args.no_delight,
            steps=args.edit_steps,
        ),
        views=args.render_views,
        view_size=args.render_size,
    )
