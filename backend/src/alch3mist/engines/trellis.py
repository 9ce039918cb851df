"""TRELLIS (microsoft/TRELLIS) and TRELLIS.2 (microsoft/TRELLIS.2) as an image-to-3D engine.

Remote (the usual way): the project's own Gradio ``app.py`` (TRELLIS pins Gradio 4.44.1, TRELLIS.2 pins 6.0.1),
driven with ``gradio_client``. Nothing about the app is assumed: its endpoints, parameters, ranges and defaults are
read from its own API description and config (``read_app``), because they differ between the apps and Gradio
renames them. For instance both apps create ``gr.Examples(fn=preprocess_image, run_on_click=True)`` before the
upload handler, so the Examples event takes the name ``preprocess_image`` (hidden) and the public upload endpoint
is ``/preprocess_image_1``. A job is one ``Client`` (the app keeps its 3D state per session) calling, in order:

1. ``/start_session*``   — the app's ``demo.load`` handler (TRELLIS writes into the session folder it makes; API
                           clients do not trigger ``demo.load``)
2. ``/preprocess_image*`` — background removal + crop, what the UI runs on upload
3. ``/image_to_3d*``      — the seed, plus only the sampler settings the caller set: every other value stays the
                           app's default (TRELLIS.2's shape guidance is 7.5, TRELLIS' structured-latent one 3.0)
4. ``/extract_glb*``      — texture size (the job's), ``mesh_simplify`` / ``decimation_target`` when set

Every value is clamped to the range the app declares (Gradio 6 rejects out-of-range slider values), and each clamp
is a warning on the job. The result records what was sent and which app defaults were left alone.

In-process (GPU box, no URL, the ``trellis2`` or ``trellis`` package importable): the same steps on
``Trellis2ImageTo3DPipeline`` (following TRELLIS.2's ``example.py``) or ``TrellisImageTo3DPipeline``. Both need
CUDA and are not exercised by the test suite.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from PIL import Image

from ..errors import EngineError, EngineUnavailable
from ..stages.progress import StageControl
from .base import Clamp, EngineHealth, EngineParams, EngineResult, check_glb, texture_of, wait_for

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "microsoft/TRELLIS-image-large"  # TRELLIS app.py:403
DEFAULT_MODEL_V2 = "microsoft/TRELLIS.2-4B"  # TRELLIS.2 app.py / example.py
HEALTH_TIMEOUT_S = 3.0  # /v1/info lists engine health: never let a dead host stall it


def trellis_importable() -> bool:
    return importlib.util.find_spec("trellis") is not None


def trellis2_importable() -> bool:
    return importlib.util.find_spec("trellis2") is not None


# --- what the app offers, read from the app ------------------------------------------------------------------------


@dataclass(frozen=True)
class AppParameter:
    """One input of an endpoint, as the app declares it."""

    name: str
    component: str
    default: Any = None
    has_default: bool = False
    minimum: float | None = None
    maximum: float | None = None
    step: float | None = None
    choices: tuple[str, ...] = ()

    def describe(self) -> str:
        if self.minimum is not None and self.maximum is not None:
            step = f" step {_number(self.step)}" if self.step else ""
            return f"{self.name} {_number(self.minimum)}–{_number(self.maximum)}{step} (default {self.default!r})"
        if self.choices:
            return f"{self.name} one of {'/'.join(self.choices)} (default {self.default!r})"
        return f"{self.name} ({self.component})"


@dataclass(frozen=True)
class AppEndpoint:
    api_name: str
    parameters: tuple[AppParameter, ...]

    def parameter(self, name: str) -> AppParameter | None:
        return next((p for p in self.parameters if p.name == name), None)

    def signature(self) -> str:
        return f"{self.api_name}({', '.join(p.name for p in self.parameters)})"


@dataclass(frozen=True)
class EndpointRole:
    """How we recognise an endpoint: its name pattern (Gradio appends ``_1``, ``_2``… on clashes) and signature."""

    role: str
    pattern: str
    needs: tuple[str, ...] = ()  # parameter names it must have
    needs_image: bool = False
    takes_nothing: bool = False

    def matches(self, endpoint: AppEndpoint) -> bool:
        if not re.fullmatch(self.pattern, endpoint.api_name):
            return False
        names = {p.name for p in endpoint.parameters}
        if self.takes_nothing and endpoint.parameters:
            return False
        if self.needs_image and not any(p.component == "Image" for p in endpoint.parameters):
            return False
        return set(self.needs) <= names

    def describe(self) -> str:
        wants = ["an image", *self.needs] if self.needs_image else list(self.needs)
        base = self.pattern.split("(")[0].replace("\\", "")
        return f"{base}({', '.join(wants)})" if wants else f"{base}()"


ROLES = {
    "start_session": EndpointRole("start_session", r"/start_session(_\d+)?", takes_nothing=True),
    "preprocess": EndpointRole("preprocess", r"/preprocess_image(_\d+)?", needs_image=True),
    "image_to_3d": EndpointRole("image_to_3d", r"/image_to_3d(_\d+)?", needs=("seed",), needs_image=True),
    "extract_glb": EndpointRole("extract_glb", r"/extract_glb(_\d+)?", needs=("texture_size",)),
}
REQUIRED_ROLES = ("preprocess", "image_to_3d", "extract_glb")


@dataclass(frozen=True)
class TrellisApp:
    """What a TRELLIS / TRELLIS.2 Gradio app offers, read from its own API description and config."""

    url: str
    gradio_version: str
    offered: tuple[AppEndpoint, ...]  # every public endpoint
    roles: dict[str, AppEndpoint] = field(default_factory=dict)

    @property
    def variant(self) -> str:
        sampler = self.roles.get("image_to_3d")
        return "TRELLIS.2" if sampler is not None and sampler.parameter("resolution") is not None else "TRELLIS"

    def missing(self) -> list[str]:
        return [role for role in REQUIRED_ROLES if role not in self.roles]

    def offered_text(self) -> str:
        return ", ".join(endpoint.signature() for endpoint in self.offered) or "no public endpoints"


def read_app(client: Any, url: str, roles: Mapping[str, EndpointRole] | None = None) -> TrellisApp:
    """The app's public endpoints with their parameters, ranges and defaults, and which does which job (``roles``:
    the image-to-3D app's by default; TRELLIS.2's texturing app has its own)."""
    from gradio_client import utils as gradio_utils

    info = client.view_api(print_info=False, return_format="dict") or {}
    visibility = {e.api_name: getattr(e, "api_visibility", "public") for e in client.endpoints.values()}
    components = {c["id"]: c for c in client.config.get("components", [])}
    dependencies = {
        f"/{d['api_name']}": d for d in client.config.get("dependencies", []) if isinstance(d.get("api_name"), str)
    }
    offered = []
    for api_name, described in info.get("named_endpoints", {}).items():
        if visibility.get(api_name, "public") != "public":  # Gradio 6 lists undocumented events too
            continue
        inputs = _input_components(dependencies.get(api_name), components, gradio_utils.SKIP_COMPONENTS)
        parameters = described.get("parameters", [])
        props = inputs if len(inputs) == len(parameters) else [{}] * len(parameters)
        offered.append(AppEndpoint(api_name, tuple(_parameter(p, c) for p, c in zip(parameters, props, strict=True))))
    found = {}
    for role, rule in (ROLES if roles is None else roles).items():
        candidates = [endpoint for endpoint in offered if rule.matches(endpoint)]
        if candidates:  # the plainest name first: /x before /x_1
            found[role] = min(candidates, key=lambda e: (len(e.api_name), e.api_name))
    version = str(client.config.get("version", "?"))
    return TrellisApp(url=url, gradio_version=version, offered=tuple(offered), roles=found)


def _input_components(
    dependency: Mapping[str, Any] | None, components: Mapping[int, Mapping[str, Any]], skip: Any
) -> list[Mapping[str, Any]]:
    """The dependency's input components that appear as API parameters (state and layout ones do not)."""
    if dependency is None:
        return []
    found = []
    for component_id in dependency.get("inputs", []):
        component = components.get(component_id, {})
        if not component.get("skip_api", component.get("type") in skip):
            found.append(component.get("props", {}))
    return found


