"""Hunyuan3D-2.x as an image-to-3D engine: an httpx client for its ``api_server.py``.

The server's routes (Tencent/Hunyuan3D-2 and Hunyuan3D-2.1):

- ``POST /send``  JSON {image: base64, seed, octree_resolution, num_inference_steps, guidance_scale, texture,
  face_count, remove_background} → ``{uid}``; the work runs in a server thread;
- ``GET /status/{uid}`` → ``{status: processing | texturing | completed | error, model_base64, message}``
  (2.0 only ever answers processing or completed);
- ``POST /generate`` (same JSON) → the GLB itself, or JSON ``{text, error_code}`` with status 404 on failure;
- ``GET /health`` (2.1 only).

``mode="send"`` (default) polls ``/status`` so a job can be cancelled between polls; ``mode="generate"`` makes one
blocking call.
"""

from __future__ import annotations

import base64
import binascii
import logging
import time
from pathlib import Path
from typing import Any, Literal

import httpx
from PIL import Image

from ..errors import EngineError, EngineUnavailable
from ..stages.progress import StageControl
from .base import EngineHealth, EngineParams, EngineResult, check_glb, image_png_bytes

logger = logging.getLogger(__name__)

HEALTH_PROBE_UID = "alch3mist-health-probe"
HEALTH_TIMEOUT_S = 3.0  # /v1/info lists engine health: never let a dead host stall it
FACE_COUNT_RANGE = (1000, 100_000)  # Hunyuan3D-2.1's GenerationRequest bounds


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
        mode: Literal["send", "generate"] = "send",
        remove_background: bool = True,
    ) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.poll_interval_s = poll_interval_s
        self.mode = mode
        self.remove_background = remove_background

    def _client(self, read_timeout_s: float, connect_timeout_s: float | None = None) -> httpx.Client:
        connect = self.connect_timeout_s if connect_timeout_s is None else connect_timeout_s
        return httpx.Client(base_url=self.url, timeout=httpx.Timeout(read_timeout_s, connect=connect))

    # --- health ----------------------------------------------------------------------------------------------

    def health(self) -> EngineHealth:
        try:
            quick = min(self.connect_timeout_s, HEALTH_TIMEOUT_S)
            with self._client(quick, quick) as client:
                response = client.get("/health")
                if response.status_code == 200:
                    return EngineHealth(name=self.name, available=True, url=self.url, detail="Hunyuan3D-2.1 api_server")
                probe = client.get(f"/status/{HEALTH_PROBE_UID}")
                if probe.status_code == 200 and "status" in probe.json():
                    return EngineHealth(name=self.name, available=True, url=self.url, detail="Hunyuan3D-2 api_server")
                detail = f"reachable, but not a Hunyuan3D api_server (HTTP {probe.status_code} on /status)"
        except (httpx.HTTPError, ValueError) as exc:
            detail = f"unreachable: {exc}"
        return EngineHealth(name=self.name, available=False, url=self.url, detail=detail)

    # --- generate --------------------------------------------------------------------------------------------

    def generate(self, image: Image.Image, params: EngineParams, out_path: Path, control: StageControl) -> EngineResult:
        control.raise_if_cancelled()
        payload = self.request_body(image, params)
        try:
            data = self._send_and_poll(payload, control) if self.mode == "send" else self._generate(payload)
        except httpx.TimeoutException as exc:
            raise EngineUnavailable(self.name, self.url, f"timed out: {exc}") from exc
        except httpx.TransportError as exc:
            raise EngineUnavailable(self.name, self.url, f"cannot reach the server: {exc}") from exc
        check_glb(data, self.name)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_bytes(data)
        sent = {k: v for k, v in payload.items() if k != "image"}
        metadata = {"url": self.url, "mode": self.mode, "params_sent": sent, "glb_bytes_raw": len(data)}
        return EngineResult(glb_path=out_path, engine=self.name, is_preview=False, metadata=metadata)

    def request_body(self, image: Image.Image, params: EngineParams) -> dict[str, Any]:
        body: dict[str, Any] = {
            "image": base64.b64encode(image_png_bytes(image)).decode("ascii"),
            "remove_background": self.remove_background,
            "texture": params.texture,
            "seed": params.seed,
            "octree_resolution": params.octree_resolution,
            "num_inference_steps": params.num_inference_steps,
            "guidance_scale": params.guidance_scale,
        }
        if params.target_faces is not None:
            low, high = FACE_COUNT_RANGE
            body["face_count"] = max(low, min(high, params.target_faces))
        return body

    def _generate(self, payload: dict[str, Any]) -> bytes:
        with self._client(self.timeout_s) as client:
            response = client.post("/generate", json=payload)
        if response.status_code != 200 or "json" in response.headers.get("content-type", ""):
            raise EngineError(
                self.name, self.url, f"/generate failed (HTTP {response.status_code}): {_reason(response)}"
            )
        return response.content

    def _send_and_poll(self, payload: dict[str, Any], control: StageControl) -> bytes:
        deadline = time.monotonic() + self.timeout_s
        with self._client(self.timeout_s) as client:
            response = client.post("/send", json=payload)
            if response.status_code != 200:
                raise EngineError(
                    self.name, self.url, f"/send failed (HTTP {response.status_code}): {_reason(response)}"
                )
            uid = str(response.json().get("uid", ""))
            if not uid:
                raise EngineError(self.name, self.url, f"/send answered without a uid: {response.text[:200]}")
            control.report(0.05, "hunyuan3d: job sent")
            polls = 0
            while True:
                control.raise_if_cancelled()
                status = client.get(f"/status/{uid}")
                done = self._read_status(status, uid, control, polls)
                if done is not None:
                    return done
                if time.monotonic() > deadline:
                    raise EngineUnavailable(self.name, self.url, f"job {uid} not finished after {self.timeout_s:.0f} s")
                polls += 1
                control.cancel.wait(self.poll_interval_s)

    def _read_status(self, response: httpx.Response, uid: str, control: StageControl, polls: int) -> bytes | None:
        """The GLB bytes when the job is complete, None while it runs; ``EngineError`` when it failed."""
        try:
            body = response.json()
        except ValueError:
            body = {}
        state = body.get("status") if isinstance(body, dict) else None
        if response.status_code != 200 or state == "error":
            message = body.get("message") if isinstance(body, dict) else None
            raise EngineError(self.name, self.url, f"job {uid} failed: {message or _reason(response)}")
        if state == "completed":
            try:
                return base64.b64decode(str(body.get("model_base64") or ""), validate=True)
            except (binascii.Error, ValueError) as exc:
                raise EngineError(self.name, self.url, f"job {uid}: model_base64 is not base64: {exc}") from exc
        if state in ("processing", "texturing"):
            control.report(min(0.1 + 0.02 * polls, 0.9), f"hunyuan3d: {state}")
            return None
        raise EngineError(self.name, self.url, f"job {uid}: unexpected status answer {str(body)[:200]}")


def _reason(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:300] or response.reason_phrase
    if isinstance(body, dict):
        return str(body.get("text") or body.get("message") or body.get("detail") or body)[:300]
    return str(body)[:300]
