"""Offscreen rendering of a GLB from several camera angles with VTK (Mesa EGL on the CPU, the GPU's EGL when present).

Why VTK itself and not pyvista's ``Plotter``: the same ``vtkGLTFImporter`` underneath, but without pyvista's import
cost (~2 s) and render defaults (~1 s a view at 512² on llvmpipe); raw VTK renders a 512² view of a 50k-face mesh in
~0.25 CPU-seconds there, lighting and FXAA included (bench/render.py).
The importer reads what other tools write, not only ours: embedded textures, several primitives and materials, node
transforms, vertex colours, metallic-roughness PBR. Metallic surfaces need an environment to reflect, so the scene
is lit by a procedural neutral "studio" environment (image-based lighting) plus a soft key and fill light.

Rendering runs in a child process (``python -m alch3mist.mesh.render``): VTK segfaults when no OpenGL context can be
made and may crash on hostile files, and a child can be killed on cancel. The child reads a JSON job on stdin and
writes one JSON line per finished view on stdout; :func:`render_glb` drives it.
"""

from __future__ import annotations

import json
import logging
import math
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from ..errors import Cancelled, MeshError

if TYPE_CHECKING:  # VTK is imported only in the child process
    from vtkmodules.vtkRenderingCore import vtkRenderWindow
    from vtkmodules.vtkRenderingOpenGL2 import vtkOpenGLRenderer

    from .gbuffer import Camera

__all__ = [
    "EGL_APT_PACKAGES",
    "ViewSpec",
    "check_opengl",
    "fit_distance",
    "render_glb",
    "render_glb_cameras",
    "turntable",
    "view_direction",
]

logger = logging.getLogger(__name__)

# What a Debian/Ubuntu machine needs for VTK's headless EGL (Mesa's llvmpipe on the CPU); scripts/install-system-deps.sh
EGL_APT_PACKAGES = "libegl1 libegl-mesa0 libgl1-mesa-dri libgl1"
NO_OPENGL_HELP = (
    "offscreen OpenGL is not available: VTK could not create an EGL context. "
    f"Install Mesa's EGL (Debian/Ubuntu: apt-get install {EGL_APT_PACKAGES}) or run scripts/install-system-deps.sh"
)
VIEW_ANGLE_DEG = 30.0
FRAME_MARGIN = 1.08  # empty space around the object, as a factor on the fitted camera distance
BACKGROUND_TOP = (0.97, 0.97, 0.97)
BACKGROUND_BOTTOM = (0.86, 0.86, 0.87)
GLB_MAGIC = b"glTF"
POLL_S = 0.2  # how often a waiting parent checks cancel and the deadline
CHILD_EXIT_S = 10.0  # how long a child that reported all views may take to exit
FRAMING_POINTS = 20_000  # vertices sampled to fit the camera distance


@dataclass(frozen=True)
class ViewSpec:
    """A camera on a sphere around the object: azimuth 0 looks at the glTF front (+Z), 90 from the right (+X)."""

    azimuth: float
    elevation: float

    @property
    def label(self) -> str:
        return f"az {self.azimuth:+.0f}° · el {self.elevation:+.0f}°"


def turntable(views: int = 8, *, elevation: float = 15.0, start: float = -180.0) -> list[ViewSpec]:
    """``views`` azimuths evenly spaced from ``start`` (8 → −180, −135 … 135), all at ``elevation``."""
    if views < 1:
        raise ValueError("views must be at least 1")
    step = 360.0 / views
    return [ViewSpec(azimuth=start + i * step, elevation=elevation) for i in range(views)]


# --------------------------------------------------------------------------------------------------------------------
# Parent side: run the child, stream its progress, turn its failures into MeshError.
# --------------------------------------------------------------------------------------------------------------------

ViewCallback = Callable[[int, Path], None]


