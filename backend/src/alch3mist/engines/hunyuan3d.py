"""Hunyuan3D-2.x as an image-to-3D engine: an httpx client for its ``api_server.py`` (2.0 or 2.1).

Both servers: ``POST /send`` (JSON → ``{uid}``; the work runs in a server thread), ``GET /status/{uid}``,
``POST /generate`` (the GLB itself, or JSON ``{text, error_code}`` with 404 on *any* failure). They differ in ways a
client must handle (read from Tencent-Hunyuan/Hunyuan3D-2 and Hunyuan3D-2.1 ``api_server.py``, ``api_models.py``,
``model_worker.py``):

- 2.0 textures only when started with ``--enable_tex``; otherwise a texture request crashes its worker (``/send``
  stays ``processing`` forever, ``/generate`` answers 404). ``texture_capable`` finds out once with a small
  ``/generate`` (a 4-face mesh to texture), cached; without it the job asks for the shape only and says so.
- 2.1's ``/status`` never says ``error``: a failed shape stays ``processing``, a failed texture stays ``texturing``.
  So each phase has a no-progress deadline; a stalled texture stage still delivers the shape (from a shape-only
  ``/generate``) with a warning; a stalled shape fails with an error naming the engine, URL and uid. A shape-only
  ``/send`` never completes on 2.1 (its status wants ``{uid}_textured.glb``), so shape-only jobs use ``/generate``.
- 2.1 validates fields (e.g. ``num_inference_steps`` ≤ 20; bounds read from its ``/openapi.json``) but its worker
  ignores them (``self.pipeline(image=image)``) and never removes an RGB backdrop: we send an RGBA cut-out made by
  our own segmentation, clamp to its bounds, and record ``sent`` vs ``applied``.
- 2.0 always removes the background itself and applies seed, resolution, steps and guidance.

``Hunyuan3DPainter`` is 2.0's ``mesh`` field as a texture engine: a given mesh + a picture in, the mesh painted by
its paint pipeline out (see its docstring for what the server does to the mesh on the way).
"""

from __future__ import annotations

import base64
import binascii
import io
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx
import numpy as np
from PIL import Image

from ..errors import EngineError, EngineUnavailable, InvalidRequest
from ..mesh.segment import segment_object
from ..stages.progress import StageControl
from .base import (
    Clamp,
    EngineHealth,
    EngineParams,
    EngineResult,
    PaintParams,
    check_glb,
    glb_has_texture,
    image_png_bytes,
    texture_of,
    wait_for,
)

logger = logging.getLogger(__name__)

HEALTH_PROBE_UID = "alch3mist-health-probe"
HEALTH_TIMEOUT_S = 3.0  # /v1/info lists engine health: never let a dead host stall it
TEXTURE_PROBE_TTL_S = 3600.0  # re-probe 2.0's texture pipeline hourly (a restart with --enable_tex is noticed)
# Hunyuan3D-2.1 api_models.py GenerationRequest bounds, used when its /openapi.json cannot be read
BOUNDS_21: dict[str, tuple[float, float]] = {
    "seed": (0, 2**32 - 1),
    "octree_resolution": (64, 512),
    "num_inference_steps": (1, 20),
    "guidance_scale": (0.1, 20.0),
    "face_count": (1000, 100_000),
}
# What each server's worker does with a field (2.0: api_server.py ModelWorker.generate; 2.1: model_worker.py)
APPLIED = {
    "2.0": {"image", "seed", "octree_resolution", "num_inference_steps", "guidance_scale", "texture", "face_count"},
    "2.1": {"image", "texture"},
}
# The workers' own defaults for what we leave out (2.0: api_server.py:204-218; 2.1: its pipeline's own settings)
DEFAULTS_20 = {"seed": 1234, "octree_resolution": 128, "num_inference_steps": 5, "guidance_scale": 5.0}


@dataclass
class Hunyuan3DServer:
    """What a Hunyuan3D api_server is, as far as a client can tell."""

    version: Literal["2.0", "2.1"]
    bounds: dict[str, tuple[float, float]] = field(default_factory=dict)
    defaults: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"Hunyuan3D-{self.version}"


