"""A stand-in for Hunyuan3D's ``api_server.py``: 2.0 (Tencent-Hunyuan/Hunyuan3D-2) or 2.1 (Hunyuan3D-2.1), model
stubbed, everything a client can observe kept as upstream has it.

    .venv/bin/python tests/servers/hunyuan3d_server.py --port 8081 [--version 2.0|2.1] [--enable_tex] [--fault F]

2.0 (Hunyuan3D-2 ``api_server.py``): the body is raw JSON, no validation; background removal always runs; seed,
octree resolution, steps and guidance reach the shape pipeline; a ``mesh`` field (base64 GLB) skips the shape and
textures that mesh. It textures only when started with ``--enable_tex``: otherwise ``self.pipeline_tex`` does not
exist, the ``/send`` thread dies (the job stays ``processing`` forever) and ``/generate`` answers 404 JSON.
``/status/{uid}`` is ``completed`` once ``{uid}.glb`` exists, else ``processing`` — also for unknown or failed jobs.
Before painting, the mesh (made or given) goes through ``hy3dgen/shapegen/postprocessors.py``: FloaterRemover (parts
with under 0.5 % of the largest part's faces deleted), DegenerateFaceRemover (a PLY round trip) and FaceReducer (to
``face_count``, default 40,000) — flattening a given scene WITHOUT its node transforms; then the paint pipeline
(``hy3dgen/texgen/pipelines.py``): new xatlas UVs, a 2048² texture, a ``SimpleMaterial``; then export, reload,
export (api_server.py:221-226).

2.1 (Hunyuan3D-2.1 ``api_server.py`` + ``api_models.py`` + ``model_worker.py``): ``GenerationRequest`` bounds (422
outside them, e.g. ``num_inference_steps`` > 20); ``/health``; the worker converts the image to RGBA and so never
removes an RGB backdrop, and calls the shape pipeline with the image only (seed, resolution, steps, guidance and face
count are ignored); it writes ``{uid}_initial.glb``, then ``{uid}_textured.glb`` when texturing succeeds. ``/status``
is ``completed`` only when both exist, ``texturing`` when only the initial mesh does, else ``processing``: it never
says ``error``. A failed texture stage falls back to the initial mesh (``/generate`` returns it, ``/send`` stays
``texturing``); a failed shape stage leaves ``/send`` ``processing``.

Faults (``--fault``, or the content of ``--fault-file``, read on every request): ``error`` (the shape stage raises),
``texture-error`` (the texture stage raises), ``garbage`` (the GLB is not a GLB), ``hang`` (the shape never ends),
``slow-write`` (the exported GLB stays half-written for 0.6 s, as a big one does upstream).
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
        """Hunyuan3D-2.1's paint model (hy3dpaint): a small texture of the image over planar UVs."""
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

    def export(self, mesh: trimesh.Trimesh | trimesh.Scene, path: Path) -> None:
        if self.fault == "garbage":
            path.write_bytes(b"\x89PNG not a mesh")
            return
        scene = mesh if isinstance(mesh, trimesh.Scene) else trimesh.Scene(mesh)
        data = bytes(scene.export(file_type="glb"))
        # Both api_server.py workers export straight to the file /status reads (mesh.export(save_file_path)), so a
        # poll can meet a file still being written; "slow-write" holds it half-written for a while.
        with path.open("wb") as file:
            if self.fault == "slow-write":
                file.write(data[: len(data) // 2])
                file.flush()
                time.sleep(0.6)
            file.write(data[len(data) // 2 :] if self.fault == "slow-write" else data)


def load_image_from_base64(data: str) -> Image.Image:  # both servers: Image.open(BytesIO(base64.b64decode(image)))
    return Image.open(io.BytesIO(base64.b64decode(data)))


PAINT_TEXTURE_SIZE = 2048  # Hunyuan3D-2 hy3dgen/texgen/pipelines.py Hunyuan3DTexGenConfig.texture_size


class Paint20:
    """Hunyuan3D-2 ``hy3dgen/texgen/pipelines.py`` ``Hunyuan3DPaintPipeline.__call__``; the models are stubbed."""

    def __init__(self, stubs: Stubs) -> None:
        self.stubs = stubs

    def __call__(self, mesh: trimesh.Trimesh | trimesh.Scene, image: Image.Image) -> trimesh.Trimesh:
        time.sleep(self.stubs.delay_s)
        if self.stubs.fault == "texture-error":
            raise RuntimeError("paint model failed (stand-in fault)")
        prompt = recenter_image(image)  # then the delight model (stubbed: the picture as it is)
        mesh = mesh_uv_wrap(mesh)
        # The multiview diffusion + bake + inpaint (stubbed): the picture's object colour all over a 2048² texture
        texture = Image.new("RGB", (PAINT_TEXTURE_SIZE, PAINT_TEXTURE_SIZE), object_colour(prompt))
        # differentiable_renderer/mesh_utils.py save_mesh: the vertices as given, the new UVs, a SimpleMaterial
        material = trimesh.visual.texture.SimpleMaterial(image=texture, diffuse=(255, 255, 255))
        mesh.visual = trimesh.visual.TextureVisuals(uv=mesh.visual.uv, image=texture, material=material)
        return mesh


def recenter_image(image: Image.Image, border_ratio: float = 0.2) -> Image.Image:
    """pipelines.py ``recenter_image``: RGB as it is; RGBA cropped to its opaque part with a transparent border."""
    if image.mode == "RGB":
        return image
    if image.mode == "L":
        return image.convert("RGB")
    alpha = np.asarray(image)[:, :, 3]
    found = np.argwhere(alpha > 0)
    if found.size == 0:
        raise ValueError("Image is fully transparent")
    (top, left), (bottom, right) = found.min(axis=0), found.max(axis=0)
    cropped = image.crop((int(left), int(top), int(right) + 1, int(bottom) + 1))
    width, height = int(cropped.width * (1 + 2 * border_ratio)), int(cropped.height * (1 + 2 * border_ratio))
    side = max(width, height)
    centred = Image.new("RGBA", (side, side), (255, 255, 255, 0))
    centred.paste(cropped, ((side - cropped.width) // 2, (side - cropped.height) // 2))
    return centred


def object_colour(image: Image.Image) -> tuple[int, int, int]:
    """Mean colour of the picture's opaque pixels (all of them for an RGB picture)."""
    rgba = np.asarray(image.convert("RGBA")).reshape(-1, 4)
    opaque = rgba[rgba[:, 3] > 127]
    mean = (opaque if len(opaque) else rgba)[:, :3].mean(axis=0)
    return (int(mean[0]), int(mean[1]), int(mean[2]))


def mesh_uv_wrap(mesh: trimesh.Trimesh | trimesh.Scene) -> trimesh.Trimesh:
    """texgen/utils/uv_warp_utils.py: a Scene dumped into one mesh, then xatlas' own UVs (vertices split)."""
    import xatlas

    if isinstance(mesh, trimesh.Scene):
        mesh = mesh.to_mesh()
    if len(mesh.faces) > 500000000:
        raise ValueError("The mesh has more than 500,000,000 faces, which is not supported.")
    vmapping, indices, uvs = xatlas.parametrize(mesh.vertices, mesh.faces)
    wrapped = trimesh.Trimesh(vertices=mesh.vertices[vmapping], faces=indices, process=False)
    wrapped.visual = trimesh.visual.TextureVisuals(uv=uvs)
    return wrapped


# --- hy3dgen/shapegen/postprocessors.py: what the mesh goes through before painting (api_server.py:216-218) ---


def as_meshset(mesh: trimesh.Trimesh | trimesh.Scene) -> tuple[np.ndarray, np.ndarray]:
    """``trimesh2pymeshlab``: a Scene's geometries summed WITHOUT their node transforms, then a PLY that pymeshlab
    loads as it is (vertices and faces; duplicated vertices stay apart)."""
    if isinstance(mesh, trimesh.Scene):
        parts = list(mesh.geometry.values())
        mesh = parts[0]
        for part in parts[1:]:
            mesh = mesh + part
    return np.asarray(mesh.vertices, dtype=np.float64), np.asarray(mesh.faces, dtype=np.int64)


def from_meshset(vertices: np.ndarray, faces: np.ndarray) -> trimesh.Trimesh:
    """``pymeshlab2trimesh``: saved as PLY and loaded with ``trimesh.load`` (process=True: equal vertices merged)."""
    return trimesh.Trimesh(vertices=vertices, faces=faces, process=True)


def remove_floaters(mesh: trimesh.Trimesh | trimesh.Scene) -> trimesh.Trimesh:
    """``remove_floater``: faces of parts (edge-connected) with under 0.5 % of the largest part's faces, and the
    vertices only they use, are deleted."""
    vertices, faces = as_meshset(mesh)
    surface = trimesh.Trimesh(vertices=vertices, faces=faces, process=False)
    labels = trimesh.graph.connected_component_labels(surface.face_adjacency, node_count=len(faces))
    sizes = np.bincount(labels)
    keep = sizes[labels] >= 0.005 * sizes.max()
    surface.update_faces(keep)
    surface.remove_unreferenced_vertices()
    return from_meshset(surface.vertices, surface.faces)


def degenerate_face_remover(mesh: trimesh.Trimesh) -> trimesh.Trimesh:
    """``DegenerateFaceRemover``: a PLY round trip through pymeshlab (nothing else)."""
    return from_meshset(*as_meshset(mesh))


def reduce_faces(mesh: trimesh.Trimesh, max_facenum: int) -> trimesh.Trimesh:
    """``reduce_face``: quadric edge-collapse decimation down to ``max_facenum`` unless it already has fewer."""
    vertices, faces = as_meshset(mesh)
    if max_facenum > len(faces):
        return from_meshset(vertices, faces)
    reduced = trimesh.Trimesh(vertices=vertices, faces=faces, process=False).simplify_quadric_decimation(
        face_count=max_facenum
    )
    return from_meshset(reduced.vertices, reduced.faces)


class Worker20:
    """Hunyuan3D-2 api_server.py ``ModelWorker``."""

    def __init__(self, stubs: Stubs, save_dir: Path, enable_tex: bool) -> None:
        self.stubs, self.save_dir = stubs, save_dir
        if enable_tex:  # api_server.py:170: the paint pipeline exists only with --enable_tex
            self.pipeline_tex = Paint20(stubs)

    def generate(self, uid: str, params: dict[str, Any]) -> tuple[Path, str]:
        if "image" not in params:  # api_server.py:188-196
            raise ValueError("No input image or text provided")
        image = self.stubs.remove_background(load_image_from_base64(params["image"]))  # always (api_server.py:198)
        mesh: trimesh.Trimesh | trimesh.Scene
        if "mesh" in params:  # api_server.py:201-202: texture the given mesh (trimesh.load of a GLB: a Scene)
            mesh = trimesh.load(io.BytesIO(base64.b64decode(params["mesh"])), file_type="glb")
        else:  # seed/octree_resolution/num_inference_steps/guidance_scale reach the pipeline here
            mesh = self.stubs.shape(image)
        if params.get("texture", False):  # api_server.py:215-219: AttributeError without --enable_tex
            mesh = remove_floaters(mesh)
            mesh = degenerate_face_remover(mesh)
            mesh = reduce_faces(mesh, max_facenum=params.get("face_count", 40000))
            mesh = self.pipeline_tex(mesh, image)
        kind = params.get("type", "glb")
        with tempfile.TemporaryDirectory() as tmp:  # api_server.py:222-224: exported, loaded again, exported
            first = Path(tmp) / f"mesh.{kind}"
            mesh.export(str(first))
            mesh = trimesh.load(str(first))
        save_path = self.save_dir / f"{uid}.{kind}"
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
        "--fault",
        choices=["", "garbage", "error", "texture-error", "hang", "slow-write"],
        default="",
        help="Misbehave.",
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