def render_glb(
    glb_path: Path,
    views: Sequence[ViewSpec],
    *,
    size: int,
    out_dir: Path,
    on_view: ViewCallback | None = None,
    cancel: threading.Event | None = None,
    timeout_s: float = 300.0,
) -> list[Path]:
    """Render ``views`` of ``glb_path`` as ``out_dir/view_00.png`` … (``size``² pixels) and return the paths.

    ``on_view(index, path)`` is called as each view is written; if it raises, the child is killed and the exception
    propagates. Setting ``cancel`` kills the child within ``POLL_S`` and raises ``Cancelled``. Raises ``MeshError``
    for an unreadable/empty GLB, on timeout, or when no offscreen OpenGL is available (naming the packages to install).
    """
    _check_glb_file(glb_path)
    if not views:
        raise ValueError("no views requested")
    if not 16 <= size <= 4096:
        raise ValueError(f"size must be within 16..4096, got {size}")
    out_dir.mkdir(parents=True, exist_ok=True)
    job = {"glb": str(glb_path), "out_dir": str(out_dir), "size": size, "views": [asdict(v) for v in views]}
    return run_child(__name__, job, len(views), glb_path, on_view=on_view, cancel=cancel, timeout_s=timeout_s)


def run_child(
    module: str,
    job: dict[str, Any],
    expected: int,
    subject: Path,
    *,
    on_view: ViewCallback | None,
    cancel: threading.Event | None,
    timeout_s: float,
) -> list[Path]:
    """Run ``python -m module`` with ``job`` (JSON on its stdin) and follow its events until ``expected`` views are
    reported; failures become ``MeshError`` naming ``subject`` (and the packages to install when OpenGL is missing).
    Shared by this renderer and the G-buffer rasteriser (``mesh.gbuffer``)."""
    with tempfile.TemporaryFile() as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", module],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=_child_env(),
            text=True,
        )
        try:
            paths = _drive_child(proc, job, on_view, cancel, deadline=time.monotonic() + timeout_s)
            proc.wait(timeout=CHILD_EXIT_S)
        finally:
            _reap(proc)
        if proc.returncode != 0 or len(paths) != expected:
            raise _child_failure(subject, proc.returncode, _tail(stderr))
    return paths


def render_glb_cameras(
    glb_path: Path,
    cameras: Sequence[Camera],
    *,
    scene_transform: Sequence[Sequence[float]],
    depth_ranges: Sequence[Sequence[float]],
    out_dir: Path,
    on_view: ViewCallback | None = None,
    cancel: threading.Event | None = None,
    timeout_s: float = 300.0,
) -> list[Path]:
    """Render ``glb_path`` lit as :func:`render_glb` does, but from explicit cameras (perspective or orthographic).

    The file's scene (node transforms applied) is first mapped by ``scene_transform`` (4×4, e.g. into the frame a
    :class:`~alch3mist.mesh.gbuffer.Camera` was built in); each camera is placed exactly as the G-buffer places it,
    ``depth_ranges[i]`` being its ``[near, far]`` planes. Writes ``out_dir/colour_NNN.png`` as RGBA — alpha is the
    coverage (transparent background), no antialiasing, so a pixel's colour is that of the surface the G-buffer's
    pixel sees. Progress, cancel, timeout and failures behave as in :func:`render_glb`.
    """
    _check_glb_file(glb_path)
    if not cameras or len(depth_ranges) != len(cameras):
        raise ValueError("one [near, far] depth range is needed per camera")
    matrix = [[float(value) for value in row] for row in scene_transform]
    if (
        len(matrix) != 4
        or any(len(row) != 4 for row in matrix)
        or not all(math.isfinite(v) for row in matrix for v in row)
    ):
        raise ValueError("scene_transform must be a finite 4x4 matrix")
    out_dir.mkdir(parents=True, exist_ok=True)
    job = {
        "kind": "cameras",
        "glb": str(glb_path),
        "out_dir": str(out_dir),
        "views": [camera.to_json() for camera in cameras],
        "depth_ranges": [[float(near), float(far)] for near, far in depth_ranges],
        "scene_transform": matrix,
    }
    return run_child(__name__, job, len(cameras), glb_path, on_view=on_view, cancel=cancel, timeout_s=timeout_s)


def _check_glb_file(glb_path: Path) -> None:
    if not glb_path.is_file():
        raise MeshError(f"GLB not found: {glb_path}")
    with glb_path.open("rb") as handle:
        magic = handle.read(4)
    if magic != GLB_MAGIC:
        raise MeshError(f"{glb_path.name} is not a binary glTF (GLB) file")


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    if not env.get("DISPLAY"):  # headless: go straight to EGL instead of failing on X first
        env.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")
    return env