class Hunyuan3DEngine:
    name = "hunyuan3d"
    is_preview = False

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 600.0,
        connect_timeout_s: float = 10.0,
        poll_interval_s: float = 2.0,
        shape_deadline_s: float = 300.0,
        texture_deadline_s: float = 420.0,
        mode: Literal["send", "generate"] = "send",
    ) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.poll_interval_s = poll_interval_s
        self.shape_deadline_s = shape_deadline_s
        self.texture_deadline_s = texture_deadline_s
        self.mode = mode
        self._texture_probe: tuple[bool, float] | None = None  # (capable, when), 2.0 only
        self._probe_lock = threading.Lock()

    def _client(self, read_timeout_s: float, connect_timeout_s: float | None = None) -> httpx.Client:
        connect = self.connect_timeout_s if connect_timeout_s is None else connect_timeout_s
        return httpx.Client(base_url=self.url, timeout=httpx.Timeout(read_timeout_s, connect=connect))

    # --- what the server is ---------------------------------------------------------------------------------

    def health(self) -> EngineHealth:
        quick = min(self.connect_timeout_s, HEALTH_TIMEOUT_S)
        try:
            server = self.describe(quick)
        except EngineError as exc:
            return EngineHealth(name=self.name, available=False, url=self.url, detail=exc.reason)
        texture = {True: "textures", False: "no texture pipeline (started without --enable_tex)"}
        known = self._cached_texture() if server.version == "2.0" else True
        detail = f"{server.label} api_server" + (f"; {texture[known]}" if known is not None else "")
        return EngineHealth(name=self.name, available=True, url=self.url, detail=detail)

    def describe(self, timeout_s: float | None = None) -> Hunyuan3DServer:
        """Which server answers (2.1 has ``/health``; 2.0 answers any ``/status/{uid}``), with 2.1's field bounds."""
        quick = timeout_s or min(self.connect_timeout_s, 10.0)
        try:
            with self._client(quick, quick) as client:
                if client.get("/health").status_code == 200:
                    return Hunyuan3DServer("2.1", *self._openapi_fields(client))
                probe = client.get(f"/status/{HEALTH_PROBE_UID}")
                if probe.status_code == 200 and isinstance(probe.json(), dict) and "status" in probe.json():
                    return Hunyuan3DServer("2.0", {}, dict(DEFAULTS_20))
                detail = f"reachable, but not a Hunyuan3D api_server (HTTP {probe.status_code} on /status)"
        except (httpx.HTTPError, ValueError) as exc:
            raise EngineUnavailable(self.name, self.url, f"unreachable: {exc}") from exc
        raise EngineError(self.name, self.url, detail)

    @staticmethod
    def _openapi_fields(client: httpx.Client) -> tuple[dict[str, tuple[float, float]], dict[str, Any]]:
        """2.1's GenerationRequest bounds and defaults, from the server's own schema (api_models.py as fallback)."""
        try:
            schema = client.get("/openapi.json").json()["components"]["schemas"]["GenerationRequest"]["properties"]
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            return dict(BOUNDS_21), {}
        bounds = {
            name: (float(spec["minimum"]), float(spec["maximum"]))
            for name, spec in schema.items()
            if "minimum" in spec and "maximum" in spec
        }
        defaults = {name: spec["default"] for name, spec in schema.items() if "default" in spec}
        return bounds, defaults

    def texture_capable(self, server: Hunyuan3DServer) -> bool:
        """2.1 always loads its paint pipeline; 2.0 only with ``--enable_tex`` — one small probe, cached."""
        if server.version == "2.1":
            return True
        with self._probe_lock:
            known = self._cached_texture()
            if known is None:
                known = self._probe_texture()
                self._texture_probe = (known, time.monotonic())
            return known

    def _cached_texture(self) -> bool | None:
        if self._texture_probe is None or time.monotonic() - self._texture_probe[1] > TEXTURE_PROBE_TTL_S:
            return None
        return self._texture_probe[0]

    def _probe_texture(self) -> bool:
        """Ask 2.0 to texture a 4-face mesh (its ``mesh`` field skips the shape model): a GLB back means it can;
        its 404 JSON means ``pipeline_tex`` is missing (api_server.py:170, 215). The picture is an object on a plain
        backdrop: the server removes the background first, and its paint pipeline refuses a fully transparent one."""
        body = {
            "image": base64.b64encode(image_png_bytes(_probe_picture())).decode(),
            "mesh": base64.b64encode(_tetrahedron_glb()).decode(),
            "texture": True,
        }
        try:
            with self._client(self.timeout_s) as client:
                response = client.post("/generate", json=body)
        except httpx.HTTPError as exc:
            raise EngineUnavailable(self.name, self.url, f"texture probe failed: {exc}") from exc
        capable = response.status_code == 200 and response.content[:4] == b"glTF"
        logger.info("hunyuan3d at %s: texture pipeline %s", self.url, "present" if capable else "absent")
        return capable

    # --- generate --------------------------------------------------------------------------------------------

    def generate(self, image: Image.Image, params: EngineParams, out_path: Path, control: StageControl) -> EngineResult:
        control.raise_if_cancelled()
        try:
            # 1. Which server, and can it texture?
            server = self.describe()
            warnings: list[str] = []
            texture = params.texture and self.texture_capable(server)
            if params.texture and not texture:
                warnings.append(
                    f"{server.label} at {self.url} was started without --enable_tex: the mesh is untextured"
                )
            # 2. The request: clamped to the server's bounds; 2.1 gets an RGBA cut-out
            body, clamps = self.request_body(image, params, server, texture)
            warnings += [clamp.message(f"{server.label} server") for clamp in clamps]
            warnings += self.ignored_warnings(server, body)
            # 3. Run it
            if self.mode == "generate" or (server.version == "2.1" and not texture):
                data, textured = self._generate(body, self.timeout_s), texture
            else:
                data, textured, stall_warning = self._send_and_poll(body, server, control)
                warnings += stall_warning
        except httpx.TimeoutException as exc:
            raise EngineUnavailable(self.name, self.url, f"timed out: {exc}") from exc
        except httpx.TransportError as exc:
            raise EngineUnavailable(self.name, self.url, f"cannot reach the server: {exc}") from exc
        # 4. Check and keep the GLB
        check_glb(data, self.name)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_bytes(data)
        textured = textured and glb_has_texture(data)
        if texture and not textured and not any("untextured" in w for w in warnings):
            warnings.append(f"{server.label} returned an untextured mesh (its texture stage failed)")
        sent = {k: v for k, v in body.items() if k != "image"}
        return EngineResult(
            glb_path=out_path,
            engine=self.name,
            is_preview=False,
            variant=server.label,
            url=self.url,
            sent=sent,
            applied={k: v for k, v in sent.items() if k in APPLIED[server.version]},
            app_defaults={k: v for k, v in server.defaults.items() if k not in body and k != "image"},
            clamps=clamps,
            warnings=warnings,
            texture="engine" if textured else "none",
            glb_bytes=len(data),
            details={"mode": self.mode, "image_sent": "RGBA cut-out" if server.version == "2.1" else "as given"},
        )

    def request_body(
        self, image: Image.Image, params: EngineParams, server: Hunyuan3DServer, texture: bool
    ) -> tuple[dict[str, Any], list[Clamp]]:
        """The JSON for /send or /generate: the seed and texture flag always, the rest only when the caller set it."""
        picture = rgba_cutout(image) if server.version == "2.1" else image
        body: dict[str, Any] = {"image": base64.b64encode(image_png_bytes(picture)).decode("ascii")}
        wanted: dict[str, Any] = {
            "texture": texture,
            "seed": params.seed,
            "octree_resolution": params.octree_resolution,
            "num_inference_steps": params.num_inference_steps,
            "guidance_scale": params.guidance_scale,
            "face_count": params.target_faces if texture else None,
            **params.options,
        }
        clamps = []
        for key, value in wanted.items():
            if value is None:
                continue
            if key in server.bounds and not isinstance(value, bool):
                low, high = server.bounds[key]
                fitted = min(max(value, low), high)
                fitted = int(fitted) if isinstance(value, int) else fitted
                if fitted != value:
                    clamps.append(Clamp(key, value, fitted, f"{low:g}–{high:g}"))
                value = fitted
            body[key] = value
        return body, clamps

    @staticmethod
    def ignored_warnings(server: Hunyuan3DServer, body: dict[str, Any]) -> list[str]:
        ignored = sorted(k for k in body if k not in APPLIED[server.version] and k != "remove_background")
        if server.version != "2.1" or not ignored:
            return []
        return [f"{server.label}'s worker ignores {', '.join(ignored)}: sent, but not applied (a rerun differs)"]

    def _generate(self, body: dict[str, Any], timeout_s: float) -> bytes:
        with self._client(timeout_s) as client:
            response = client.post("/generate", json=body)
        if response.status_code != 200 or "json" in response.headers.get("content-type", ""):
            raise EngineError(
                self.name, self.url, f"/generate failed (HTTP {response.status_code}): {_reason(response)}"
            )
        return response.content

    def _send_and_poll(
        self, body: dict[str, Any], server: Hunyuan3DServer, control: StageControl
    ) -> tuple[bytes, bool, list[str]]:
        """(GLB, textured, warnings). Each phase has its own no-progress deadline (see the module docstring)."""
        with self._client(self.timeout_s) as client:
            response = client.post("/send", json=body)
            if response.status_code != 200:
                raise EngineError(
                    self.name, self.url, f"/send failed (HTTP {response.status_code}): {_reason(response)}"
                )
            uid = str(response.json().get("uid", ""))
            if not uid:
                raise EngineError(self.name, self.url, f"/send answered without a uid: {response.text[:200]}")
            control.report(0.05, "hunyuan3d: job sent")
            phase, since = "processing", time.monotonic()
            # 2.0 has no texturing phase in its status: its one phase holds both stages
            shape_deadline = self.shape_deadline_s + (
                self.texture_deadline_s if server.version == "2.0" and body["texture"] else 0.0
            )
            while True:
                control.raise_if_cancelled()
                state, glb = self._read_status(client.get(f"/status/{uid}"), uid)
                if glb is not None:
                    return glb, bool(body["texture"]), []
                if state != phase:
                    phase, since = state, time.monotonic()
                waited = time.monotonic() - since
                deadline = self.texture_deadline_s if phase == "texturing" else shape_deadline
                start, span = (0.5, 0.45) if phase == "texturing" else (0.05, 0.45)
                control.report(start + span * min(waited / deadline, 1.0), f"hunyuan3d: {phase}")
                if waited > deadline:
                    if phase == "texturing":
                        return self._untextured_after_stall(body, server, uid, waited)
                    raise EngineUnavailable(
                        self.name,
                        self.url,
                        f"job {uid} made no progress for {waited:.0f} s ('{phase}'): {server.label} never reports "
                        "a failed shape stage; see the server's log",
                    )
                control.cancel.wait(self.poll_interval_s)

    def _untextured_after_stall(
        self, body: dict[str, Any], server: Hunyuan3DServer, uid: str, waited: float
    ) -> tuple[bytes, bool, list[str]]:
        """2.1's texture stage stalled (its status cannot say it failed): fetch the shape by a shape-only request."""
        logger.warning("hunyuan3d job %s stuck in 'texturing' for %.0f s: asking for the shape only", uid, waited)
        data = self._generate({**body, "texture": False}, self.shape_deadline_s)
        warning = (
            f"{server.label}: texturing of job {uid} made no progress for {waited:.0f} s (its status never reports a "
            "failed texture stage); delivered an untextured mesh from a second, shape-only request"
        )
        return data, False, [warning]

    def _read_status(self, response: httpx.Response, uid: str) -> tuple[str, bytes | None]:
        """(state, GLB bytes when completed); ``EngineError`` for answers no Hunyuan3D server gives."""
        try:
            body = response.json()
        except ValueError:
            body = {}
        state = body.get("status") if isinstance(body, dict) else None
        if response.status_code != 200 or state == "error":  # some forks report errors; upstream never does
            message = body.get("message") if isinstance(body, dict) else None
            raise EngineError(self.name, self.url, f"job {uid} failed: {message or _reason(response)}")
        if state == "completed":
            try:
                glb = base64.b64decode(str(body.get("model_base64") or ""), validate=True)
            except (binascii.Error, ValueError) as exc:
                raise EngineError(self.name, self.url, f"job {uid}: model_base64 is not base64: {exc}") from exc
            # api_server.py's worker exports straight to {uid}.glb and /status reads whatever exists: a GLB still
            # being written comes back empty or short of the length its header declares. Poll again.
            return ("writing", None) if _still_writing(glb) else (state, glb)
        if state in ("processing", "texturing"):
            return state, None
        raise EngineError(self.name, self.url, f"job {uid}: unexpected status answer {str(body)[:200]}")


