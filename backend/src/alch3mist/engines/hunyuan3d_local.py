"""Engine ``hunyuan3d-local``: Hunyuan3D-2's shape model (``hy3dgen``, from PyPI) running inside this process.

Optional and off by default (``ALCH3MIST_HUNYUAN3D_LOCAL=true``): the weights are under the Tencent Hunyuan 3D 2.0
Community Licence, which does not cover the EU, the UK or South Korea. ``generate`` reads as its steps:

1. check the engine may run (enabled, hy3dgen installed) and segment the object: our own segmentation
   (``mesh.segment``) becomes the alpha channel hy3dgen recentres the object on (no rembg);
2. load the pipeline once, lazily, behind a lock (``models.hunyuan3d``: hy3dgen's own loader; the tiny preset's model
   through the same calls) and apply the configured 3D LoRA;
3. sample: the DiT's flow-matching steps (progress and cancel at every step, through hy3dgen's step callback), the
   ShapeVAE's volume decoding in chunks of ``num_chunks`` query points (progress and cancel at every chunk, through a
   forward pre-hook on its geometry decoder) and marching cubes at ``octree_resolution``. On CUDA the weights go to the
   GPU for the job only — all of them (``resident``) when the free VRAM allows, else one model at a time
   (``model_offload``) — and back to host memory after it, so the FLUX stages get the GPU back; a CUDA out-of-memory
   error retries on the lighter plan, then with fewer query points per chunk, then is an error naming the settings;
4. texture: a single-view projection of the input image onto the mesh (front view, seen through to the back), said
   in the result's warnings and marked ``texture="placeholder"``: the chain's texture step repaints it;
5. write the GLB (the image-to-3D stage then post-processes and validates it).

Devices come from the loaded model, never a hard-coded ``.cuda()``. Same image + seed + settings → same mesh bytes.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from ..config import Settings
from ..errors import EngineError, EngineUnavailable, OutOfMemory
from ..mesh.glb import export_glb
from ..mesh.segment import Silhouette, segment_object
from ..stages.progress import StageControl
from .base import EngineHealth, EngineParams, EngineResult

if TYPE_CHECKING:
    import torch
    import trimesh

    from ..models.hunyuan3d import ShapeSource
    from ..models.shape_lora import ShapeLoraManager

logger = logging.getLogger(__name__)

ENGINE_NAME = "hunyuan3d-local"
LICENCE = "Tencent Hunyuan 3D 2.0 Community Licence (not for use in the EU, the UK or South Korea)"
ENABLE_HINT = (
    "hunyuan3d-local is off: set ALCH3MIST_HUNYUAN3D_LOCAL=true once you have read and accepted the " + LICENCE
)
PROJECTION_WARNING = (
    "textured by a single-view projection of the input image (front view, seen through to the back): "
    "the sides and back repeat the front"
)
GiB = 1024**3
RESIDENT_MIN_FREE = 10 * GiB  # DiT 2.2 GiB + DINOv2-giant 2.2 GiB + ShapeVAE 0.4 GiB in fp16, plus decoding headroom
MIN_NUM_CHUNKS = 2000
BOX = 1.01  # hy3dgen's default bounds of the decoded volume (box_v)
IGNORED_PARAMS = ("simplify", "resolution", "ss_steps", "ss_guidance", "slat_steps", "slat_guidance")  # TRELLIS's


@dataclass(frozen=True)
class ShapeDefaults:
    """What a job gets when neither it nor the settings say otherwise."""

    steps: int
    guidance: float
    octree_resolution: int
    num_chunks: int


TINY_SHAPE_DEFAULTS = ShapeDefaults(steps=3, guidance=5.0, octree_resolution=32, num_chunks=8000)
FULL_SHAPE_STEPS, FULL_SHAPE_GUIDANCE = 30, 5.0  # hy3dgen's app and API server defaults


def decoding_defaults(free_vram: int | None) -> tuple[int, int]:
    """(octree_resolution, num_chunks) for the free VRAM (``None``: CPU). Peak decoding memory grows with
    ``num_chunks`` (activations of one chunk) and with octree_resolution³ (the grid of logits): docs/benchmarks.md."""
    if free_vram is None:
        return 256, 8000  # hy3dgen's own num_chunks default; the CPU's attention materialises every chunk's scores
    if free_vram >= 24 * GiB:
        return 384, 200_000  # hy3dgen's Gradio app uses 200k chunks
    if free_vram >= 12 * GiB:
        return 384, 50_000
    if free_vram >= 8 * GiB:
        return 256, 20_000
    return 256, 8000


@dataclass
class ShapeResult:
    """One generated shape, before texturing."""

    mesh: trimesh.Trimesh  # untextured, in hy3dgen's [-1.01, 1.01] box, y up, front towards +z
    silhouette: Silhouette
    rgba: Image.Image  # the image the model saw (object segmented into the alpha channel)
    steps: int
    guidance: float
    octree_resolution: int
    num_chunks: int
    memory_plan: str
    seconds: dict[str, float] = field(default_factory=dict)


class Hunyuan3DLocalEngine:
    """Hunyuan3D-2 shape generation in-process; the model loads on the first job, once."""

    name = ENGINE_NAME
    is_preview = False

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._pipe: Any = None
        self._loras: ShapeLoraManager | None = None
        self._source: ShapeSource | None = None
        self._device: torch.device | None = None
        self._hooks: list[Any] = []

    # --- health ------------------------------------------------------------------------------------------------

    def health(self) -> EngineHealth:
        from ..models.hunyuan3d import hy3dgen_installed

        if not self.settings.hunyuan3d_local:
            return EngineHealth(name=self.name, available=False, detail=ENABLE_HINT)
        if not hy3dgen_installed():
            return EngineHealth(
                name=self.name, available=False, detail="hy3dgen is not installed: bash scripts/install-hunyuan3d.sh"
            )
        where = f"{self._source.model}/{self._source.subfolder}" if self._source else self.settings.hunyuan3d_model
        state = f"loaded on {self._device}" if self._pipe is not None else "loads on the first job"
        return EngineHealth(
            name=self.name,
            available=True,
            detail=f"in-process hy3dgen {_hy3dgen_version()}: {where}, {state}; {LICENCE}",
        )

    # --- the engine interface ----------------------------------------------------------------------------------

    def generate(self, image: Image.Image, params: EngineParams, out_path: Path, control: StageControl) -> EngineResult:
        started = time.perf_counter()
        # 1-3. Shape: segment, load once, sample + decode
        shape = self.generate_shape(image, params, control)
        control.raise_if_cancelled()
        # 4. Texture: single-view projection until the texture stage takes over
        textured = project_front_view(shape.mesh, image, shape.silhouette, params.texture_size)
        control.report(0.95, "hunyuan3d-local: texture projected")
        # 5. GLB
        glb_bytes = export_glb(_scene(textured), out_path, generator=f"material-alch3mist ({ENGINE_NAME})")
        control.report(1.0, "hunyuan3d-local: GLB written")
        shape.seconds["total"] = round(time.perf_counter() - started, 3)
        return self._result(out_path, shape, params, glb_bytes)

    def generate_shape(
        self,
        image: Image.Image,
        params: EngineParams,
        control: StageControl,
        lora: tuple[str | None, float] | None = None,
    ) -> ShapeResult:
        """The untextured mesh for ``image``; ``lora`` = (name, scale) overrides the configured 3D LoRA."""
        self._check_can_run()
        timings: dict[str, float] = {}
        clock = time.perf_counter()
        silhouette = segment_object(image)
        rgba = with_object_alpha(image, silhouette)
        control.report(0.02, "hunyuan3d-local: object segmented")
        with self._lock:  # one job at a time owns the pipeline (and the GPU placement)
            pipe = self._load()
            timings["load"] = round(time.perf_counter() - clock, 3)
            self.loras.activate(*(lora or (self.settings.hunyuan3d_lora, self.settings.hunyuan3d_lora_scale)))
            steps, guidance, octree, chunks = self._job_settings(params)
            clock = time.perf_counter()
            mesh, plan, chunks = self._sample_with_fallback(
                pipe, rgba, params.seed, steps, guidance, octree, chunks, control
            )
            timings["sample"] = round(time.perf_counter() - clock, 3)
        return ShapeResult(mesh, silhouette, rgba, steps, guidance, octree, chunks, plan, timings)

    @property
    def loras(self) -> ShapeLoraManager:
        if self._loras is None:
            raise EngineError(self.name, None, "the model is not loaded yet")
        return self._loras

    # --- 1. checks ---------------------------------------------------------------------------------------------

    def _check_can_run(self) -> None:
        from ..models.hunyuan3d import hy3dgen_installed

        if not self.settings.hunyuan3d_local:
            raise EngineUnavailable(self.name, None, ENABLE_HINT)
        if not hy3dgen_installed():
            raise EngineUnavailable(self.name, None, "hy3dgen is not installed: bash scripts/install-hunyuan3d.sh")

    # --- 2. load -----------------------------------------------------------------------------------------------

    def _load(self) -> Any:
        if self._pipe is not None:
            return self._pipe
        import torch

        from ..models.hunyuan3d import FULL_MODEL_DTYPE, load_shape_pipeline, shape_source
        from ..models.registry import resolve_preset
        from ..models.shape_lora import ShapeLoraManager

        cuda = torch.cuda.is_available()
        preset = resolve_preset(self.settings.preset, cuda)
        source = shape_source(self.settings, preset, cuda)
        dtype = FULL_MODEL_DTYPE if cuda else torch.float32
        # Loaded into host memory: it goes to the GPU for each job only (the FLUX stages share it).
        pipe = load_shape_pipeline(source, torch.device("cpu"), dtype, self.settings.cache_dir)
        self._device = torch.device("cuda" if cuda else "cpu")
        self._source = source
        self._loras = ShapeLoraManager(pipe, self.settings.loras3d_path)
        self._pipe = pipe
        return pipe

    def _job_settings(self, params: EngineParams) -> tuple[int, float, int, int]:
        """Steps, guidance, octree resolution, num_chunks: the job's own values, else the settings, else defaults."""
        from ..models.memory import free_vram_bytes

        assert self._source is not None
        if self._source.preset == "tiny":
            defaults = TINY_SHAPE_DEFAULTS
        else:
            octree, chunks = decoding_defaults(free_vram_bytes())
            defaults = ShapeDefaults(FULL_SHAPE_STEPS, FULL_SHAPE_GUIDANCE, octree, chunks)
        steps = params.num_inference_steps or defaults.steps
        guidance = params.guidance_scale if params.guidance_scale is not None else defaults.guidance
        octree = params.octree_resolution or self.settings.hunyuan3d_octree_resolution or defaults.octree_resolution
        return steps, guidance, octree, self.settings.hunyuan3d_num_chunks or defaults.num_chunks

    # --- 3. sample ---------------------------------------------------------------------------------------------

    def _sample_with_fallback(
        self,
        pipe: Any,
        rgba: Image.Image,
        seed: int,
        steps: int,
        guidance: float,
        octree: int,
        chunks: int,
        control: StageControl,
    ) -> tuple[trimesh.Trimesh, str, int]:
        """Sample on the plan the free VRAM allows; CUDA OOM → the next attempt of ``fallback_attempts``."""
        import torch

        from ..models.memory import free_vram_bytes

        assert self._device is not None
        attempts = fallback_attempts(self._device.type, free_vram_bytes(), chunks)
        for index, (plan, attempt_chunks) in enumerate(attempts):
            out_of_memory = False
            try:
                self._place(pipe, plan)
                mesh = self._sample(pipe, rgba, seed, steps, guidance, octree, attempt_chunks, control)
                return mesh, plan, attempt_chunks
            except torch.OutOfMemoryError:
                out_of_memory = True
            finally:
                self._park(pipe)
            if out_of_memory and index + 1 == len(attempts):
                raise OutOfMemory(
                    f"CUDA out of memory in hunyuan3d-local even with one model at a time and {attempt_chunks} query "
                    "points per chunk. Lower ALCH3MIST_HUNYUAN3D_OCTREE_RESOLUTION (e.g. 256) or "
                    "ALCH3MIST_HUNYUAN3D_NUM_CHUNKS, or free the GPU (ALCH3MIST_MEMORY_PLAN=group_offload keeps "
                    "less of FLUX on it)."
                )
            logger.warning(
                "hunyuan3d-local: CUDA out of memory on %s; retrying with %s", attempts[index], attempts[index + 1]
            )
        raise AssertionError("unreachable: attempts is never empty")

    def _sample(
        self,
        pipe: Any,
        rgba: Image.Image,
        seed: int,
        steps: int,
        guidance: float,
        octree: int,
        chunks: int,
        control: StageControl,
    ) -> trimesh.Trimesh:
        import torch

        def on_step(step: int, timestep: Any, outputs: Any) -> None:
            control.report(0.05 + 0.65 * (step + 1) / steps, f"hunyuan3d-local: step {step + 1}/{steps}")
            control.raise_if_cancelled()

        total_chunks = math.ceil((octree + 1) ** 3 / chunks)  # hy3dgen's VanillaVolumeDecoder: one call per chunk
        done = [0]

        def on_chunk(module: Any, args: Any, kwargs: Any) -> None:
            control.raise_if_cancelled()
            done[0] += 1
            control.report(
                0.7 + 0.2 * done[0] / total_chunks, f"hunyuan3d-local: volume chunk {done[0]}/{total_chunks}"
            )

        hook = pipe.vae.geo_decoder.register_forward_pre_hook(on_chunk, with_kwargs=True)
        try:
            meshes = pipe(
                image=rgba,
                num_inference_steps=steps,
                guidance_scale=guidance,
                generator=torch.Generator(device="cpu").manual_seed(seed),  # same latents on any device
                octree_resolution=octree,
                num_chunks=chunks,
                box_v=BOX,
                output_type="trimesh",
                enable_pbar=False,
                callback=on_step,
                callback_steps=1,
            )
        finally:
            hook.remove()
        mesh: trimesh.Trimesh | None = meshes[0] if meshes else None
        if mesh is None or len(mesh.faces) == 0:
            raise EngineError(self.name, None, "the model decoded no surface (empty occupancy): try another seed")
        control.report(0.9, "hunyuan3d-local: surface extracted")
        return mesh

    def _place(self, pipe: Any, plan: str) -> None:
        """Put the weights where ``plan`` wants them for one job (host memory is where they rest)."""
        assert self._device is not None
        if plan == "resident":
            pipe.to(device=self._device)
            return
        from accelerate import cpu_offload_with_hook

        hook = None
        for module in (pipe.conditioner, pipe.model, pipe.vae):  # hy3dgen's model_cpu_offload_seq
            _, hook = cpu_offload_with_hook(module, self._device, prev_module_hook=hook)
            self._hooks.append(hook)
        pipe.device = self._device  # the latents and timesteps are created there

    def _park(self, pipe: Any) -> None:
        """Back to host memory after a job (or a failed attempt): the GPU is the FLUX stages' again."""
        assert self._device is not None
        if self._device.type != "cuda":
            return
        import torch

        for hook in self._hooks:
            hook.remove()
        self._hooks.clear()
        pipe.to(device="cpu")
        torch.cuda.empty_cache()

    def _result(self, out_path: Path, shape: ShapeResult, params: EngineParams, glb_bytes: int) -> EngineResult:
        assert self._source is not None
        active = self.loras.active()
        sent = {
            "num_inference_steps": shape.steps,
            "guidance_scale": shape.guidance,
            "octree_resolution": shape.octree_resolution,
            "num_chunks": shape.num_chunks,
            "seed": params.seed,
        }
        warnings = [PROJECTION_WARNING]
        set_but_ignored = [name for name in IGNORED_PARAMS if getattr(params, name) is not None] + sorted(
            params.options
        )
        if set_but_ignored:
            warnings.append(f"ignored (not Hunyuan3D-2 shape settings): {', '.join(set_but_ignored)}")
        return EngineResult(
            glb_path=out_path,
            engine=self.name,
            is_preview=False,
            variant=f"Hunyuan3D-2 shape (hy3dgen {_hy3dgen_version()}, in-process)",
            sent=sent,
            applied=dict(sent),
            app_defaults={"box_v": BOX, "mc_level": 0.0, "mc_algo": "mc"},
            warnings=warnings,
            texture="placeholder",  # the chain's texture step repaints it (retexture="auto")
            glb_bytes=glb_bytes,
            method="Hunyuan3D-2 shape model; texture: single-view projection of the input image",
            details={
                "model": f"{self._source.model}/{self._source.subfolder}",
                "preset": self._source.preset,
                "device": str(self._device),
                "memory_plan": shape.memory_plan,
                "lora": {"name": active[0], "scale": active[1]} if active else None,
                "segmentation": shape.silhouette.method,
                "faces": len(shape.mesh.faces),
                "closed": bool(shape.mesh.is_watertight),
                "timings_s": shape.seconds,
                "licence": LICENCE,
            },
        )