def _drive_child(
    proc: subprocess.Popen[str],
    job: dict[str, Any],
    on_view: ViewCallback | None,
    cancel: threading.Event | None,
    *,
    deadline: float,
) -> list[Path]:
    """Feed the job, then follow the child's events until it closes stdout; cancel and the deadline are checked
    every ``POLL_S`` even while the child is silent (loading a big GLB, compiling shaders)."""
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(json.dumps(job))
    proc.stdin.close()
    lines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=_pump, args=(proc.stdout, lines), daemon=True).start()
    paths: list[Path] = []
    while True:
        if cancel is not None and cancel.is_set():
            raise Cancelled("job cancelled")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise MeshError(f"rendering timed out after {len(paths)} of {len(job['views'])} views")
        try:
            line = lines.get(timeout=min(POLL_S, remaining))
        except queue.Empty:
            continue
        if line is None:
            return paths
        event = _parse_event(line)
        if event.get("event") == "error":
            raise MeshError(str(event.get("message")))
        if event.get("event") == "view":
            paths.append(Path(event["path"]))
            if on_view is not None:
                on_view(len(paths) - 1, paths[-1])


def _pump(stdout: IO[str], lines: queue.Queue[str | None]) -> None:
    for line in stdout:
        lines.put(line)
    lines.put(None)


def _parse_event(line: str) -> dict[str, Any]:
    line = line.strip()
    if not line.startswith("{"):
        return {}
    event = json.loads(line)
    return event if isinstance(event, dict) else {}


def _reap(proc: subprocess.Popen[str]) -> None:
    """Kill the child if it still runs (cancel, timeout, error) and collect it."""
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def _tail(stderr: IO[bytes], limit: int = 1500) -> str:
    stderr.seek(0)
    return stderr.read().decode("utf-8", "replace")[-limit:]


def _child_failure(glb_path: Path, returncode: int, stderr_tail: str) -> MeshError:
    logger.warning("renderer child failed (rc=%s) on %s: %s", returncode, glb_path, stderr_tail)
    if "EGL" in stderr_tail or "OSMesa" in stderr_tail or "OpenGL" in stderr_tail:
        return MeshError(NO_OPENGL_HELP)
    last = stderr_tail.strip().splitlines()[-1:] or ["no output"]
    return MeshError(f"rendering {glb_path.name} failed (renderer exit code {returncode}): {last[0]}")


# --------------------------------------------------------------------------------------------------------------------
# Child side: VTK.
# --------------------------------------------------------------------------------------------------------------------


def _emit(**event: Any) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def _make_window(size: int) -> tuple[vtkRenderWindow, vtkOpenGLRenderer]:
    from vtkmodules.vtkRenderingCore import vtkRenderWindow
    from vtkmodules.vtkRenderingOpenGL2 import vtkOpenGLRenderer  # also registers the OpenGL window factories

    window = vtkRenderWindow()
    window.SetOffScreenRendering(True)
    window.SetSize(size, size)
    window.SetMultiSamples(0)  # FXAA instead: MSAA multiplies the fragment cost on llvmpipe
    renderer = vtkOpenGLRenderer()
    renderer.GradientBackgroundOn()
    renderer.SetBackground(*BACKGROUND_BOTTOM)
    renderer.SetBackground2(*BACKGROUND_TOP)
    renderer.UseFXAAOn()
    window.AddRenderer(renderer)
    return window, renderer


def check_opengl(window: vtkRenderWindow) -> None:
    """VTK falls back from EGL to OSMesa and then segfaults on the first render if neither works: check first."""
    import ctypes.util

    if window.GetClassName() == "vtkOSOpenGLRenderWindow" and ctypes.util.find_library("OSMesa") is None:
        raise MeshError(NO_OPENGL_HELP)


def _import_glb(glb_path: Path, window: vtkRenderWindow, renderer: vtkOpenGLRenderer) -> None:
    from vtkmodules.vtkIOImport import vtkGLTFImporter

    importer = vtkGLTFImporter()
    importer.SetFileName(str(glb_path))
    importer.SetRenderWindow(window)
    importer.Update()
    bounds = renderer.ComputeVisiblePropBounds()
    if renderer.GetActors().GetNumberOfItems() == 0 or not _valid_bounds(bounds):
        raise MeshError(f"{glb_path.name} has no visible geometry (unreadable or empty GLB)")