# Hunyuan3D-2 hy3dgen/texgen/pipelines.py Hunyuan3DTexGenConfig: the paint pipeline's texture side, whatever is asked
PAINT_TEXTURE_SIZE = 2048
# api_server.py:218: FaceReducer's face budget when the request names none
PAINT_DEFAULT_FACE_COUNT = 40_000


class Hunyuan3DPainter:
    """Hunyuan3D-2.0's ``mesh`` field as a mesh painter (a texture engine through ``texturing/remote.py``).

    What the server does with ``{image, mesh, texture: true}`` (Hunyuan3D-2 ``api_server.py`` ModelWorker.generate,
    lines 187-229): background removal on the picture; the GLB loaded with ``trimesh.load`` (a Scene); the shape
    model skipped; then FloaterRemover (parts with fewer than 0.5 % of the largest part's faces are deleted),
    DegenerateFaceRemover and FaceReducer (decimated to ``face_count``, default 40,000) — these flatten the scene
    *without* its node transforms (``postprocessors.trimesh2pymeshlab``); then ``Hunyuan3DPaintPipeline``
    (``hy3dgen/texgen``): new xatlas UVs, six views, a 2048² texture, the vertices where they were.

    So we send one welded mesh without UVs (UV seams would split it into "parts", and small ones would be deleted),
    without node transforms, with ``face_count`` = its own face count (nothing decimated); we say when parts came back
    missing. Only 2.0 has the field: 2.1's GenerationRequest does not (pydantic drops it and a NEW shape is made), so
    2.1 is refused. 2.0 paints only when started with ``--enable_tex`` (probed once, cached, as the engine does).
    ``/generate``, not ``/send``: a failed paint answers 404 at once, where ``/send`` would stay 'processing' forever.
    """

    name = "hunyuan3d"

    def __init__(self, engine: Hunyuan3DEngine) -> None:
        self.engine = engine

    @property
    def url(self) -> str:
        return self.engine.url

    def health(self) -> EngineHealth:
        try:
            server = self.engine.describe(min(self.engine.connect_timeout_s, HEALTH_TIMEOUT_S))
        except EngineError as exc:
            return EngineHealth(name=self.name, available=False, url=self.url, detail=exc.reason)
        if server.version != "2.0":
            return EngineHealth(name=self.name, available=False, url=self.url, detail=_NO_MESH_FIELD)
        known = self.engine._cached_texture()
        detail = {None: "not probed yet", True: "paints", False: "cannot paint (started without --enable_tex)"}[known]
        return EngineHealth(
            name=self.name, available=known is not False, url=self.url, detail=f"{server.label}; {detail}"
        )

    def paint(
        self, mesh_glb: bytes, picture: Image.Image, params: PaintParams, out_path: Path, control: StageControl
    ) -> EngineResult:
        control.raise_if_cancelled()
        try:
            # 1. Which server, and can it paint?
            server = self.engine.describe()
            if server.version != "2.0":
                raise EngineError(self.name, self.url, _NO_MESH_FIELD)
            if not self.engine.texture_capable(server):
                raise EngineError(self.name, self.url, "started without --enable_tex: it has no paint pipeline")
            # 2. The request: the picture, our mesh, and a face budget that keeps all of it
            faces = _glb_faces(mesh_glb)
            body: dict[str, Any] = {
                "image": base64.b64encode(image_png_bytes(picture)).decode("ascii"),
                "mesh": base64.b64encode(mesh_glb).decode("ascii"),
                "texture": True,
                "face_count": max(faces, 1),
                **params.options,
            }
            control.report(0.05, "hunyuan3d: painting")
            # 3. /generate in a thread, so cancel and the timeout are honoured while the server paints
            data = self._generate(body, control)
        except httpx.TimeoutException as exc:
            raise EngineUnavailable(self.name, self.url, f"timed out: {exc}") from exc
        except httpx.TransportError as exc:
            raise EngineUnavailable(self.name, self.url, f"cannot reach the server: {exc}") from exc
        # 4. Check and keep the GLB
        check_glb(data, self.name)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_bytes(data)
        control.report(1.0, "hunyuan3d: painted")
        sent = {k: v for k, v in body.items() if k not in ("image", "mesh")}
        warnings = []
        if params.texture_size != PAINT_TEXTURE_SIZE:
            warnings.append(
                f"{server.label} paints a {PAINT_TEXTURE_SIZE}² texture whatever is asked: "
                f"resized to {params.texture_size}²"
            )
        return EngineResult(
            glb_path=out_path,
            engine=self.name,
            is_preview=False,
            variant=server.label,
            url=self.url,
            sent=sent,
            applied=sent,  # the mesh path uses face_count and texture; it has no seed (the paint pipeline is unseeded)
            app_defaults={"texture_size": PAINT_TEXTURE_SIZE},
            warnings=warnings,
            texture=texture_of(data),
            glb_bytes=len(data),
            details={"route": "/generate", "faces_sent": faces, "seed": "not applied (unseeded paint pipeline)"},
        )

    def _generate(self, body: dict[str, Any], control: StageControl) -> bytes:
        outcome: dict[str, Any] = {}

        def call() -> None:
            try:
                outcome["data"] = self.engine._generate(body, self.engine.timeout_s)
            except (EngineError, httpx.HTTPError) as exc:  # handed to the waiting thread below
                outcome["error"] = exc

        worker = threading.Thread(target=call, name="hunyuan3d-paint", daemon=True)
        worker.start()
        wait_for(
            lambda: not worker.is_alive(),
            engine=self.name,
            url=self.url,
            what="painting (/generate)",
            timeout_s=self.engine.timeout_s + 5.0,
            control=control,
        )
        if "error" in outcome:
            raise outcome["error"]
        if "data" not in outcome:  # the call died of something unexpected: its traceback is in the log
            raise EngineError(self.name, self.url, "painting failed in this process (see the log)")
        return bytes(outcome["data"])


