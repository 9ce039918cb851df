"""A stand-in for the TRELLIS Gradio app: same endpoints, parameters, outputs and per-session state, no model.

Runs on Gradio 4.44.1 (what TRELLIS pins) in its own venv made by ``scripts/setup-engine-test-servers.sh``:

    .cache/trellis-standin-venv/bin/python tests/servers/trellis_app.py --port 7860 [--variant trellis2] [--fault F]

``--variant trellis`` mirrors microsoft/TRELLIS app.py (``/image_to_3d`` with ss_/slat_ parameters, ``/extract_glb``
with mesh_simplify and texture_size); ``trellis2`` mirrors TRELLIS.2 (resolution, three sampler stages,
decimation_target). Like the real app, the per-session folder is created by ``/start_session`` (``demo.load``) and
``/image_to_3d`` fails without it. The GLB is a small textured sphere made with trimesh, coloured by the input image.
Faults for error-path tests (``--fault``, or the content of ``--fault-file``, read on every call): ``garbage``
(extract_glb returns a non-GLB file), ``empty`` (an empty file), ``error`` (image_to_3d raises), ``slow``
(image_to_3d sleeps for a minute).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
import trimesh
from PIL import Image

MAX_SEED = np.iinfo(np.int32).max
TMP_DIR = Path(tempfile.mkdtemp(prefix="trellis-standin-"))
FAULT = ""
FAULT_FILE: Path | None = None
CALLS_LOG = TMP_DIR / "calls.jsonl"


def fault() -> str:
    """The fault to simulate now: the --fault-file's content when it exists (tests switch it per call), else --fault."""
    if FAULT_FILE is not None and FAULT_FILE.is_file():
        return FAULT_FILE.read_text().strip()
    return FAULT


def log_call(name: str, **values: Any) -> None:
    """Append each call's parameters to calls.jsonl (tests read it to check what the client sent)."""
    with CALLS_LOG.open("a") as handle:
        handle.write(json.dumps({"endpoint": name, **values}, default=str) + "\n")


def start_session(req: gr.Request) -> None:
    (TMP_DIR / str(req.session_hash)).mkdir(parents=True, exist_ok=True)
    log_call("start_session")


def end_session(req: gr.Request) -> None:
    shutil.rmtree(TMP_DIR / str(req.session_hash), ignore_errors=True)


def preprocess_image(image: Image.Image) -> Image.Image:
    """Like TRELLIS: an RGBA image of the object, cropped and resized to 518x518."""
    log_call("preprocess_image", size=list(image.size), mode=image.mode)
    return image.convert("RGBA").resize((518, 518))


def get_seed(randomize_seed: bool, seed: int) -> int:
    return int(np.random.randint(0, MAX_SEED)) if randomize_seed else seed


def session_dir(req: gr.Request) -> Path:
    folder = TMP_DIR / str(req.session_hash)
    if not folder.is_dir():  # the real app's os.path.join(TMP_DIR, session_hash) write fails the same way
        raise FileNotFoundError(f"no session folder {folder}: /start_session was not called")
    return folder


def sample(image: Image.Image, seed: int, req: gr.Request) -> tuple[dict[str, Any], str]:
    if fault() == "error":
        raise gr.Error("CUDA out of memory (stand-in fault)")
    if fault() == "slow":
        time.sleep(60)
    folder = session_dir(req)
    video = folder / "sample.mp4"
    video.write_bytes(b"\x00\x00\x00\x18ftypmp42")  # never played: API clients ignore the preview video
    colour = np.asarray(image.convert("RGB").resize((1, 1))).reshape(3).tolist()
    return {"seed": seed, "colour": colour, "texture": np.asarray(image.convert("RGB").resize((64, 64)))}, str(video)


def image_to_3d(
    image: Image.Image,
    multiimages: list[tuple[Image.Image, str]],
    is_multiimage: bool,
    seed: int,
    ss_guidance_strength: float,
    ss_sampling_steps: int,
    slat_guidance_strength: float,
    slat_sampling_steps: int,
    multiimage_algo: str,
    req: gr.Request,
) -> tuple[dict[str, Any], str]:
    log_call(
        "image_to_3d",
        seed=seed,
        ss_guidance_strength=ss_guidance_strength,
        ss_sampling_steps=ss_sampling_steps,
        slat_guidance_strength=slat_guidance_strength,
        slat_sampling_steps=slat_sampling_steps,
        multiimage_algo=multiimage_algo,
        image_size=list(image.size),
    )
    return sample(image, seed, req)