def _valid_bounds(bounds: Sequence[float]) -> bool:
    return all(math.isfinite(b) for b in bounds) and bounds[0] <= bounds[1] and bounds[2] <= bounds[3]


def _studio_environment() -> Any:
    """A small equirectangular sky: bright overhead, neutral grey horizon, darker floor — soft, colourless light."""
    import numpy as np
    from vtkmodules.util.numpy_support import numpy_to_vtk
    from vtkmodules.vtkCommonDataModel import vtkImageData
    from vtkmodules.vtkRenderingCore import vtkTexture

    height, width = 32, 64
    up = np.cos(np.linspace(0.0, np.pi, height))  # +1 at the zenith, −1 at the nadir (image row 0 = zenith)
    shade = np.where(up > 0, 0.70 + 0.30 * up, 0.70 + 0.25 * up)
    rgb = np.repeat(np.repeat(shade[:, None, None], width, axis=1), 3, axis=2)
    pixels = (np.clip(rgb, 0.0, 1.0) * 255).astype(np.uint8)[::-1]  # VTK images start at the bottom row
    image = vtkImageData()
    image.SetDimensions(width, height, 1)
    image.GetPointData().SetScalars(numpy_to_vtk(pixels.reshape(-1, 3).copy(), deep=True))
    texture = vtkTexture()
    texture.SetInputData(image)
    texture.SetColorModeToDirectScalars()
    texture.MipmapOn()
    texture.InterpolateOn()
    texture.UseSRGBColorSpaceOn()
    return texture


def _light_scene(renderer: vtkOpenGLRenderer) -> None:
    from vtkmodules.vtkRenderingCore import vtkLight

    # Low-resolution prefiltering: the environment is a smooth gradient; the defaults cost ~3 s on llvmpipe.
    renderer.GetEnvMapPrefiltered().SetPrefilterMaxSamples(32)
    renderer.GetEnvMapIrradiance().SetIrradianceSize(16)
    renderer.GetEnvMapIrradiance().SetIrradianceStep(0.2)
    renderer.GetEnvMapLookupTable().SetLUTSize(64)
    renderer.GetEnvMapLookupTable().SetLUTSamples(64)
    renderer.UseImageBasedLightingOn()
    renderer.SetEnvironmentTexture(_studio_environment(), False)
    renderer.RemoveAllLights()
    for position, intensity in (((-1.0, 1.2, 1.0), 0.55), ((1.0, 0.3, 0.6), 0.25)):  # key (upper left), fill
        light = vtkLight()
        light.SetLightTypeToCameraLight()
        light.SetPosition(*position)
        light.SetFocalPoint(0.0, 0.0, 0.0)
        light.SetIntensity(intensity)
        renderer.AddLight(light)


def view_direction(view: ViewSpec) -> tuple[float, float, float]:
    """Unit vector from the object's centre towards the camera."""
    az, el = math.radians(view.azimuth), math.radians(view.elevation)
    return (math.sin(az) * math.cos(el), math.sin(el), math.cos(az) * math.cos(el))


