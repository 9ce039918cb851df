"""A stand-in for Hunyuan3D-2.x's ``api_server.py``: the same routes, request fields and answers, no model.

    .venv/bin/python tests/servers/hunyuan3d_server.py --port 8081 [--version 2.0|2.1] [--fault F] [--delay S]

Routes: ``POST /generate`` (the GLB, or JSON ``{text, error_code}`` with 404 on failure), ``POST /send`` (``{uid}``,
the work runs in a thread), ``GET /status/{uid}`` (processing → [texturing, 2.1] → completed with ``model_base64``),
``GET /health`` (2.1 only). Requests are validated with 2.1's field bounds. The GLB is a small textured box made with
trimesh, coloured by the input image. Faults (``--fault``, or the content of ``--fault-file``, read on every
request): ``garbage`` (model_base64 / the body is not a GLB), ``error`` (the job fails), ``hang`` (the job never
finishes).
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import trimesh
import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from PIL import Image
from pydantic import BaseModel, Field

SERVER_ERROR_MSG = "**NETWORK ERROR DUE TO HIGH TRAFFIC. PLEASE REGENERATE OR REFRESH THIS PAGE.**"


class GenerationRequest(BaseModel):
    image: str
    remove_background: bool = True
    texture: bool = False
    seed: int = Field(1234, ge=0, le=2**32 - 1)
    octree_resolution: int = Field(256, ge=64, le=512)
    num_inference_steps: int = Field(5, ge=1, le=20)
    guidance_scale: float = Field(5.0, ge=0.1, le=20.0)
    num_chunks: int = Field(8000, ge=1000, le=20000)
    face_count: int = Field(40000, ge=1000, le=100000)


class Worker:
    def __init__(
        self, version: str, fault: str, delay_s: float, calls_log: Path | None, fault_file: Path | None
    ) -> None:
        self.version, self._fault, self.delay_s, self.calls_log = version, fault, delay_s, calls_log
        self.fault_file = fault_file
        self.jobs: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()

    @property
    def fault(self) -> str:
        """--fault-file's content when it exists (tests switch it per request), else --fault."""
        if self.fault_file is not None and self.fault_file.is_file():
            return self.fault_file.read_text().strip()
        return self._fault

    def log(self, route: str, request: GenerationRequest) -> None:
        if self.calls_log is not None:
            fields = request.model_dump(exclude={"image"})
            with self.calls_log.open("a") as handle:
                handle.write(json.dumps({"route": route, **fields}) + "\n")

    def generate(self, uid: str, request: GenerationRequest) -> bytes:
        image = Image.open(io.BytesIO(base64.b64decode(request.image)))
        image.load()
        self.set(uid, status="processing")
        time.sleep(self.delay_s)
        if self.fault == "hang":
            time.sleep(3600)
        if self.fault == "error":
            raise ValueError("No input image or text provided")
        if request.texture and self.version == "2.1":
            self.set(uid, status="texturing")
            time.sleep(self.delay_s)
        return b"\x89PNG not a mesh" if self.fault == "garbage" else textured_box(image)

    def run_job(self, uid: str, request: GenerationRequest) -> None:
        try:
            glb = self.generate(uid, request)
        except ValueError as exc:
            # 2.0 leaves a failed job "processing" forever; 2.1 reports the error
            self.set(uid, status="error" if self.version == "2.1" else "processing", message=str(exc))
            return
        self.set(uid, status="completed", model_base64=base64.b64encode(glb).decode())

    def set(self, uid: str, **fields: Any) -> None:
        with self.lock:
            self.jobs[uid] = fields


def textured_box(image: Image.Image) -> bytes:
    box = trimesh.creation.box(extents=(1.0, 2.0, 1.0))
    box = box.subdivide()
    uv = (box.vertices[:, [0, 1]] - box.vertices[:, [0, 1]].min(axis=0)) / np.ptp(box.vertices[:, [0, 1]], axis=0)
    texture = image.convert("RGB").resize((128, 128))
    material = trimesh.visual.material.PBRMaterial(baseColorTexture=texture, metallicFactor=0.0, roughnessFactor=0.9)
    box.visual = trimesh.visual.TextureVisuals(uv=uv, material=material)
    # Hunyuan3D meshes come out z-up-ish and off-centre; the client's post-processing normalises them
    box.apply_translation((2.0, 0.5, -1.0))
    return bytes(trimesh.Scene(box).export(file_type="glb"))


def build_app(worker: Worker) -> FastAPI:
    app = FastAPI(title="Hunyuan3D API Server (stand-in)")

    @app.post("/generate")
    def generate(request: GenerationRequest) -> Response:
        worker.log("/generate", request)
        uid = str(uuid.uuid4())
        try:
            glb = worker.generate(uid, request)
        except ValueError:
            return JSONResponse({"text": SERVER_ERROR_MSG, "error_code": 1}, status_code=404)
        return Response(glb, media_type="model/gltf-binary")

    @app.post("/send")
    def send(request: GenerationRequest) -> JSONResponse:
        worker.log("/send", request)
        uid = str(uuid.uuid4())
        worker.set(uid, status="processing")
        threading.Thread(target=worker.run_job, args=(uid, request), daemon=True).start()
        return JSONResponse({"uid": uid})

    @app.get("/status/{uid}")
    def status(uid: str) -> JSONResponse:
        with worker.lock:
            job = dict(worker.jobs.get(uid, {"status": "processing"}))
        if job["status"] == "error":
            return JSONResponse({"status": "error", "message": job.get("message", "")}, status_code=500)
        job.pop("message", None)
        return JSONResponse(job)

    if worker.version == "2.1":

        @app.get("/health")
        def health() -> JSONResponse:
            return JSONResponse({"status": "healthy", "worker_id": "standin"})

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True, help="Port to listen on (127.0.0.1).")
    parser.add_argument("--version", choices=["2.0", "2.1"], default="2.1", help="Which api_server to mimic.")
    parser.add_argument("--fault", choices=["", "garbage", "error", "hang"], default="", help="Misbehave.")
    parser.add_argument("--delay", type=float, default=0.2, help="Seconds each generation stage takes.")
    parser.add_argument("--fault-file", type=Path, default=None, help="A file whose content overrides --fault.")
    parser.add_argument("--calls-log", type=Path, default=None, help="Where to log each request's fields (JSONL).")
    args = parser.parse_args()
    worker = Worker(args.version, args.fault, args.delay, args.calls_log, args.fault_file)
    uvicorn.run(build_app(worker), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
