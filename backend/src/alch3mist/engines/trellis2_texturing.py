"""TRELLIS.2's texturing app (``app_texturing.py``, Gradio 6.0.1) as a mesh painter, driven with ``gradio_client``.

Read from microsoft/TRELLIS.2 ``app_texturing.py`` and ``trellis2/pipelines/trellis2_texturing.py``:

- The app's events: ``demo.load(start_session)`` (API clients must call ``/start_session`` themselves),
  ``image_prompt.upload(preprocess_image)`` (background removal unless the image has an alpha mask, crop to the
  object), and the Generate button: ``get_seed`` then ``shapeimage_to_tex(mesh_file, image, seed, resolution,
  texture_size, tex_slat_guidance_strength, tex_slat_guidance_rescale, tex_slat_sampling_steps, tex_slat_rescale_t)``
  → (GLB, GLB). The app has no ``gr.Examples``, so the upload handler keeps the name ``/preprocess_image``; as for
  the image-to-3D app, names are read from the app's own API description, never assumed.
- ``shapeimage_to_tex`` runs the pipeline with ``preprocess_image=False``: the picture must have been through
  ``/preprocess_image`` first, as the UI does on upload. We call it, and pass its output on.
- The pipeline loads the file with ``trimesh.load`` (a Scene becomes ``to_mesh()``), keeps only vertices and faces,
  normalises them into its unit cube (centred, longest side 0.99999), unwraps new UVs (CuMesh), samples base colour,
  metallic, roughness and alpha from its texture voxels, and exports with ``extension_webp=True``: the textures are
  WebP (``EXT_texture_webp``). Our post-processing reads them and writes PNG, so the GLB we hand out validates.
- Sliders (Gradio 6 rejects out-of-range values): ``texture_size`` 1024-4096 in steps of 1024 (default 2048),
  guidance 1-10 (1.0), rescale 0-1 (0.0), steps 1-50 (12), rescale_t 1-6 (3.0); ``resolution`` "512" / "1024" /
  "1536" ("1024"). We send the seed and the job's texture size (clamped, with a warning), anything else only when
  the caller set it by the app's own names (``PaintParams.options``).
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

from PIL import Image

from ..errors import EngineError
from ..stages.progress import StageControl
from .base import EngineHealth, EngineResult, PaintParams, check_glb, texture_of
from .trellis import (
    HEALTH_TIMEOUT_S,
    AppEndpoint,
    CallPlan,
    EndpointRole,
    TrellisApp,
    call_endpoint,
    connect_app,
    file_output,
    fit_call,
    read_app,
)

logger = logging.getLogger(__name__)

__all__ = ["PAINT_ROLES", "Trellis2Painter"]

PAINT_ROLES = {
    "start_session": EndpointRole("start_session", r"/start_session(_\d+)?", takes_nothing=True),
    "preprocess": EndpointRole("preprocess", r"/preprocess_image(_\d+)?", needs_image=True),
    "paint": EndpointRole("paint", r"/shapeimage_to_tex(_\d+)?", needs=("mesh_file", "texture_size"), needs_image=True),
}
REQUIRED = ("preprocess", "paint")
VARIANT = "TRELLIS.2 texturing"


class Trellis2Painter:
    """TRELLIS.2's ``app_texturing.py`` at ``url``: one ``Client`` (one session) per job."""

    name = "trellis2"

    def __init__(self, url: str, *, timeout_s: float = 600.0, connect_timeout_s: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s

    def health(self) -> EngineHealth:
        quick = min(self.connect_timeout_s, HEALTH_TIMEOUT_S)
        try:
            with tempfile.TemporaryDirectory(prefix="alch3mist-trellis2-") as tmp:
                client = connect_app(self.name, self.url, Path(tmp), quick, quick)
                try:
                    app = read_app(client, self.url, PAINT_ROLES)
                finally:
                    client.close()
        except EngineError as exc:
            return EngineHealth(name=self.name, available=False, url=self.url, detail=exc.reason)
        missing = _missing(app)
        if missing:
            return EngineHealth(name=self.name, available=False, url=self.url, detail=missing)
        detail = f"{VARIANT} Gradio app (Gradio {app.gradio_version})"
        return EngineHealth(name=self.name, available=True, url=self.url, detail=detail)

    def paint(
        self, mesh_glb: bytes, picture: Image.Image, params: PaintParams, out_path: Path, control: StageControl
    ) -> EngineResult:
        with tempfile.TemporaryDirectory(prefix="alch3mist-trellis2-") as folder:
            tmp = Path(folder)
            client = connect_app(self.name, self.url, tmp, self.timeout_s, min(self.connect_timeout_s, self.timeout_s))
            try:
                return self._paint(client, tmp, mesh_glb, picture, params, out_path, control)
            finally:
                client.close()

    def _paint(
        self,
        client: Any,
        tmp: Path,
        mesh_glb: bytes,
        picture: Image.Image,
        params: PaintParams,
        out_path: Path,
        control: StageControl,
    ) -> EngineResult:
        from gradio_client import handle_file

        # 1. Read the app; fit the values to its sliders
        app = read_app(client, self.url, PAINT_ROLES)
        missing = _missing(app)
        if missing:
            raise EngineError(self.name, self.url, missing)
        painter = app.roles["paint"]
        plan = CallPlan()
        wanted = {"seed": params.seed, "texture_size": params.texture_size, **params.options}
        values = fit_call(painter, wanted, f"{VARIANT} app", plan)
        # 2. The session folder (demo.load does not run for API clients)
        if "start_session" in app.roles:
            self._call(client, app.roles["start_session"], {}, control)
        # 3. The picture through the app's own preprocessing, as the UI does on upload
        picture_path, mesh_path = tmp / "picture.png", tmp / "mesh.glb"
        picture.save(picture_path)
        mesh_path.write_bytes(mesh_glb)
        preprocess = app.roles["preprocess"]
        processed = file_output(
            self._call(client, preprocess, {_image_name(preprocess): handle_file(str(picture_path))}, control)
        )
        if processed is None:
            raise EngineError(self.name, self.url, f"{preprocess.api_name} returned no image")
        control.report(0.1, "trellis2: picture preprocessed")
        # 4. Paint
        inputs = {"mesh_file": handle_file(str(mesh_path)), _image_name(painter): handle_file(str(processed)), **values}
        glb = file_output(self._call(client, painter, inputs, control))
        if glb is None or not glb.is_file():
            raise EngineError(self.name, self.url, f"{painter.api_name} returned no GLB file")
        data = glb.read_bytes()
        check_glb(data, self.name)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_bytes(data)
        control.report(1.0, "trellis2: painted")
        return EngineResult(
            glb_path=out_path,
            engine=self.name,
            is_preview=False,
            variant=VARIANT,
            url=self.url,
            sent=values,
            applied=values,  # the app passes every value to its pipeline
            app_defaults=plan.app_defaults,
            clamps=plan.clamps,
            warnings=plan.warnings,
            texture=texture_of(data),
            glb_bytes=len(data),
            details={"gradio": app.gradio_version, "endpoints": [e.api_name for e in app.roles.values()]},
        )

    def _call(self, client: Any, endpoint: AppEndpoint, kwargs: dict[str, Any], control: StageControl) -> Any:
        return call_endpoint(
            client, endpoint, kwargs, engine=self.name, url=self.url, timeout_s=self.timeout_s, control=control
        )


def _missing(app: TrellisApp) -> str | None:
    """Why ``app`` is not TRELLIS.2's texturing app, or None when it is."""
    missing = [role for role in REQUIRED if role not in app.roles]
    if not missing:
        return None
    wanted = ", ".join(PAINT_ROLES[role].describe() for role in missing)
    return (
        f"reachable, but not TRELLIS.2's texturing app (app_texturing.py): no {wanted}; it offers {app.offered_text()}"
    )


def _image_name(endpoint: AppEndpoint) -> str:
    return next(p.name for p in endpoint.parameters if p.component == "Image")
