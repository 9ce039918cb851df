"""A stand-in for Hunyuan3D's ``api_server.py``: 2.0 (Tencent-Hunyuan/Hunyuan3D-2) or 2.1 (Hunyuan3D-2.1), model
stubbed, everything a client can observe kept as upstream has it.

    .venv/bin/python tests/servers/hunyuan3d_server.py --port 8081 [--version 2.0|2.1] [--enable_tex] [--fault F]

2.0 (Hunyuan3D-2 ``api_server.py``): the body is raw JSON, no validation; background removal always runs; seed,
octree resolution, steps and guidance reach the shape pipeline; a ``mesh`` field (base64 GLB) skips the shape and
textures that mesh. It textures only when started with ``--enable_tex``: otherwise ``self.pipeline_tex`` does not
exist, the ``/send`` thread dies (the job stays ``processing`` forever) and ``/generate`` answers 404 JSON.
``/status/{uid}`` is ``completed`` once ``{uid}.glb`` exists, else ``processing`` — also for unknown or failed jobs.

2.1 (Hunyuan3D-2.1 ``api_server.py`` + ``api_models.py`` + ``model_worker.py``): ``GenerationRequest`` bounds (422
outside them, e.g. ``num_inference_steps`` > 20); ``/health``; the worker converts the image to RGBA and so never
removes an RGB backdrop, and calls the shape pipeline with the image only (seed, resolution, steps, guidance and face
count are ignored); it writes ``{uid}_initial.glb``, then ``{uid}_textured.glb`` when texturing succeeds. ``/status``
is ``completed`` only when both exist, ``texturing`` when only the initial mesh does, else ``processing``: it never
says ``error``. A failed texture stage falls back to the initial mesh (``/generate`` returns it, ``/send`` stays
``texturing``); a failed shape stage leaves ``/send`` ``processing``.

Faults (``--fault``, or the content of ``--fault-file``, read on every request): ``error`` (the shape stage raises),
``texture-error`` (the texture stage raises), ``garbage`` (the GLB is not a GLB), ``hang`` (the shape never ends).
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import trimesh
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse
from PIL import Image
from pydantic import BaseModel, Field

SERVER_ERROR_MSG = "**NETWORK ERROR DUE TO HIGH TRAFFIC. PLEASE REGENERATE OR REFRESH THIS PAGE.**"  # both servers


class GenerationRequest(BaseModel):  # Hunyuan3D-2.1 api_models.py: GenerationRequest, same defaults and bounds
    image: str
    remove_background: bool = True
    texture: bool = False
    seed: int = Field(1234, ge=0, le=2**32 - 1)
    octree_resolution: int = Field(256, ge=64, le=512)
    num_inference_steps: int = Field(5, ge=1, le=20)
    guidance_scale: float = Field(5.0, ge=0.1, le=20.0)
    num_chunks: int = Field(8000, ge=1000, le=20000)
    face_count: int = Field(40000, ge=1000, le=100000)


class Stubs:
    """The models (shape, paint, background removal): all that is stubbed. Faults are read on every call."""

    def __init__(self, fault: str, fault_file: Path | None, delay_s: float, calls_log: Path | None) -> None:
        self._fault, self.fault_file, self.delay_s, self.calls_log = fault, fault_file, delay_s, calls_log

    @property
    def fault(self) -> str:
        if self.fault_file is not None and self.fault_file.is_file():
            return self.fault_file.read_text().strip()
        return self._fault

    def log(self, route: str, params: dict[str, Any], image: Image.Image | None) -> None:
        if self.calls_log is None:
            return
        fields = {k: v for k, v in params.items() if k not in ("image", "mesh")}
        if image is not None:
            alpha = np.asarray(image.convert("RGBA"))[:, :, 3]
            fields |= {"image_mode": image.mode, "alpha_coverage": round(float((alpha > 127).mean()), 4)}
        fields["has_mesh"] = "mesh" in params
        with self.calls_log.open("a") as handle:
            handle.write(json.dumps({"route": route, **fields}) + "\n")

    def remove_background(self, image: Image.Image) -> Image.Image:  # hy3dgen.rembg.BackgroundRemover (2.0)
        rgb = np.asarray(image.convert("RGB")).astype(np.int16)
        backdrop = np.median(np.stack([rgb[0, 0], rgb[0, -1], rgb[-1, 0], rgb[-1, -1]]), axis=0)
        alpha = (np.abs(rgb - backdrop).max(axis=2) > 24).astype(np.uint8) * 255
        return Image.fromarray(np.dstack([rgb.astype(np.uint8), alpha]), "RGBA")

    def shape(self, image: Image.Image) -> trimesh.Trimesh:
        """An untextured box shaped like the image's opaque region: a kept backdrop becomes part of the 'object'."""
        time.sleep(self.delay_s)
        if self.fault == "hang":
            time.sleep(3600)
        if self.fault == "error":
            raise RuntimeError("shape model failed (stand-in fault)")
        alpha = np.asarray(image.convert("RGBA"))[:, :, 3] > 127
        rows, cols = np.nonzero(alpha) if alpha.any() else (np.array([0, 1]), np.array([0, 1]))
        extent = ((np.ptp(cols) + 1) / alpha.shape[1], (np.ptp(rows) + 1) / alpha.shape[0])
        box = trimesh.creation.box(extents=(extent[0], extent[1], 0.5)).subdivide()
        box.apply_translation((2.0, 0.5, -1.0))  # Hunyuan3D meshes come out off-centre; clients normalise them
        return box

    def paint(self, mesh: trimesh.Trimesh, image: Image.Image) -> trimesh.Trimesh:
        time.sleep(self.delay_s)
        if self.fault == "texture-error":
            raise RuntimeError("paint model failed (stand-in fault)")
        span = np.ptp(mesh.vertices[:, :2], axis=0)
        uv = (mesh.vertices[:, :2] - mesh.vertices[:, :2].min(axis=0)) / np.where(span > 0, span, 1)
        texture = image.convert("RGB").resize((128, 128))
        material = trimesh.visual.material.PBRMaterial(baseColorTexture=texture, metallicFactor=0.0)
        painted = mesh.copy()
        painted.visual = trimesh.visual.TextureVisuals(uv=uv, material=material)
        return painted

    def export(self, mesh: trimesh.Trimesh, path: Path) -> None:
        if self.fault == "garbage":
            path.write_bytes(b"\x89PNG not a mesh")
        else:
            path.write_bytes(bytes(trimesh.Scene(mesh).export(file_type="glb")))