def _parameter(described: Mapping[str, Any], props: Mapping[str, Any]) -> AppParameter:
    choices = tuple(str(c[0] if isinstance(c, (list, tuple)) else c) for c in props.get("choices") or ())
    return AppParameter(
        name=str(described.get("parameter_name") or described.get("label") or "?"),
        component=str(described.get("component", "")),
        default=described.get("parameter_default"),
        has_default=bool(described.get("parameter_has_default")),
        minimum=props.get("minimum"),
        maximum=props.get("maximum"),
        step=props.get("step"),
        choices=choices,
    )


# --- what we send -------------------------------------------------------------------------------------------------


@dataclass
class CallPlan:
    """The values for each endpoint, after clamping, and what was left to the app."""

    image_to_3d: dict[str, Any] = field(default_factory=dict)
    extract_glb: dict[str, Any] = field(default_factory=dict)
    clamps: list[Clamp] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    app_defaults: dict[str, Any] = field(default_factory=dict)

    @property
    def sent(self) -> dict[str, Any]:
        return {**self.image_to_3d, **self.extract_glb}


def wanted_values(params: EngineParams, variant: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """What the job asks of ``/image_to_3d`` and ``/extract_glb``, by the app's parameter names: the seed and the
    job's texture size always, anything else only when the caller set it."""
    sampler: dict[str, Any] = {"seed": params.seed}
    extract: dict[str, Any] = {"texture_size": params.texture_size}
    optional: dict[str, Any]
    extract_optional: dict[str, Any]
    if variant == "TRELLIS.2":  # app.py: image_to_3d(resolution, ss_*, shape_slat_*, tex_slat_*)
        optional = {
            "resolution": None if params.resolution is None else str(params.resolution),
            "ss_sampling_steps": params.ss_steps,
            "ss_guidance_strength": params.ss_guidance,
            "shape_slat_sampling_steps": params.slat_steps,
            "tex_slat_sampling_steps": params.slat_steps,
            "shape_slat_guidance_strength": params.slat_guidance,
        }
        extract_optional = {"decimation_target": params.target_faces}
    else:  # TRELLIS app.py:109 image_to_3d(ss_*, slat_*), app.py:181 extract_glb(mesh_simplify, texture_size)
        optional = {
            "ss_sampling_steps": params.ss_steps,
            "ss_guidance_strength": params.ss_guidance,
            "slat_sampling_steps": params.slat_steps,
            "slat_guidance_strength": params.slat_guidance,
        }
        extract_optional = {"mesh_simplify": params.simplify}
    sampler |= {k: v for k, v in optional.items() if v is not None}
    extract |= {k: v for k, v in extract_optional.items() if v is not None}
    return sampler, extract


def plan_call(app: TrellisApp, params: EngineParams) -> CallPlan:
    """Fit the wanted values to what the app declares: drop what it lacks, clamp what it would reject."""
    plan = CallPlan()
    sampler, extract = wanted_values(params, app.variant)
    for key, value in params.options.items():  # by the app's own names: whichever endpoint has it
        (sampler if app.roles["image_to_3d"].parameter(key) is not None else extract)[key] = value
    who = f"{app.variant} app"
    for role, wanted, target in (
        ("image_to_3d", sampler, plan.image_to_3d),
        ("extract_glb", extract, plan.extract_glb),
    ):
        target.update(fit_call(app.roles[role], wanted, who, plan))
    return plan


def fit_call(endpoint: AppEndpoint, wanted: Mapping[str, Any], who: str, plan: CallPlan) -> dict[str, Any]:
    """``wanted`` fitted to one endpoint's parameters; clamps, warnings and the defaults left alone go to ``plan``."""
    values: dict[str, Any] = {}
    for name, value in wanted.items():
        parameter = endpoint.parameter(name)
        if parameter is None:
            plan.warnings.append(f"{who}: {endpoint.api_name} has no parameter {name!r}; {name}={value} not sent")
            continue
        fitted, clamp = fit_value(parameter, value)
        if clamp is not None:
            plan.clamps.append(clamp)
            plan.warnings.append(clamp.message(who))
        if fitted is not None:
            values[name] = fitted
    for parameter in endpoint.parameters:
        if parameter.name not in values and parameter.component not in ("Image", "File"):
            plan.app_defaults[parameter.name] = parameter.default
    return values


def fit_value(parameter: AppParameter, value: Any) -> tuple[Any, Clamp | None]:
    """``value`` moved onto the parameter's declared range and step (or choices); None when nothing fits."""
    if parameter.choices:
        text = str(value)
        if text in parameter.choices:
            return text, None
        return None, Clamp(parameter.name, text, f"the app's default {parameter.default}", "/".join(parameter.choices))
    if parameter.minimum is None or parameter.maximum is None or isinstance(value, bool):
        return value, None
    low, high, step = float(parameter.minimum), float(parameter.maximum), parameter.step
    fitted = min(max(float(value), low), high)
    if step:
        fitted = min(high, low + round((fitted - low) / step) * step)
    integral = all(float(x).is_integer() for x in (low, high, step or 1.0))
    result: float | int = round(fitted) if integral else round(fitted, 6)
    if float(result) == float(value):
        return (int(result) if integral else value), None
    allowed = f"{_number(low)}–{_number(high)}" + (f" in steps of {_number(step)}" if step and step != 1 else "")
    return result, Clamp(parameter.name, value, result, allowed)


def _number(value: float | None) -> str:
    return "?" if value is None else (str(int(value)) if float(value).is_integer() else f"{value:g}")


# --- the engine -----------------------------------------------------------------------------------------------------


class TrellisEngine:
    """TRELLIS / TRELLIS.2 through its Gradio app (``url``), or in-process when ``url`` is None."""

    name = "trellis"
    is_preview = False

    def __init__(
        self,
        url: str | None,
        *,
        timeout_s: float = 600.0,
        connect_timeout_s: float = 10.0,
        model: str | None = None,
    ) -> None:
        self.url = url.rstrip("/") if url else None
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.model = model

    # --- health ----------------------------------------------------------------------------------------------

    def health(self) -> EngineHealth:
        if self.url is None:
            variant = "TRELLIS.2" if trellis2_importable() else "TRELLIS" if trellis_importable() else None
            detail = f"in-process ({variant})" if variant else "no TRELLIS URL and no trellis/trellis2 package"
            return EngineHealth(name=self.name, available=variant is not None, detail=detail)
        quick = min(self.connect_timeout_s, HEALTH_TIMEOUT_S)
        try:
            app = self.describe(timeout_s=quick)
        except EngineError as exc:
            return EngineHealth(name=self.name, available=False, url=self.url, detail=exc.reason)
        missing = app.missing()
        if missing:
            wanted = ", ".join(ROLES[role].describe() for role in missing)
            detail = f"reachable, but not a TRELLIS app: no {wanted}; it offers {app.offered_text()}"
            return EngineHealth(name=self.name, available=False, url=self.url, detail=detail)
        detail = f"{app.variant} Gradio app (Gradio {app.gradio_version})"
        return EngineHealth(name=self.name, available=True, url=self.url, detail=detail)

    def describe(self, timeout_s: float | None = None) -> TrellisApp:
        """Connect and read what the app offers; ``EngineUnavailable`` when it cannot be reached."""
        with tempfile.TemporaryDirectory(prefix="alch3mist-trellis-") as tmp:
            client = self._connect(Path(tmp), timeout_s)
            try:
                return read_app(client, self.url or "")
            finally:
                client.close()

    # --- generate --------------------------------------------------------------------------------------------

    def generate(self, image: Image.Image, params: EngineParams, out_path: Path, control: StageControl) -> EngineResult:
        if self.url is None:
            if trellis2_importable():  # pragma: no cover - GPU only
                return _InProcessTrellis2.generate(self.model or DEFAULT_MODEL_V2, image, params, out_path, control)
            if trellis_importable():  # pragma: no cover - GPU only
                return _InProcessTrellis.generate(self.model or DEFAULT_MODEL, image, params, out_path, control)
            raise EngineUnavailable(self.name, None, "no TRELLIS URL configured and no trellis/trellis2 package")
        with tempfile.TemporaryDirectory(prefix="alch3mist-trellis-") as tmp:
            client = self._connect(Path(tmp))
            try:
                return _RemoteJob(self, client, Path(tmp), control).run(image, params, out_path)
            finally:
                client.close()

    def _connect(self, tmp: Path, timeout_s: float | None = None) -> Any:
        read = timeout_s or self.timeout_s
        return connect_app(self.name, self.url or "", tmp, read, min(self.connect_timeout_s, read))


def connect_app(engine: str, url: str, tmp: Path, read_timeout_s: float, connect_timeout_s: float) -> Any:
    """A ``gradio_client.Client`` on the app at ``url`` downloading into ``tmp``; ``EngineUnavailable`` when the app
    cannot be reached or is not a Gradio app."""
    from gradio_client import Client

    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # gradio_client ignores analytics_enabled=False
    try:
        return Client(
            url,
            verbose=False,
            download_files=str(tmp),
            analytics_enabled=False,
            httpx_kwargs={"timeout": httpx.Timeout(read_timeout_s, connect=connect_timeout_s)},
        )
    except (httpx.HTTPError, OSError) as exc:
        raise EngineUnavailable(engine, url, f"unreachable: cannot reach the Gradio app: {exc}") from exc
    except (ValueError, KeyError) as exc:  # gradio_client: "Could not fetch config for ..."
        reason = str(exc).splitlines()[0][:200]
        raise EngineUnavailable(engine, url, f"reachable, but not a Gradio app ({reason})") from exc


def call_endpoint(
    client: Any,
    endpoint: AppEndpoint,
    kwargs: dict[str, Any],
    *,
    engine: str,
    url: str,
    timeout_s: float,
    control: StageControl,
) -> Any:
    """Submit one call, wait for it honouring cancel (the job is cancelled in the app too) and the timeout, and
    turn the app's failures into ``EngineError`` / ``EngineUnavailable`` naming the endpoint."""
    from gradio_client.exceptions import AppError

    api_name = endpoint.api_name
    control.raise_if_cancelled()
    job = client.submit(api_name=api_name, **kwargs)
    wait_for(
        job.done, engine=engine, url=url, what=api_name, timeout_s=timeout_s, control=control, on_cancel=job.cancel
    )
    try:
        return job.result(timeout=1.0)
    except AppError as exc:
        raise EngineError(engine, url, f"{api_name} failed in the app: {exc}") from exc
    except (httpx.HTTPError, OSError, TimeoutError) as exc:
        raise EngineUnavailable(engine, url, f"{api_name}: connection lost: {exc}") from exc
    except Exception as exc:  # gradio_client surfaces server-side failures with several exception types
        raise EngineError(engine, url, f"{api_name} failed: {type(exc).__name__}: {exc}") from exc


class _RemoteJob:
    """One job against the Gradio app: one Client, one session."""

    def __init__(self, engine: TrellisEngine, client: Any, tmp: Path, control: StageControl) -> None:
        self.engine, self.client, self.tmp, self.control = engine, client, tmp, control
        self.url = engine.url or ""

    def run(self, image: Image.Image, params: EngineParams, out_path: Path) -> EngineResult:
        from gradio_client import handle_file

        # 1. Read the app and plan the values (clamped to its ranges)
        app = read_app(self.client, self.url)
        if app.missing():
            wanted = ", ".join(ROLES[role].describe() for role in app.missing())
            message = f"the app has no {wanted}: is it a TRELLIS app? It offers {app.offered_text()}"
            raise EngineError(self.engine.name, self.url, message)
        plan = plan_call(app, params)
        # 2. The session folder (demo.load does not run for API clients)
        if "start_session" in app.roles:
            self._call(app.roles["start_session"], {}, 0.05)
        # 3. Background removal + crop, as the UI does on upload
        image_path = self.tmp / "input.png"
        image.save(image_path)
        preprocess = app.roles["preprocess"]
        image_name = next(p.name for p in preprocess.parameters if p.component == "Image")
        processed = file_output(self._call(preprocess, {image_name: handle_file(str(image_path))}, 0.1))
        if processed is None:
            raise EngineError(self.engine.name, self.url, f"{preprocess.api_name} returned no image")
        # 4. Sample, then 5. extract the GLB
        sampler = app.roles["image_to_3d"]
        sampler_image = next(p.name for p in sampler.parameters if p.component == "Image")
        self._call(sampler, {sampler_image: handle_file(str(processed)), **plan.image_to_3d}, 0.8)
        glb = file_output(self._call(app.roles["extract_glb"], plan.extract_glb, 0.95))
        return self._finish(app, plan, glb, out_path)

    def _call(self, endpoint: AppEndpoint, kwargs: dict[str, Any], done_fraction: float) -> Any:
        engine, url, timeout_s = self.engine.name, self.url, self.engine.timeout_s
        result = call_endpoint(
            self.client, endpoint, kwargs, engine=engine, url=url, timeout_s=timeout_s, control=self.control
        )
        self.control.report(done_fraction, f"trellis {endpoint.api_name.lstrip('/')} done")
        return result

    def _finish(self, app: TrellisApp, plan: CallPlan, glb: Path | None, out_path: Path) -> EngineResult:
        if glb is None or not glb.is_file():
            raise EngineError(self.engine.name, self.url, f"{app.roles['extract_glb'].api_name} returned no GLB file")
        data = glb.read_bytes()
        check_glb(data, self.engine.name)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(glb, out_path)
        return EngineResult(
            glb_path=out_path,
            engine=self.engine.name,
            is_preview=False,
            variant=app.variant,
            url=self.url,
            sent=plan.sent,
            applied=plan.sent,  # the app passes every value to its pipeline
            app_defaults=plan.app_defaults,
            clamps=plan.clamps,
            warnings=plan.warnings,
            texture=texture_of(data),
            glb_bytes=len(data),
            details={"gradio": app.gradio_version, "endpoints": [e.api_name for e in app.roles.values()]},
        )


def file_output(result: Any) -> Path | None:
    """The first existing file among an endpoint's outputs (a path, a FileData-like dict, or a tuple of those)."""
    items = result if isinstance(result, (list, tuple)) else [result]
    for item in items:
        candidate = item.get("path") or item.get("value") if isinstance(item, dict) else item
        if isinstance(candidate, (str, os.PathLike)) and Path(candidate).is_file():
            return Path(candidate)
    return None


# --- in-process (GPU box) ----------------------------------------------------------------------------------------


class _InProcessTrellis:  # pragma: no cover - needs CUDA and the trellis package
    """TRELLIS' ``TrellisImageTo3DPipeline``, the calls of its app.py (image_to_3d, extract_glb)."""

    _pipeline: Any = None
    _lock = threading.Lock()

    @classmethod
    def generate(
        cls, model: str, image: Image.Image, params: EngineParams, out_path: Path, control: StageControl
    ) -> EngineResult:
        from trellis.utils import postprocessing_utils

        pipeline = cls._load(model)
        control.raise_if_cancelled()
        sampler, extract = wanted_values(params, "TRELLIS")
        ss = _sampler_params(sampler, "ss_sampling_steps", "ss_guidance_strength", "cfg_strength")
        slat = _sampler_params(sampler, "slat_sampling_steps", "slat_guidance_strength", "cfg_strength")
        outputs = pipeline.run(
            image,
            seed=params.seed,
            formats=["gaussian", "mesh"],
            sparse_structure_sampler_params=ss,
            slat_sampler_params=slat,
        )
        control.report(0.8, "trellis: sampled")
        control.raise_if_cancelled()
        simplify = extract.get("mesh_simplify", 0.95)  # app.py's slider default
        gaussian, mesh = outputs["gaussian"][0], outputs["mesh"][0]
        size = params.texture_size
        glb = postprocessing_utils.to_glb(gaussian, mesh, simplify=simplify, texture_size=size, verbose=False)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        glb.export(str(out_path))
        data = out_path.read_bytes()
        check_glb(data, "trellis")
        sent = {**sampler, **extract, "mesh_simplify": simplify}
        return EngineResult(
            glb_path=out_path, engine="trellis", is_preview=False, variant="TRELLIS (in-process)", sent=sent,
            applied=sent, texture=texture_of(data), glb_bytes=len(data), details={"model": model},
        )  # fmt: skip

    @classmethod
    def _load(cls, model: str) -> Any:
        with cls._lock:
            if cls._pipeline is None:
                from trellis.pipelines import TrellisImageTo3DPipeline

                logger.info("loading TRELLIS pipeline %s", model)
                pipeline = TrellisImageTo3DPipeline.from_pretrained(model)
                pipeline.cuda()  # TRELLIS' sparse kernels are CUDA-only
                cls._pipeline = pipeline
            return cls._pipeline


class _InProcessTrellis2:  # pragma: no cover - needs CUDA and the trellis2 + o_voxel packages
    """TRELLIS.2's ``Trellis2ImageTo3DPipeline`` → ``o_voxel.postprocess.to_glb``, as in its example.py."""

    _pipeline: Any = None
    _lock = threading.Lock()

    @classmethod
    def generate(
        cls, model: str, image: Image.Image, params: EngineParams, out_path: Path, control: StageControl
    ) -> EngineResult:
        import o_voxel

        pipeline = cls._load(model)
        control.raise_if_cancelled()
        sampler, extract = wanted_values(params, "TRELLIS.2")
        pipeline_type = {"512": "512", "1024": "1024_cascade", "1536": "1536_cascade"}.get(  # app.py's mapping
            str(sampler.get("resolution", "1024")), "1024_cascade"
        )
        mesh = pipeline.run(
            image,
            seed=params.seed,
            sparse_structure_sampler_params=_sampler_params(
                sampler, "ss_sampling_steps", "ss_guidance_strength", "guidance_strength"
            ),
            shape_slat_sampler_params=_sampler_params(
                sampler, "shape_slat_sampling_steps", "shape_slat_guidance_strength", "guidance_strength"
            ),
            tex_slat_sampler_params=_sampler_params(sampler, "tex_slat_sampling_steps", "", "guidance_strength"),
            pipeline_type=pipeline_type,
        )[0]
        mesh.simplify(16777216)  # example.py: nvdiffrast limit
        control.report(0.8, "trellis.2: sampled")
        control.raise_if_cancelled()
        decimation = int(extract.get("decimation_target", 1_000_000))  # example.py's value
        glb = o_voxel.postprocess.to_glb(
            vertices=mesh.vertices,
            faces=mesh.faces,
            attr_volume=mesh.attrs,
            coords=mesh.coords,
            attr_layout=mesh.layout,
            voxel_size=mesh.voxel_size,
            aabb=[[-0.5, -0.5, -0.5], [0.5, 0.5, 0.5]],
            decimation_target=decimation,
            texture_size=params.texture_size,
            remesh=True,
            remesh_band=1,
            remesh_project=0,
            verbose=False,
        )
        out_path.parent.mkdir(parents=True, exist_ok=True)
        glb.export(str(out_path), extension_webp=True)
        data = out_path.read_bytes()
        check_glb(data, "trellis")
        sent = {**sampler, **extract, "pipeline_type": pipeline_type, "decimation_target": decimation}
        return EngineResult(
            glb_path=out_path, engine="trellis", is_preview=False, variant="TRELLIS.2 (in-process)", sent=sent,
            applied=sent, texture=texture_of(data), glb_bytes=len(data), details={"model": model},
        )  # fmt: skip

    @classmethod
    def _load(cls, model: str) -> Any:
        with cls._lock:
            if cls._pipeline is None:
                from trellis2.pipelines import Trellis2ImageTo3DPipeline

                logger.info("loading TRELLIS.2 pipeline %s", model)
                pipeline = Trellis2ImageTo3DPipeline.from_pretrained(model)
                pipeline.cuda()  # TRELLIS.2's sparse kernels (FlexGEMM, CuMesh, o-voxel) are CUDA-only
                cls._pipeline = pipeline
            return cls._pipeline


def _sampler_params(values: Mapping[str, Any], steps: str, guidance: str, guidance_key: str) -> dict[str, Any]:
    """A pipeline's sampler dict from the set values only (the pipeline's own config fills the rest)."""
    found: dict[str, Any] = {}
    if steps in values:
        found["steps"] = values[steps]
    if guidance and guidance in values:
        found[guidance_key] = values[guidance]
    return found


__all__ = [
    "AppEndpoint",
    "EndpointRole",
    "TrellisApp",
    "TrellisEngine",
    "call_endpoint",
    "connect_app",
    "file_output",
    "fit_call",
    "fit_value",
    "plan_call",
    "read_app",
    "trellis2_importable",
    "trellis_importable",
]
