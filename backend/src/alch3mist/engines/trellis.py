"""TRELLIS (microsoft/TRELLIS, TRELLIS.2) as an image-to-3D engine.

Remote (the usual way): its Gradio app, driven with ``gradio_client``. The app keeps the generated 3D state per
session, so every job gets its own ``Client`` and calls, in order:

1. ``/start_session``   — the app's ``demo.load`` handler (creates the session folder; it does not run for API clients)
2. ``/preprocess_image`` — background removal + crop, what the UI runs on upload
3. ``/image_to_3d``      — seed, sampling steps and guidance of both stages (names differ in TRELLIS.2; the endpoint's
                           own parameter list, read from ``view_api``, decides which are sent)
4. ``/extract_glb``      — ``mesh_simplify`` (TRELLIS) or ``decimation_target`` (TRELLIS.2), ``texture_size``

In-process (GPU box with the ``trellis`` package importable and no URL configured): the same steps on
``TrellisImageTo3DPipeline``. That path needs CUDA and is not exercised by the test suite.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
from PIL import Image

from ..errors import EngineError, EngineUnavailable
from ..stages.progress import StageControl
from .base import EngineHealth, EngineParams, EngineResult, check_glb, wait_for

logger = logging.getLogger(__name__)

ENDPOINTS = ("/start_session", "/preprocess_image", "/image_to_3d", "/extract_glb")
DEFAULT_MODEL = "microsoft/TRELLIS-image-large"
HEALTH_TIMEOUT_S = 3.0  # /v1/info lists engine health: never let a dead host stall it
# UI slider ranges of the apps (values outside are clamped so the app accepts them)
SIMPLIFY_RANGE = (0.9, 0.98)
TEXTURE_RANGE_V1 = (512, 2048)
TEXTURE_RANGE_V2 = (1024, 4096)
DECIMATION_RANGE_V2 = (100_000, 1_000_000)


def trellis_importable() -> bool:
    return importlib.util.find_spec("trellis") is not None


class TrellisEngine:
    """TRELLIS through its Gradio app (``url``) or in-process when ``url`` is None and ``trellis`` is importable."""

    name = "trellis"
    is_preview = False

    def __init__(
        self, url: str | None, *, timeout_s: float = 600.0, connect_timeout_s: float = 10.0, model: str = DEFAULT_MODEL
    ) -> None:
        self.url = url.rstrip("/") if url else None
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.model = model

    # --- health ----------------------------------------------------------------------------------------------

    def health(self) -> EngineHealth:
        if self.url is None:
            available = trellis_importable()
            detail = "in-process (trellis package)" if available else "no TRELLIS URL and no trellis package"
            return EngineHealth(name=self.name, available=available, detail=detail)
        try:
            response = httpx.get(f"{self.url}/info", timeout=min(self.connect_timeout_s, HEALTH_TIMEOUT_S))
        except httpx.HTTPError as exc:
            return EngineHealth(name=self.name, available=False, url=self.url, detail=f"unreachable: {exc}")
        try:
            response.raise_for_status()
            named = response.json().get("named_endpoints", {})
        except (httpx.HTTPError, ValueError, AttributeError):
            detail = f"reachable, but not a Gradio app (HTTP {response.status_code} on /info)"
            return EngineHealth(name=self.name, available=False, url=self.url, detail=detail)
        missing = [e for e in ENDPOINTS if e not in named]
        if missing:
            detail = f"reachable, but not a TRELLIS app (missing {', '.join(missing)})"
            return EngineHealth(name=self.name, available=False, url=self.url, detail=detail)
        variant = "TRELLIS.2" if "resolution" in _parameter_names(named["/image_to_3d"]) else "TRELLIS"
        return EngineHealth(name=self.name, available=True, url=self.url, detail=f"{variant} Gradio app")

    # --- generate --------------------------------------------------------------------------------------------

    def generate(self, image: Image.Image, params: EngineParams, out_path: Path, control: StageControl) -> EngineResult:
        if self.url is None:
            if not trellis_importable():
                raise EngineUnavailable(self.name, None, "no TRELLIS URL configured and the trellis package is missing")
            return _InProcess.generate(self.model, image, params, out_path, control)  # pragma: no cover - GPU only
        with tempfile.TemporaryDirectory(prefix="alch3mist-trellis-") as tmp:
            return _RemoteJob(self, Path(tmp), control).run(image, params, out_path)


class _RemoteJob:
    """One job against the Gradio app: one Client, one session."""

    def __init__(self, engine: TrellisEngine, tmp: Path, control: StageControl) -> None:
        self.engine = engine
        self.url = engine.url or ""
        self.tmp = tmp
        self.control = control

    def run(self, image: Image.Image, params: EngineParams, out_path: Path) -> EngineResult:
        from gradio_client import handle_file

        client = self._connect()
        try:
            endpoints = self._endpoints(client)
            self._call(client, "/start_session", {}, 0.05)
            image_path = self.tmp / "input.png"
            image.save(image_path)
            processed = _file_output(
                self._call(client, "/preprocess_image", {"image": handle_file(str(image_path))}, 0.1)
            )
            if processed is None:
                raise EngineError(self.engine.name, self.url, "/preprocess_image returned no image")
            sent_3d = _select(endpoints["/image_to_3d"], _image_to_3d_values(params, endpoints["/image_to_3d"]))
            self._call(client, "/image_to_3d", {"image": handle_file(str(processed)), **sent_3d}, 0.8)
            sent_glb = _select(endpoints["/extract_glb"], _extract_values(params, endpoints["/extract_glb"]))
            glb = _file_output(self._call(client, "/extract_glb", sent_glb, 0.95))
        finally:
            client.close()
        return self._finish(glb, out_path, {**sent_3d, **sent_glb}, endpoints)

    def _connect(self) -> Any:
        from gradio_client import Client

        os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # gradio_client ignores analytics_enabled=False
        self.control.raise_if_cancelled()
        try:
            return Client(
                self.url,
                verbose=False,
                download_files=str(self.tmp),
                analytics_enabled=False,
                httpx_kwargs={"timeout": httpx.Timeout(self.engine.timeout_s, connect=self.engine.connect_timeout_s)},
            )
        except (httpx.HTTPError, OSError) as exc:
            raise EngineUnavailable(self.engine.name, self.url, f"cannot reach the Gradio app: {exc}") from exc
        except ValueError as exc:  # gradio_client: "Could not fetch config for ..."
            raise EngineUnavailable(self.engine.name, self.url, f"not a reachable Gradio app: {exc}") from exc

    def _endpoints(self, client: Any) -> dict[str, Mapping[str, Any]]:
        info = client.view_api(print_info=False, return_format="dict") or {}
        named = info.get("named_endpoints", {})
        missing = [e for e in ENDPOINTS if e not in named]
        if missing:
            raise EngineError(self.engine.name, self.url, f"the app has no {', '.join(missing)}: is it a TRELLIS app?")
        return {name: named[name] for name in ENDPOINTS}

    def _call(self, client: Any, api_name: str, kwargs: dict[str, Any], done_fraction: float) -> Any:
        from gradio_client.exceptions import AppError

        self.control.raise_if_cancelled()
        job = client.submit(api_name=api_name, **kwargs)
        wait_for(
            job.done,
            engine=self.engine.name,
            url=self.url,
            what=api_name,
            timeout_s=self.engine.timeout_s,
            control=self.control,
            on_cancel=job.cancel,
        )
        try:
            result = job.result(timeout=1.0)
        except AppError as exc:
            raise EngineError(self.engine.name, self.url, f"{api_name} failed in the app: {exc}") from exc
        except (httpx.HTTPError, OSError, TimeoutError) as exc:
            raise EngineUnavailable(self.engine.name, self.url, f"{api_name}: connection lost: {exc}") from exc
        except Exception as exc:  # gradio_client surfaces server-side failures with several exception types
            raise EngineError(self.engine.name, self.url, f"{api_name} failed: {type(exc).__name__}: {exc}") from exc
        self.control.report(done_fraction, f"trellis {api_name.lstrip('/')} done")
        return result

    def _finish(
        self, glb: Path | None, out_path: Path, sent: dict[str, Any], endpoints: dict[str, Mapping[str, Any]]
    ) -> EngineResult:
        if glb is None or not glb.is_file():
            raise EngineError(self.engine.name, self.url, "/extract_glb returned no GLB file")
        data = glb.read_bytes()
        check_glb(data, self.engine.name)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(glb, out_path)
        variant = "TRELLIS.2" if "resolution" in _parameter_names(endpoints["/image_to_3d"]) else "TRELLIS"
        metadata = {"url": self.url, "variant": variant, "params_sent": sent, "glb_bytes_raw": len(data)}
        return EngineResult(glb_path=out_path, engine=self.engine.name, is_preview=False, metadata=metadata)


# --- parameters --------------------------------------------------------------------------------------------------


def _parameter_names(endpoint: Mapping[str, Any]) -> list[str]:
    return [str(p.get("parameter_name")) for p in endpoint.get("parameters", [])]


def _select(endpoint: Mapping[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """Only the values the endpoint takes (the others keep the app's defaults)."""
    names = set(_parameter_names(endpoint))
    return {key: value for key, value in values.items() if key in names}


def _clamp(value: float, bounds: tuple[float, float]) -> float:
    return max(bounds[0], min(bounds[1], value))


def _image_to_3d_values(params: EngineParams, endpoint: Mapping[str, Any]) -> dict[str, Any]:
    values: dict[str, Any] = {
        "seed": params.seed,
        "randomize_seed": False,
        # TRELLIS
        "multiimages": [],
        "is_multiimage": False,
        "ss_guidance_strength": params.ss_guidance,
        "ss_sampling_steps": params.ss_steps,
        "slat_guidance_strength": params.slat_guidance,
        "slat_sampling_steps": params.slat_steps,
        "multiimage_algo": "stochastic",
    }
    if "resolution" in _parameter_names(endpoint):  # TRELLIS.2: structure, shape and material stages
        values |= {
            "resolution": "1024",
            "ss_guidance_strength": max(params.ss_guidance, 1.0),
            "shape_slat_guidance_strength": max(params.slat_guidance, 1.0),
            "shape_slat_sampling_steps": params.slat_steps,
            "tex_slat_sampling_steps": params.slat_steps,
        }
    return values


def _extract_values(params: EngineParams, endpoint: Mapping[str, Any]) -> dict[str, Any]:
    if "decimation_target" in _parameter_names(endpoint):  # TRELLIS.2
        target = params.target_faces or DECIMATION_RANGE_V2[1] // 2
        size = round(_clamp(params.texture_size, TEXTURE_RANGE_V2) / 1024) * 1024
        return {"decimation_target": int(_clamp(target, DECIMATION_RANGE_V2)), "texture_size": size}
    size = round(_clamp(params.texture_size, TEXTURE_RANGE_V1) / 512) * 512
    return {"mesh_simplify": round(_clamp(params.simplify, SIMPLIFY_RANGE), 2), "texture_size": size}


def _file_output(result: Any) -> Path | None:
    """The first existing file among an endpoint's outputs (a path, a FileData-like dict, or a tuple of those)."""
    items = result if isinstance(result, (list, tuple)) else [result]
    for item in items:
        candidate = item.get("path") or item.get("value") if isinstance(item, dict) else item
        if isinstance(candidate, (str, os.PathLike)) and Path(candidate).is_file():
            return Path(candidate)
    return None


# --- in-process (GPU box) ----------------------------------------------------------------------------------------


class _InProcess:  # pragma: no cover - needs CUDA and the trellis package
    _pipeline: Any = None
    _lock = threading.Lock()

    @classmethod
    def generate(
        cls, model: str, image: Image.Image, params: EngineParams, out_path: Path, control: StageControl
    ) -> EngineResult:
        from trellis.utils import postprocessing_utils

        pipeline = cls._load(model)
        control.raise_if_cancelled()
        outputs = pipeline.run(
            image,
            seed=params.seed,
            formats=["gaussian", "mesh"],
            sparse_structure_sampler_params={"steps": params.ss_steps, "cfg_strength": params.ss_guidance},
            slat_sampler_params={"steps": params.slat_steps, "cfg_strength": params.slat_guidance},
        )
        control.report(0.8, "trellis: sampled")
        control.raise_if_cancelled()
        simplify = round(_clamp(params.simplify, SIMPLIFY_RANGE), 2)
        glb = postprocessing_utils.to_glb(
            outputs["gaussian"][0],
            outputs["mesh"][0],
            simplify=simplify,
            texture_size=params.texture_size,
            verbose=False,
        )
        out_path.parent.mkdir(parents=True, exist_ok=True)
        glb.export(str(out_path))
        check_glb(out_path.read_bytes(), "trellis")
        metadata = {"mode": "in-process", "model": model, "params_sent": {"simplify": simplify}}
        return EngineResult(glb_path=out_path, engine="trellis", is_preview=False, metadata=metadata)

    @classmethod
    def _load(cls, model: str) -> Any:
        with cls._lock:
            if cls._pipeline is None:
                from trellis.pipelines import TrellisImageTo3DPipeline

                logger.info("loading TRELLIS pipeline %s", model)
                pipeline = TrellisImageTo3DPipeline.from_pretrained(model)
                pipeline.cuda()
                cls._pipeline = pipeline
            return cls._pipeline


__all__ = ["TrellisEngine", "trellis_importable"]