def load_image_from_base64(data: str) -> Image.Image:  # both servers: Image.open(BytesIO(base64.b64decode(image)))
    return Image.open(io.BytesIO(base64.b64decode(data)))


class Worker20:
    """Hunyuan3D-2 api_server.py ``ModelWorker``."""

    def __init__(self, stubs: Stubs, save_dir: Path, enable_tex: bool) -> None:
        self.stubs, self.save_dir = stubs, save_dir
        if enable_tex:  # api_server.py:170: the paint pipeline exists only with --enable_tex
            self.pipeline_tex = stubs.paint

    def generate(self, uid: str, params: dict[str, Any]) -> tuple[Path, str]:
        if "image" not in params:  # api_server.py:188-196
            raise ValueError("No input image or text provided")
        image = self.stubs.remove_background(load_image_from_base64(params["image"]))  # always (api_server.py:198)
        if "mesh" in params:  # api_server.py:201: texture the given mesh
            mesh = trimesh.load(io.BytesIO(base64.b64decode(params["mesh"])), file_type="glb", force="mesh")
        else:  # seed/octree_resolution/num_inference_steps/guidance_scale reach the pipeline here
            mesh = self.stubs.shape(image)
        if params.get("texture", False):  # api_server.py:215: AttributeError without --enable_tex
            mesh = self.pipeline_tex(mesh, image)
        save_path = self.save_dir / f"{uid}.{params.get('type', 'glb')}"
        self.stubs.export(mesh, save_path)
        return save_path, uid


class Worker21:
    """Hunyuan3D-2.1 model_worker.py ``ModelWorker``."""

    def __init__(self, stubs: Stubs, save_dir: Path) -> None:
        self.stubs, self.save_dir = stubs, save_dir

    def generate(self, uid: str, params: dict[str, Any]) -> tuple[Path, str]:
        image = load_image_from_base64(params["image"]).convert("RGBA")
        if image.mode == "RGB":  # never true after convert("RGBA"): an RGB backdrop is never removed
            image = self.stubs.remove_background(image)
        try:
            mesh = self.stubs.shape(image)  # self.pipeline(image=image): every other field is ignored
        except Exception as exc:
            raise ValueError(f"Failed to generate 3D mesh: {exc}") from exc
        initial = self.save_dir / f"{uid}_initial.glb"
        self.stubs.export(mesh, initial)
        final = initial
        if params.get("texture", False):
            try:
                textured = self.save_dir / f"{uid}_texturing.glb"
                self.stubs.export(self.stubs.paint(mesh, image), textured)
                final = self.save_dir / f"{uid}_textured.glb"
                textured.rename(final)
            except Exception:  # "Using untextured mesh as fallback": no _textured.glb, status stays 'texturing'
                final = initial
        return final, uid