def image_to_3d_v2(
    image: Image.Image,
    seed: int,
    resolution: str,
    ss_guidance_strength: float,
    ss_guidance_rescale: float,
    ss_sampling_steps: int,
    ss_rescale_t: float,
    shape_slat_guidance_strength: float,
    shape_slat_guidance_rescale: float,
    shape_slat_sampling_steps: int,
    shape_slat_rescale_t: float,
    tex_slat_guidance_strength: float,
    tex_slat_guidance_rescale: float,
    tex_slat_sampling_steps: int,
    tex_slat_rescale_t: float,
    req: gr.Request,
) -> tuple[dict[str, Any], str]:
    log_call("image_to_3d", seed=seed, resolution=resolution, shape_slat_sampling_steps=shape_slat_sampling_steps)
    state, video = sample(image, seed, req)
    return state, f"<p>preview of {video}</p>"


def textured_sphere(state: dict[str, Any], texture_size: int) -> trimesh.Trimesh:
    sphere = trimesh.creation.uv_sphere(radius=0.5, count=[24, 24])
    direction = sphere.vertices / np.linalg.norm(sphere.vertices, axis=1, keepdims=True)
    uv = np.column_stack(
        [0.5 + np.arctan2(direction[:, 0], direction[:, 2]) / (2 * np.pi), 0.5 + np.arcsin(direction[:, 1]) / np.pi]
    )
    texture = Image.fromarray(np.asarray(state["texture"], dtype=np.uint8)).resize((texture_size // 8,) * 2)
    material = trimesh.visual.material.PBRMaterial(baseColorTexture=texture, metallicFactor=0.0, roughnessFactor=1.0)
    sphere.visual = trimesh.visual.TextureVisuals(uv=uv, material=material)
    # TRELLIS' to_glb output is z-up rotated into glTF's y-up; a node transform is left for the client to bake
    return sphere


def write_glb(state: dict[str, Any] | None, texture_size: int, req: gr.Request, webp: bool = False) -> str:
    if state is None:
        raise gr.Error("no 3D model in this session: run /image_to_3d first")
    path = session_dir(req) / "sample.glb"
    if fault() == "garbage":
        path.write_bytes(b"<html>502 Bad Gateway</html>")
    elif fault() == "empty":
        path.write_bytes(b"")
    else:
        scene = trimesh.Scene()
        scene.add_geometry(textured_sphere(state, texture_size), transform=trimesh.transformations.scale_matrix(3.0))
        path.write_bytes(scene.export(file_type="glb", extension_webp=webp))  # TRELLIS.2 exports WebP textures
    return str(path)


def extract_glb(state: dict[str, Any], mesh_simplify: float, texture_size: int, req: gr.Request) -> tuple[str, str]:
    log_call("extract_glb", mesh_simplify=mesh_simplify, texture_size=texture_size)
    path = write_glb(state, int(texture_size), req)
    return path, path


def extract_glb_v2(
    state: dict[str, Any], decimation_target: int, texture_size: int, req: gr.Request
) -> tuple[str, str]:
    log_call("extract_glb", decimation_target=decimation_target, texture_size=texture_size)
    path = write_glb(state, int(texture_size), req, webp=True)
    return path, path


def build_v1() -> gr.Blocks:
    with gr.Blocks(delete_cache=(600, 600)) as demo:
        image_prompt = gr.Image(label="Image Prompt", format="png", image_mode="RGBA", type="pil")
        multiimage_prompt = gr.Gallery(label="Image Prompt", format="png", type="pil")
        seed = gr.Slider(0, MAX_SEED, label="Seed", value=0, step=1)
        randomize_seed = gr.Checkbox(label="Randomize Seed", value=True)
        ss_guidance_strength = gr.Slider(0.0, 10.0, label="Guidance Strength", value=7.5, step=0.1)
        ss_sampling_steps = gr.Slider(1, 50, label="Sampling Steps", value=12, step=1)
        slat_guidance_strength = gr.Slider(0.0, 10.0, label="Guidance Strength", value=3.0, step=0.1)
        slat_sampling_steps = gr.Slider(1, 50, label="Sampling Steps", value=12, step=1)
        multiimage_algo = gr.Radio(["stochastic", "multidiffusion"], label="Multi-image Algorithm", value="stochastic")
        generate_btn = gr.Button("Generate")
        mesh_simplify = gr.Slider(0.9, 0.98, label="Simplify", value=0.95, step=0.01)
        texture_size = gr.Slider(512, 2048, label="Texture Size", value=1024, step=512)
        extract_glb_btn = gr.Button("Extract GLB")
        video_output = gr.Video(label="Generated 3D Asset", autoplay=True, loop=True)
        model_output = gr.Model3D(label="Extracted GLB")
        download_glb = gr.DownloadButton(label="Download GLB")
        is_multiimage = gr.State(False)
        output_buf = gr.State()

        demo.load(start_session)
        demo.unload(end_session)
        image_prompt.upload(preprocess_image, inputs=[image_prompt], outputs=[image_prompt])
        generate_btn.click(get_seed, inputs=[randomize_seed, seed], outputs=[seed]).then(
            image_to_3d,
            inputs=[
                image_prompt,
                multiimage_prompt,
                is_multiimage,
                seed,
                ss_guidance_strength,
                ss_sampling_steps,
                slat_guidance_strength,
                slat_sampling_steps,
                multiimage_algo,
            ],
            outputs=[output_buf, video_output],
        )
        extract_glb_btn.click(
            extract_glb, inputs=[output_buf, mesh_simplify, texture_size], outputs=[model_output, download_glb]
        )
    return demo


def build_v2() -> gr.Blocks:
    with gr.Blocks(delete_cache=(600, 600)) as demo:
        image_prompt = gr.Image(label="Image Prompt", format="png", image_mode="RGBA", type="pil")
        resolution = gr.Radio(["512", "1024", "1536"], label="Resolution", value="1024")
        seed = gr.Slider(0, MAX_SEED, label="Seed", value=0, step=1)
        randomize_seed = gr.Checkbox(label="Randomize Seed", value=True)
        decimation_target = gr.Slider(100000, 1000000, label="Decimation Target", value=500000, step=10000)
        texture_size = gr.Slider(1024, 4096, label="Texture Size", value=2048, step=1024)
        sliders = [
            gr.Slider(1.0, 10.0, value=7.5),
            gr.Slider(0.0, 1.0, value=0.7),
            gr.Slider(1, 50, value=12, step=1),
            gr.Slider(1.0, 6.0, value=5.0),
            gr.Slider(1.0, 10.0, value=7.5),
            gr.Slider(0.0, 1.0, value=0.5),
            gr.Slider(1, 50, value=12, step=1),
            gr.Slider(1.0, 6.0, value=3.0),
            gr.Slider(1.0, 10.0, value=1.0),
            gr.Slider(0.0, 1.0, value=0.0),
            gr.Slider(1, 50, value=12, step=1),
            gr.Slider(1.0, 6.0, value=3.0),
        ]
        generate_btn = gr.Button("Generate")
        preview_output = gr.HTML("", label="3D Asset Preview")
        extract_btn = gr.Button("Extract GLB")
        glb_output = gr.Model3D(label="Extracted GLB")
        download_btn = gr.DownloadButton(label="Download GLB")
        output_buf = gr.State()

        demo.load(start_session)
        demo.unload(end_session)
        image_prompt.upload(preprocess_image, inputs=[image_prompt], outputs=[image_prompt])
        generate_btn.click(get_seed, inputs=[randomize_seed, seed], outputs=[seed]).then(
            image_to_3d_v2,
            inputs=[image_prompt, seed, resolution, *sliders],
            outputs=[output_buf, preview_output],
            api_name="image_to_3d",  # TRELLIS.2's function is called image_to_3d
        )
        extract_btn.click(
            extract_glb_v2,
            inputs=[output_buf, decimation_target, texture_size],
            outputs=[glb_output, download_btn],
            api_name="extract_glb",
        )
    return demo


def main() -> None:
    global FAULT
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True, help="Port to listen on (127.0.0.1).")
    parser.add_argument("--variant", choices=["trellis", "trellis2"], default="trellis", help="Which app to mimic.")
    parser.add_argument("--fault", choices=["", "garbage", "empty", "error", "slow"], default="", help="Misbehave.")
    parser.add_argument("--fault-file", type=Path, default=None, help="A file whose content overrides --fault.")
    parser.add_argument("--calls-log", type=Path, default=None, help="Where to log each call's parameters (JSONL).")
    args = parser.parse_args()
    FAULT = args.fault
    globals()["FAULT_FILE"] = args.fault_file
    if args.calls_log is not None:
        globals()["CALLS_LOG"] = args.calls_log
    demo = build_v2() if args.variant == "trellis2" else build_v1()
    demo.queue().launch(server_name="127.0.0.1", server_port=args.port, show_error=True, quiet=True)


if __name__ == "__main__":
    main()
