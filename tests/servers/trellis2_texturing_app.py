"""A stand-in for microsoft/TRELLIS.2 ``app_texturing.py`` on Gradio 6.0.1 (what its setup.sh pins), model stubbed.

    .cache/trellis2-standin-venv/bin/python tests/servers/trellis2_texturing_app.py --port 7861 [--fault F]

Everything a client sees is upstream's (microsoft/TRELLIS.2 commit 5565d24, ``app_texturing.py`` and
``trellis2/pipelines/trellis2_texturing.py``): the component tree in the same order — there is no ``gr.Examples`` in
this app, so the upload handler is ``/preprocess_image`` — the same handlers and signatures
(``shapeimage_to_tex(mesh_file, image, seed, resolution, texture_size, tex_slat_guidance_strength,
tex_slat_guidance_rescale, tex_slat_sampling_steps, tex_slat_rescale_t)``), slider ranges and defaults (Gradio 6
rejects out-of-range values), ``demo.load(start_session)`` (API clients must call it), the pipeline run with
``preprocess_image=False`` (the picture must come from ``/preprocess_image``), the mesh loaded with ``trimesh.load``
(a Scene becomes ``to_mesh()``), normalised into the unit cube with its UVs dropped, new UVs, PBR textures
(base colour + alpha, metallic-roughness), the axes swapped back, and the GLB exported with ``extension_webp=True``.
Only the models are stubbed: the UV unwrap (CuMesh on CUDA; here every face gets its own chart, vertices split as an
unwrap splits them) and the texture latents (here the picture's object colour).
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
import trimesh
from PIL import Image
from standin_common import Faults, trellis2_preprocess

MAX_SEED = np.iinfo(np.int32).max  # app_texturing.py:16
TMP_DIR = Path(tempfile.mkdtemp(prefix="trellis2-texturing-standin-"))  # app_texturing.py:17
FAULTS = Faults()
ROUGHNESS, METALLIC = 0.6, 0.0  # what the stubbed texture latents decode to everywhere


class TexturingPipeline:
    """trellis2_texturing.py ``Trellis2TexturingPipeline``: its arithmetic kept, its models stubbed."""

    def preprocess_image(self, image: Image.Image) -> Image.Image:
        return trellis2_preprocess(image)

    def preprocess_mesh(self, mesh: trimesh.Trimesh) -> trimesh.Trimesh:
        """Centred, longest side 0.99999, z up (y ← −z, z ← y); only vertices and faces are kept (no UVs)."""
        vertices = mesh.vertices
        vertices_min = vertices.min(axis=0)
        vertices_max = vertices.max(axis=0)
        center = (vertices_min + vertices_max) / 2
        scale = 0.99999 / (vertices_max - vertices_min).max()
        vertices = (vertices - center) * scale
        tmp = vertices[:, 1].copy()
        vertices[:, 1] = -vertices[:, 2]
        vertices[:, 2] = tmp
        assert np.all(vertices >= -0.5) and np.all(vertices <= 0.5), "vertices out of range"
        return trimesh.Trimesh(vertices=vertices, faces=mesh.faces, process=False)

    def run(
        self,
        mesh: trimesh.Trimesh,
        image: Image.Image,
        seed: int = 42,
        tex_slat_sampler_params: dict[str, Any] | None = None,
        preprocess_image: bool = True,
        resolution: int = 1024,
        texture_size: int = 2048,
    ) -> trimesh.Trimesh:
        if preprocess_image:
            image = self.preprocess_image(image)
        mesh = self.preprocess_mesh(mesh)
        # get_cond / encode_shape_slat / sample_tex_slat / decode_tex_slat (stubbed): the picture's object colour
        colour = _object_colour(image)
        return self.postprocess_mesh(mesh, colour, resolution, texture_size)

    def postprocess_mesh(
        self, mesh: trimesh.Trimesh, colour: tuple[int, int, int], resolution: int, texture_size: int
    ) -> trimesh.Trimesh:
        vertices, faces, normals = mesh.vertices, mesh.faces, _vertex_normals(mesh)  # upstream: mesh.vertex_normals
        # preprocess_mesh dropped the UVs, so upstream always unwraps (CuMesh.uv_unwrap, return_vmaps=True)
        vertices, faces, uvs, vmap = _unwrap_per_face(np.asarray(vertices), np.asarray(faces))
        normals = np.asarray(normals)[vmap]
        size = (texture_size, texture_size)
        base_color = Image.new("RGBA", size, (*colour, 255))  # base colour + alpha, alpha inpainted to opaque
        roughness, metallic = round(ROUGHNESS * 255), round(METALLIC * 255)
        metallic_roughness = Image.new("RGB", size, (0, roughness, metallic))
        material = trimesh.visual.material.PBRMaterial(
            baseColorTexture=base_color,
            baseColorFactor=np.array([255, 255, 255, 255], dtype=np.uint8),
            metallicRoughnessTexture=metallic_roughness,
            metallicFactor=1.0,
            roughnessFactor=1.0,
            alphaMode="OPAQUE",
            doubleSided=True,
        )
        # Swap Y and Z axes, invert Y (upstream's own statement, numpy semantics included)
        vertices[:, 1], vertices[:, 2] = vertices[:, 2], -vertices[:, 1]
        normals[:, 1], normals[:, 2] = normals[:, 2], -normals[:, 1]
        uvs[:, 1] = 1 - uvs[:, 1]
        return trimesh.Trimesh(
            vertices=vertices,
            faces=faces,
            vertex_normals=normals,
            process=False,
            visual=trimesh.visual.TextureVisuals(uv=uvs, material=material),
        )


def _unwrap_per_face(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Stands in for CuMesh's unwrap: every face its own triangle in a grid of cells (v down, as CuMesh's UVs are
    before the pipeline flips them); (vertices, faces, uvs, vmap) with the vertices split per face."""
    count = len(faces)
    cells = max(1, math.ceil(math.sqrt(count)))
    index = np.arange(count)
    origin = np.column_stack([index % cells, index // cells]).astype(np.float64)
    corners = np.array([[0.1, 0.1], [0.9, 0.1], [0.1, 0.9]])
    uvs = ((origin[:, None, :] + corners[None, :, :]) / cells).reshape(-1, 2)
    vmap = faces.reshape(-1)
    return vertices[vmap].copy(), np.arange(3 * count).reshape(-1, 3), uvs, vmap


def _vertex_normals(mesh: trimesh.Trimesh) -> np.ndarray:
    """trimesh's ``vertex_normals`` without scipy (this venv has none): area-weighted face normals, summed."""
    corners = np.asarray(mesh.vertices)[np.asarray(mesh.faces)]
    weighted = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    normals = np.zeros((len(mesh.vertices), 3))
    for corner in range(3):
        np.add.at(normals, np.asarray(mesh.faces)[:, corner], weighted)
    length = np.linalg.norm(normals, axis=1, keepdims=True)
    return normals / np.where(length > 0, length, 1.0)


def _object_colour(image: Image.Image) -> tuple[int, int, int]:
    """Mean colour of the preprocessed picture's object (premultiplied onto black: the non-black pixels)."""
    rgb = np.asarray(image.convert("RGB")).reshape(-1, 3)
    found = rgb[rgb.max(axis=1) > 8]
    mean = (found if len(found) else rgb).mean(axis=0)
    return (int(mean[0]), int(mean[1]), int(mean[2]))


pipeline = TexturingPipeline()


def start_session(req: gr.Request) -> None:  # app_texturing.py: start_session
    (TMP_DIR / str(req.session_hash)).mkdir(parents=True, exist_ok=True)
    FAULTS.log("start_session")


def end_session(req: gr.Request) -> None:  # app_texturing.py: end_session
    shutil.rmtree(TMP_DIR / str(req.session_hash))


def preprocess_image(image: Image.Image) -> Image.Image:  # app_texturing.py: preprocess_image
    FAULTS.log("preprocess_image", size=list(image.size), mode=image.mode)
    return pipeline.preprocess_image(image)


def get_seed(randomize_seed: bool, seed: int) -> int:  # app_texturing.py: get_seed
    return int(np.random.randint(0, MAX_SEED)) if randomize_seed else seed


def shapeimage_to_tex(  # app_texturing.py: shapeimage_to_tex, same parameters and order (annotated -> str)
    mesh_file: str,
    image: Image.Image,
    seed: int,
    resolution: str,
    texture_size: int,
    tex_slat_guidance_strength: float,
    tex_slat_guidance_rescale: float,
    tex_slat_sampling_steps: int,
    tex_slat_rescale_t: float,
    req: gr.Request,
    progress: gr.Progress = gr.Progress(track_tqdm=True),  # noqa: B008 (upstream's signature)
) -> str:
    sent = {name: value for name, value in locals().items() if name not in ("mesh_file", "image", "req", "progress")}
    FAULTS.log("shapeimage_to_tex", mesh_suffix=Path(mesh_file).suffix, image_size=list(image.size), **sent)
    if FAULTS.now() == "error":
        raise RuntimeError("CUDA out of memory (stand-in fault)")
    if FAULTS.now() == "slow":
        time.sleep(60)
    mesh = trimesh.load(mesh_file)
    if isinstance(mesh, trimesh.Scene):
        mesh = mesh.to_mesh()
    output = pipeline.run(
        mesh,
        image,
        seed=seed,
        preprocess_image=False,
        tex_slat_sampler_params={
            "steps": tex_slat_sampling_steps,
            "guidance_strength": tex_slat_guidance_strength,
            "guidance_rescale": tex_slat_guidance_rescale,
            "rescale_t": tex_slat_rescale_t,
        },
        resolution=int(resolution),
        texture_size=int(texture_size),
    )
    now = datetime.now()
    timestamp = now.strftime("%Y-%m-%dT%H%M%S") + f".{now.microsecond // 1000:03d}"
    user_dir = TMP_DIR / str(req.session_hash)
    user_dir.mkdir(parents=True, exist_ok=True)
    glb_path = user_dir / f"sample_{timestamp}.glb"
    if FAULTS.now() == "garbage":
        glb_path.write_bytes(b"<html>502 Bad Gateway</html>")
    else:
        output.export(str(glb_path), extension_webp=True)
    return str(glb_path), str(glb_path)  # type: ignore[return-value]


def build() -> gr.Blocks:
    """app_texturing.py's ``with gr.Blocks(...) as demo`` block, component for component, in the same order."""
    with gr.Blocks(delete_cache=(600, 600)) as demo:
        gr.Markdown("## Texturing a mesh with TRELLIS.2 (stand-in: model stubbed)")
        with gr.Row():
            with gr.Column(scale=1, min_width=360):
                mesh_file = gr.File(
                    label="Upload Mesh", file_types=[".ply", ".obj", ".glb", ".gltf"], file_count="single"
                )
                image_prompt = gr.Image(label="Image Prompt", format="png", image_mode="RGBA", type="pil", height=400)
                resolution = gr.Radio(["512", "1024", "1536"], label="Resolution", value="1024")
                seed = gr.Slider(0, MAX_SEED, label="Seed", value=0, step=1)
                randomize_seed = gr.Checkbox(label="Randomize Seed", value=True)
                texture_size = gr.Slider(1024, 4096, label="Texture Size", value=2048, step=1024)
                generate_btn = gr.Button("Generate")
                with gr.Accordion(label="Advanced Settings", open=False), gr.Row():
                    tex_guidance = gr.Slider(1.0, 10.0, label="Guidance Strength", value=1.0, step=0.1)
                    tex_rescale = gr.Slider(0.0, 1.0, label="Guidance Rescale", value=0.0, step=0.01)
                    tex_steps = gr.Slider(1, 50, label="Sampling Steps", value=12, step=1)
                    tex_rescale_t = gr.Slider(1.0, 6.0, label="Rescale T", value=3.0, step=0.1)
            with gr.Column(scale=10):
                glb_output = gr.Model3D(
                    label="Extracted GLB",
                    height=724,
                    show_label=True,
                    display_mode="solid",
                    clear_color=(0.25, 0.25, 0.25, 1.0),
                )
                download_btn = gr.DownloadButton(label="Download GLB")

        demo.load(start_session)
        demo.unload(end_session)
        image_prompt.upload(preprocess_image, inputs=[image_prompt], outputs=[image_prompt])
        generate_btn.click(get_seed, inputs=[randomize_seed, seed], outputs=[seed]).then(
            shapeimage_to_tex,
            inputs=[
                mesh_file,
                image_prompt,
                seed,
                resolution,
                texture_size,
                tex_guidance,
                tex_rescale,
                tex_steps,
                tex_rescale_t,
            ],
            outputs=[glb_output, download_btn],
        )
    return demo


def main() -> None:
    global FAULTS
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True, help="Port to listen on (127.0.0.1).")
    parser.add_argument("--fault", choices=["", "garbage", "error", "slow"], default="", help="Misbehave.")
    parser.add_argument("--fault-file", type=Path, default=None, help="A file whose content overrides --fault.")
    parser.add_argument("--calls-log", type=Path, default=None, help="Where to log each call's parameters (JSONL).")
    args = parser.parse_args()
    FAULTS = Faults(args.fault, args.fault_file, args.calls_log)
    os.chdir(TMP_DIR)
    build().launch(server_name="127.0.0.1", server_port=args.port, quiet=True)  # app_texturing.py: demo.launch()


if __name__ == "__main__":
    main()