def _scene_points(renderer: vtkOpenGLRenderer, limit: int = FRAMING_POINTS) -> Any:
    """World-space vertices of every actor (node transforms applied), evenly subsampled to about ``limit``."""
    import numpy as np
    from vtkmodules.util.numpy_support import vtk_to_numpy

    chunks = []
    actors = renderer.GetActors()
    actors.InitTraversal()
    for _ in range(actors.GetNumberOfItems()):
        actor = actors.GetNextActor()
        data = actor.GetMapper().GetInput() if actor.GetMapper() is not None else None
        if data is None or data.GetPoints() is None:
            continue
        local = vtk_to_numpy(data.GetPoints().GetData()).astype(float)
        matrix = np.array([[actor.GetMatrix().GetElement(i, j) for j in range(4)] for i in range(4)])
        chunks.append(local @ matrix[:3, :3].T + matrix[:3, 3])
    points = np.concatenate(chunks) if chunks else np.zeros((0, 3))
    return points[:: max(1, len(points) // limit)]


def fit_distance(points: Any, centre: Sequence[float], views: Sequence[ViewSpec]) -> float:
    """The smallest camera distance at which every point is inside the view in every view, times a margin.

    One distance for all views keeps the object at the same scale around the turntable. Fitting the vertices
    rather than the bounding box's corners keeps round objects from looking small.
    """
    import numpy as np

    relative = np.asarray(points, dtype=float).reshape(-1, 3) - np.asarray(centre, dtype=float)
    tan_half = math.tan(math.radians(VIEW_ANGLE_DEG / 2))
    needed = 1e-6
    for view in views:
        back = np.array(view_direction(view))  # camera sits at centre + distance * back
        right = np.cross([0.0, 1.0, 0.0], back)
        norm = float(np.linalg.norm(right))
        right = right / norm if norm > 1e-9 else np.array([1.0, 0.0, 0.0])  # straight above/below the object
        up = np.cross(back, right)
        towards = relative @ back  # how far each point sticks out towards the camera
        sideways = np.maximum(np.abs(relative @ right), np.abs(relative @ up))
        needed = max(needed, float(np.max(sideways / tan_half + towards, initial=needed)))
    return needed * FRAME_MARGIN


def _bounds_centre(bounds: Sequence[float]) -> tuple[float, float, float]:
    return ((bounds[0] + bounds[1]) / 2, (bounds[2] + bounds[3]) / 2, (bounds[4] + bounds[5]) / 2)


def _place_camera(renderer: vtkOpenGLRenderer, centre: Sequence[float], view: ViewSpec, distance: float) -> None:
    direction = view_direction(view)
    camera = renderer.GetActiveCamera()
    camera.SetViewAngle(VIEW_ANGLE_DEG)
    camera.SetFocalPoint(*centre)
    camera.SetPosition(*(c + distance * d for c, d in zip(centre, direction, strict=True)))
    if abs(view.elevation) < 89.0:
        camera.SetViewUp(0.0, 1.0, 0.0)
    else:  # straight above/below: y-up is degenerate, keep the front (+Z) at the bottom of the image
        camera.SetViewUp(0.0, 0.0, -1.0)
    renderer.ResetCameraClippingRange()


def _save_frame(window: vtkRenderWindow, path: Path) -> None:
    from PIL import Image
    from vtkmodules.util.numpy_support import vtk_to_numpy
    from vtkmodules.vtkRenderingCore import vtkWindowToImageFilter

    grab = vtkWindowToImageFilter()
    grab.SetInput(window)
    grab.ShouldRerenderOff()  # the caller has just rendered; a second render would double the cost of every view
    grab.ReadFrontBufferOff()
    grab.Update()
    image = grab.GetOutput()
    width, height, _ = image.GetDimensions()
    pixels = vtk_to_numpy(image.GetPointData().GetScalars()).reshape(height, width, -1)[::-1, :, :3]
    Image.fromarray(pixels.copy()).save(path, compress_level=1)  # zlib's fastest: ~3× quicker, ~20% larger


def render_in_process(glb_path: Path, views: Sequence[ViewSpec], *, size: int, out_dir: Path) -> Iterable[Path]:
    """The child's work, view by view (a generator: each view is written before it is yielded)."""
    window, renderer = _make_window(size)
    check_opengl(window)
    _import_glb(glb_path, window, renderer)
    _light_scene(renderer)
    centre = _bounds_centre(renderer.ComputeVisiblePropBounds())
    distance = fit_distance(_scene_points(renderer), centre, views)
    for index, view in enumerate(views):
        _place_camera(renderer, centre, view, distance)
        window.Render()
        path = out_dir / f"view_{index:02d}.png"
        _save_frame(window, path)
        yield path


def _transparent_window() -> tuple[vtkRenderWindow, vtkOpenGLRenderer]:
    """A window for explicit-camera renders: RGBA with a transparent background, no FXAA (it would blend edges into
    the background) and no MSAA, so coverage is exactly the rasteriser's (as in the G-buffer's face-id pass)."""
    from vtkmodules.vtkRenderingCore import vtkRenderWindow
    from vtkmodules.vtkRenderingOpenGL2 import vtkOpenGLRenderer

    window = vtkRenderWindow()
    window.SetOffScreenRendering(True)
    window.SetMultiSamples(0)
    window.SetAlphaBitPlanes(1)
    renderer = vtkOpenGLRenderer()
    renderer.SetBackground(0.0, 0.0, 0.0)
    renderer.SetBackgroundAlpha(0.0)
    renderer.UseFXAAOff()
    window.AddRenderer(renderer)
    return window, renderer


def _transform_scene(renderer: vtkOpenGLRenderer, transform: Sequence[Sequence[float]]) -> None:
    """Map every actor by ``transform`` on top of its own (node) transform."""
    import numpy as np
    from vtkmodules.vtkCommonMath import vtkMatrix4x4

    outer = np.asarray(transform, dtype=float)
    actors = renderer.GetActors()
    actors.InitTraversal()
    for _ in range(actors.GetNumberOfItems()):
        actor = actors.GetNextActor()
        own = np.array([[actor.GetMatrix().GetElement(i, j) for j in range(4)] for i in range(4)])
        combined = vtkMatrix4x4()
        for i, row in enumerate(outer @ own):
            for j, value in enumerate(row):
                combined.SetElement(i, j, float(value))
        actor.SetPosition(0.0, 0.0, 0.0)
        actor.SetOrientation(0.0, 0.0, 0.0)
        actor.SetScale(1.0, 1.0, 1.0)
        actor.SetOrigin(0.0, 0.0, 0.0)
        actor.SetUserMatrix(combined)


def _save_rgba(window: vtkRenderWindow, path: Path) -> None:
    from PIL import Image
    from vtkmodules.util.numpy_support import vtk_to_numpy
    from vtkmodules.vtkRenderingCore import vtkWindowToImageFilter

    grab = vtkWindowToImageFilter()
    grab.SetInput(window)
    grab.ShouldRerenderOff()
    grab.ReadFrontBufferOff()
    grab.SetInputBufferTypeToRGBA()
    grab.Update()
    image = grab.GetOutput()
    width, height, _ = image.GetDimensions()
    pixels = vtk_to_numpy(image.GetPointData().GetScalars()).reshape(height, width, 4)[::-1]
    Image.fromarray(pixels.copy(), "RGBA").save(path, compress_level=1)


def render_cameras_in_process(job: dict[str, Any]) -> Iterable[Path]:
    """The child's work for :func:`render_glb_cameras`, camera by camera (each view is written before it is yielded)."""
    from .gbuffer import Camera, _place  # the G-buffer's exact camera placement; imported here (gbuffer imports us)

    out_dir = Path(job["out_dir"])
    window, renderer = _transparent_window()
    check_opengl(window)
    _import_glb(Path(job["glb"]), window, renderer)
    _light_scene(renderer)
    _transform_scene(renderer, job["scene_transform"])
    for index, (camera_json, depth_range) in enumerate(zip(job["views"], job["depth_ranges"], strict=True)):
        camera = Camera.from_json(camera_json)
        window.SetSize(camera.width, camera.height)
        _place(renderer, camera, depth_range)
        window.Render()
        path = out_dir / f"colour_{index:03d}.png"
        _save_rgba(window, path)
        yield path


def child_main(work: Callable[[dict[str, Any]], Iterable[Path]]) -> int:
    """The child's side of :func:`run_child`: read the job from stdin, report each view ``work`` yields as it is
    written, turn a ``MeshError`` into an error event. Shared with the G-buffer rasteriser (``mesh.gbuffer``)."""
    job = json.loads(sys.stdin.read())
    started = time.perf_counter()
    try:
        for path in work(job):
            _emit(event="view", path=str(path))
    except MeshError as exc:
        _emit(event="error", message=exc.message)
        return 2
    _emit(event="done", seconds=round(time.perf_counter() - started, 3))
    return 0


def _render_job(job: dict[str, Any]) -> Iterable[Path]:
    if job.get("kind") == "cameras":
        return render_cameras_in_process(job)
    views = [ViewSpec(**v) for v in job["views"]]
    return render_in_process(Path(job["glb"]), views, size=int(job["size"]), out_dir=Path(job["out_dir"]))


if __name__ == "__main__":
    sys.exit(child_main(_render_job))
