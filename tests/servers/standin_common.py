"""What the TRELLIS and TRELLIS.2 stand-ins share: faults, the calls log, the stubbed model steps, the GLB.

Imported by ``trellis_app.py`` (Gradio 4.44.1 venv) and ``trellis2_app.py`` (Gradio 6.0.1 venv), so it uses only
numpy, Pillow and trimesh, which both venvs have. Only the *model* is stubbed here: background removal (upstream:
rembg / BiRefNet) and sampling (upstream: the flow models) — everything a client can observe through the app (its
endpoints, parameters, ranges, per-session state, errors) is the app's own, in the app files.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import trimesh
from PIL import Image, ImageDraw


class Faults:
    """Misbehaviour switched by tests: ``--fault`` or, read on every call, the content of ``--fault-file``.

    ``garbage`` (extract_glb returns a non-GLB file), ``empty`` (an empty file), ``error`` (image_to_3d raises),
    ``slow`` (image_to_3d sleeps for a minute).
    """

    def __init__(self, fault: str = "", fault_file: Path | None = None, calls_log: Path | None = None) -> None:
        self.default, self.fault_file = fault, fault_file
        self.calls_log = calls_log or Path(tempfile.mkdtemp(prefix="trellis-standin-")) / "calls.jsonl"

    def now(self) -> str:
        if self.fault_file is not None and self.fault_file.is_file():
            return self.fault_file.read_text().strip()
        return self.default

    def log(self, endpoint: str, **values: Any) -> None:
        """Append one call's parameters to the calls log (tests read it to check what the client sent)."""
        with self.calls_log.open("a") as handle:
            handle.write(json.dumps({"endpoint": endpoint, **values}, default=str) + "\n")


def remove_background_stub(image: Image.Image) -> Image.Image:
    """Stands in for the background-removal *model* (TRELLIS: rembg u2net; TRELLIS.2: BiRefNet): RGBA whose alpha
    is 0 where a pixel is within 24 levels of the corner colour. Plain product shots separate the same way."""
    rgb = np.asarray(image.convert("RGB")).astype(np.int16)
    corners = np.stack([rgb[0, 0], rgb[0, -1], rgb[-1, 0], rgb[-1, -1]])
    backdrop = np.median(corners, axis=0)
    alpha = (np.abs(rgb - backdrop).max(axis=2) > 24).astype(np.uint8) * 255
    return Image.fromarray(np.dstack([rgb.astype(np.uint8), alpha]), "RGBA")


def crop_to_object(output: Image.Image, margin: float, side: int | None) -> Image.Image:
    """The crop of both apps' ``pipeline.preprocess_image`` (trellis/pipelines/trellis_image_to_3d.py and
    trellis2/pipelines/trellis2_image_to_3d.py): bbox of alpha > 0.8, square, ``margin`` around it, optional resize,
    then RGB premultiplied by alpha. An image with no object fails there (``np.min`` of an empty array) as here."""
    rgba = np.asarray(output.convert("RGBA"))
    found = np.argwhere(rgba[:, :, 3] > 0.8 * 255)
    x0, y0, x1, y1 = np.min(found[:, 1]), np.min(found[:, 0]), np.max(found[:, 1]), np.max(found[:, 0])
    center = (x0 + x1) / 2, (y0 + y1) / 2
    size = int(max(x1 - x0, y1 - y0) * margin)
    box = (center[0] - size // 2, center[1] - size // 2, center[0] + size // 2, center[1] + size // 2)
    cropped = output.convert("RGBA").crop(box)  # type: ignore[arg-type]
    if side is not None:
        cropped = cropped.resize((side, side), Image.Resampling.LANCZOS)
    array = np.asarray(cropped).astype(np.float32) / 255
    return Image.fromarray((array[:, :, :3] * array[:, :, 3:4] * 255).astype(np.uint8))


def trellis2_preprocess(image: Image.Image) -> Image.Image:
    """TRELLIS.2's ``preprocess_image`` (the same in trellis2_image_to_3d.py and trellis2_texturing.py): downscale to
    1024 px first, the alpha mask when there is one, else the background-removal model; crop without margin."""
    scale = min(1, 1024 / max(image.size))
    if scale < 1:
        image = image.resize((int(image.width * scale), int(image.height * scale)), Image.Resampling.LANCZOS)
    output = image if has_alpha_mask(image) else remove_background_stub(image.convert("RGB"))
    return crop_to_object(output, margin=1.0, side=None)


def has_alpha_mask(image: Image.Image) -> bool:
    """Both apps: an RGBA input whose alpha is not all 255 is used as the mask; anything else goes to the model."""
    return image.mode == "RGBA" and not bool(np.all(np.asarray(image)[:, :, 3] == 255))


def sample_stub(image: Image.Image, seed: int) -> dict[str, Any]:
    """Stands in for sampling: the 'latent' is the image's colours (so the GLB's texture shows what was sent)."""
    return {"seed": int(seed), "texture": np.asarray(image.convert("RGB").resize((64, 64)))}


def textured_sphere_glb(state: dict[str, Any], texture_size: int, webp: bool = False) -> bytes:
    """A small UV sphere textured with the state's colours, as a GLB (trimesh, like both apps' exporters)."""
    sphere = trimesh.creation.uv_sphere(radius=0.5, count=[24, 24])
    direction = sphere.vertices / np.linalg.norm(sphere.vertices, axis=1, keepdims=True)
    uv = np.column_stack(
        [0.5 + np.arctan2(direction[:, 0], direction[:, 2]) / (2 * np.pi), 0.5 + np.arcsin(direction[:, 1]) / np.pi]
    )
    texture = Image.fromarray(np.asarray(state["texture"], dtype=np.uint8)).resize((max(8, texture_size // 8),) * 2)
    material = trimesh.visual.material.PBRMaterial(baseColorTexture=texture, metallicFactor=0.0, roughnessFactor=1.0)
    sphere.visual = trimesh.visual.TextureVisuals(uv=uv, material=material)
    scene = trimesh.Scene()
    scene.add_geometry(sphere, transform=trimesh.transformations.scale_matrix(3.0))
    return bytes(scene.export(file_type="glb", extension_webp=webp))


def example_images(folder: Path, count: int = 3) -> list[str]:
    """Stand-ins for the apps' ``assets/example_image/*`` (gr.Examples needs files to list)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        image = Image.new("RGBA", (128, 128), (0, 0, 0, 0))
        ImageDraw.Draw(image).ellipse((20, 20 + index * 5, 108, 108), fill=(200, 60 * index, 90, 255))
        path = folder / f"example_{index}.png"
        image.save(path)
        paths.append(str(path))
    return paths