def build_app(version: str, worker: Worker20 | Worker21, stubs: Stubs, save_dir: Path) -> FastAPI:
    app = FastAPI(title=f"Hunyuan3D-{version} api_server (stand-in)")

    def run_generate(uid: str, params: dict[str, Any]) -> FileResponse | JSONResponse:
        try:
            file_path, _ = worker.generate(uid, params)
            return FileResponse(file_path)
        except Exception:  # api_server.py: ValueError, CudaError and any other error all answer 404 JSON
            return JSONResponse({"text": SERVER_ERROR_MSG, "error_code": 1}, status_code=404)

    def start_thread(uid: str, params: dict[str, Any]) -> None:
        def job() -> None:
            try:
                worker.generate(uid, params)
            except Exception:  # the thread dies; nothing records it (both servers)
                return

        threading.Thread(target=job, daemon=True).start()

    if version == "2.0":

        @app.post("/generate")
        async def generate20(request: Request) -> Any:
            params = await request.json()
            stubs.log("/generate", params, _image_or_none(params))
            return run_generate(str(uuid.uuid4()), params)

        @app.post("/send")
        async def send20(request: Request) -> JSONResponse:
            params = await request.json()
            stubs.log("/send", params, _image_or_none(params))
            uid = str(uuid.uuid4())
            start_thread(uid, params)
            return JSONResponse({"uid": uid}, status_code=200)

        @app.get("/status/{uid}")
        async def status20(uid: str) -> JSONResponse:
            path = save_dir / f"{uid}.glb"
            if not path.exists():
                return JSONResponse({"status": "processing"}, status_code=200)
            return JSONResponse({"status": "completed", "model_base64": base64.b64encode(path.read_bytes()).decode()})

        return app

    @app.post("/generate")
    async def generate21(request: GenerationRequest) -> Any:
        params = request.model_dump()
        stubs.log("/generate", params, _image_or_none(params))
        return run_generate(str(uuid.uuid4()), params)

    @app.post("/send")
    async def send21(request: GenerationRequest) -> JSONResponse:
        params = request.model_dump()
        stubs.log("/send", params, _image_or_none(params))
        uid = str(uuid.uuid4())
        start_thread(uid, params)
        return JSONResponse({"uid": uid}, status_code=200)

    @app.get("/health")
    async def health() -> JSONResponse:
        return JSONResponse({"status": "healthy", "worker_id": "stndin"}, status_code=200)

    @app.get("/status/{uid}")
    async def status21(uid: str) -> JSONResponse:
        textured, initial = save_dir / f"{uid}_textured.glb", save_dir / f"{uid}_initial.glb"
        if textured.exists() and initial.exists():
            return JSONResponse(
                {
                    "status": "completed",
                    "model_base64": base64.b64encode(textured.read_bytes()).decode(),
                    "initial_model_base64": base64.b64encode(initial.read_bytes()).decode(),
                }
            )
        if initial.exists():
            return JSONResponse({"status": "texturing"}, status_code=200)
        return JSONResponse({"status": "processing"}, status_code=200)

    return app


def _image_or_none(params: dict[str, Any]) -> Image.Image | None:
    try:
        return load_image_from_base64(str(params.get("image", "")))
    except Exception:
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True, help="Port to listen on (127.0.0.1).")
    parser.add_argument("--version", choices=["2.0", "2.1"], default="2.1", help="Which api_server to mimic.")
    parser.add_argument("--enable_tex", action="store_true", help="2.0: load the texture pipeline (like upstream).")
    parser.add_argument(
        "--fault", choices=["", "garbage", "error", "texture-error", "hang"], default="", help="Misbehave."
    )
    parser.add_argument("--delay", type=float, default=0.2, help="Seconds each model stage takes.")
    parser.add_argument("--fault-file", type=Path, default=None, help="A file whose content overrides --fault.")
    parser.add_argument("--calls-log", type=Path, default=None, help="Where to log each request's fields (JSONL).")
    args = parser.parse_args()
    save_dir = Path(tempfile.mkdtemp(prefix="hunyuan3d-standin-"))  # SAVE_DIR / --cache-path
    stubs = Stubs(args.fault, args.fault_file, args.delay, args.calls_log)
    worker = Worker20(stubs, save_dir, args.enable_tex) if args.version == "2.0" else Worker21(stubs, save_dir)
    uvicorn.run(build_app(args.version, worker, stubs, save_dir), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