_NO_MESH_FIELD = (
    "Hunyuan3D-2.1's api_server cannot paint a given mesh (its GenerationRequest has no mesh field): "
    "use a Hunyuan3D-2.0 api_server started with --enable_tex"
)


def _glb_faces(data: bytes) -> int:
    import trimesh

    scene: Any = trimesh.load(io.BytesIO(data), file_type="glb", force="scene")
    return int(sum(len(getattr(geometry, "faces", ())) for geometry in scene.geometry.values()))


def rgba_cutout(image: Image.Image) -> Image.Image:
    """The object on a transparent background (our segmentation), for servers that never remove a backdrop.

    An image with a real alpha channel is kept as it is."""
    if image.mode == "RGBA" and int(np.asarray(image.getchannel("A")).min()) < 255:
        return image
    try:
        silhouette = segment_object(image)
    except InvalidRequest:  # no object found: send the picture as it is, the server decides
        return image.convert("RGBA")
    alpha = Image.fromarray(silhouette.object_pixels(image).astype("uint8") * 255, "L")
    cut = image.convert("RGB").convert("RGBA")
    cut.putalpha(alpha)
    return cut


def _probe_picture() -> Image.Image:
    from PIL import ImageDraw

    picture = Image.new("RGB", (128, 128), (244, 244, 240))
    ImageDraw.Draw(picture).ellipse((24, 24, 104, 104), fill=(200, 120, 60))
    return picture


def _tetrahedron_glb() -> bytes:
    import trimesh

    mesh = trimesh.Trimesh(
        vertices=[[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], faces=[[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]]
    )
    buffer = io.BytesIO()
    buffer.write(bytes(trimesh.Scene(mesh).export(file_type="glb")))
    return buffer.getvalue()


def _still_writing(data: bytes) -> bool:
    """True for an empty file or a GLB shorter than the total length its 12-byte header declares."""
    if not data:
        return True
    if data[:4] != b"glTF" or len(data) < 12:
        return False  # not a GLB at all: ``check_glb`` says so
    return len(data) < int.from_bytes(data[8:12], "little")


def _reason(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:300] or response.reason_phrase
    if isinstance(body, dict):
        return str(body.get("text") or body.get("message") or body.get("detail") or body)[:300]
    return str(body)[:300]