def fallback_attempts(device_type: str, free_vram: int | None, num_chunks: int) -> list[tuple[str, int]]:
    """(memory plan, num_chunks) to try in order: on the CPU only ``resident``; on CUDA ``resident`` when the free VRAM
    allows, then ``model_offload``, then ``model_offload`` with a quarter and a sixteenth of the chunk size."""
    if device_type != "cuda":
        return [("resident", num_chunks)]
    plans = ["resident", "model_offload"] if (free_vram or 0) >= RESIDENT_MIN_FREE else ["model_offload"]
    attempts = [(plan, num_chunks) for plan in plans]
    for divisor in (4, 16):
        smaller = max(MIN_NUM_CHUNKS, num_chunks // divisor)
        if smaller < attempts[-1][1]:
            attempts.append(("model_offload", smaller))
    return attempts


def with_object_alpha(image: Image.Image, silhouette: Silhouette) -> Image.Image:
    """The image as RGBA with the object's silhouette as alpha (an image's own real alpha is kept)."""
    if silhouette.method == "alpha":
        return image.convert("RGBA")
    mask = Image.fromarray(silhouette.mask.astype(np.uint8) * 255).resize(image.size, Image.Resampling.BILINEAR)
    rgba = image.convert("RGBA")
    rgba.putalpha(mask.point(lambda value: 255 if value >= 128 else 0))
    return rgba


def project_front_view(
    mesh: trimesh.Trimesh, image: Image.Image, silhouette: Silhouette, texture_size: int
) -> trimesh.Trimesh:
    """A copy of ``mesh`` textured by projecting the image's object along the view axis (z): each vertex takes the
    colour at its (x, y) within the mesh's bounding box, mapped onto the object's bounding box in the image."""
    import trimesh

    from .preview import _bleed  # the preview engine's background bleeding: no background colour at the rim

    row0, row1, col0, col1 = silhouette.bbox
    mask_h, mask_w = silhouette.mask.shape
    width, height = image.size
    box = (col0 * width // mask_w, row0 * height // mask_h, col1 * width // mask_w, row1 * height // mask_h)
    side = max(64, min(texture_size, 2048))
    crop = image.convert("RGB").crop(box).resize((side, side), Image.Resampling.BILINEAR)
    mask = Image.fromarray(silhouette.mask[row0:row1, col0:col1].astype(np.uint8) * 255).resize((side, side))
    texture = Image.fromarray(_bleed(np.asarray(crop), np.asarray(mask) > 127))
    lower, upper = mesh.bounds
    extent = np.maximum(upper - lower, 1e-9)
    uv = (np.asarray(mesh.vertices)[:, :2] - lower[:2]) / extent[:2]  # u from x (right), v from y (up)
    material = trimesh.visual.material.PBRMaterial(
        name="hunyuan3d-local-projection", baseColorTexture=texture, metallicFactor=0.0, roughnessFactor=0.8
    )
    return trimesh.Trimesh(
        vertices=np.asarray(mesh.vertices),
        faces=np.asarray(mesh.faces),
        visual=trimesh.visual.TextureVisuals(uv=uv, material=material),
        process=False,
    )


def _scene(mesh: trimesh.Trimesh) -> trimesh.Scene:
    import trimesh

    scene = trimesh.Scene()
    scene.add_geometry(mesh, geom_name=ENGINE_NAME)
    return scene


def _hy3dgen_version() -> str:
    try:
        return version("hy3dgen")
    except PackageNotFoundError:
        return "(not installed)"


__all__ = [
    "ENGINE_NAME",
    "Hunyuan3DLocalEngine",
    "ShapeResult",
    "decoding_defaults",
    "fallback_attempts",
    "project_front_view",
    "with_object_alpha",
]
