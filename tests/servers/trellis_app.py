"""A stand-in for microsoft/TRELLIS ``app.py`` on Gradio 4.44.1 (what its setup.sh ``--demo`` pins), model stubbed.

    .cache/trellis-standin-venv/bin/python tests/servers/trellis_app.py --port 7860 [--fault F] [--fault-file P]

Everything a client sees is upstream's: the same component tree in the same order (so Gradio names the events the
same way: the ``gr.Examples(fn=preprocess_image, run_on_click=True)`` event is created first, takes the name
``preprocess_image`` and is hidden, and the upload handler is published as ``/preprocess_image_1``), the same
function signatures, defaults and slider ranges, the same per-session folder made by ``demo.load(start_session)``
(which API clients must call as ``/start_session``). Only the model is stubbed (``standin_common``). Upstream file:
microsoft/TRELLIS ``app.py`` (commit 6b0d647); line numbers below are from that file.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Literal

import gradio as gr
import numpy as np
from gradio_litmodel3d import LitModel3D  # app.py:2, pinned with gradio==4.44.1 by setup.sh --demo
from PIL import Image
from standin_common import (
    Faults,
    crop_to_object,
    example_images,
    has_alpha_mask,
    remove_background_stub,
    sample_stub,
    textured_sphere_glb,
)

MAX_SEED = np.iinfo(np.int32).max  # app.py:17
TMP_DIR = Path(tempfile.mkdtemp(prefix="trellis-standin-"))  # app.py:18 (the app's tmp/ folder)
FAULTS = Faults()


def start_session(req: gr.Request) -> None:  # app.py:22
    (TMP_DIR / str(req.session_hash)).mkdir(parents=True, exist_ok=True)
    FAULTS.log("start_session")


def end_session(req: gr.Request) -> None:  # app.py:27 (rmtree without ignore_errors, like upstream)
    shutil.rmtree(TMP_DIR / str(req.session_hash))


def preprocess_image(image: Image.Image) -> Image.Image:  # app.py:32 → TrellisImageTo3DPipeline.preprocess_image
    FAULTS.log("preprocess_image", size=list(image.size), mode=image.mode)
    output = image if has_alpha_mask(image) else remove_background_stub(image.convert("RGB"))
    return crop_to_object(output, margin=1.2, side=518)


def preprocess_images(images: list[tuple[Image.Image, str]]) -> list[Image.Image]:  # app.py:47
    return [preprocess_image(image[0]) for image in images]


def get_seed(randomize_seed: bool, seed: int) -> int:  # app.py:102
    return int(np.random.randint(0, MAX_SEED)) if randomize_seed else seed


def image_to_3d(  # app.py:109: same parameters, same order
    image: Image.Image,
    multiimages: list[tuple[Image.Image, str]],
    is_multiimage: bool,
    seed: int,
    ss_guidance_strength: float,
    ss_sampling_steps: int,
    slat_guidance_strength: float,
    slat_sampling_steps: int,
    multiimage_algo: Literal["multidiffusion", "stochastic"],
    req: gr.Request,
) -> tuple[dict[str, Any], str]:
    FAULTS.log(
        "image_to_3d",
        seed=seed,
        ss_guidance_strength=ss_guidance_strength,
        ss_sampling_steps=ss_sampling_steps,
        slat_guidance_strength=slat_guidance_strength,
        slat_sampling_steps=slat_sampling_steps,
        multiimage_algo=multiimage_algo,
        image_size=list(image.size),
    )
    if FAULTS.now() == "error":
        raise RuntimeError("CUDA out of memory (stand-in fault)")
    if FAULTS.now() == "slow":
        import time

        time.sleep(60)
    user_dir = TMP_DIR / str(req.session_hash)  # app.py:139; the video is written there (app.py:174)
    video_path = user_dir / "sample.mp4"
    video_path.write_bytes(b"\x00\x00\x00\x18ftypmp42")  # fails like upstream when /start_session never ran
    return sample_stub(image, seed), str(video_path)


def extract_glb(state: dict[str, Any], mesh_simplify: float, texture_size: int, req: gr.Request) -> tuple[str, str]:
    FAULTS.log("extract_glb", mesh_simplify=mesh_simplify, texture_size=texture_size)  # app.py:181
    glb_path = TMP_DIR / str(req.session_hash) / "sample.glb"
    fault = FAULTS.now()
    if fault == "garbage":
        glb_path.write_bytes(b"<html>502 Bad Gateway</html>")
    elif fault == "empty":
        glb_path.write_bytes(b"")
    else:
        glb_path.write_bytes(textured_sphere_glb(state, int(texture_size)))
    return str(glb_path), str(glb_path)


def extract_gaussian(state: dict[str, Any], req: gr.Request) -> tuple[str, str]:  # app.py:208
    path = TMP_DIR / str(req.session_hash) / "sample.ply"
    path.write_bytes(b"ply\nformat ascii 1.0\nelement vertex 0\nend_header\n")
    return str(path), str(path)


def prepare_multi_example() -> list[Image.Image]:  # app.py:226: three views side by side per example
    views = [Image.open(path).convert("RGBA") for path in example_images(TMP_DIR / "example_multi_image")]
    strip = Image.new("RGBA", (128 * len(views), 128))
    for index, view in enumerate(views):
        strip.paste(view, (128 * index, 0))
    return [strip]


def split_image(image: Image.Image) -> list[Image.Image]:  # app.py:241
    array = np.array(image)
    alpha = np.any(array[..., 3] > 0, axis=0)
    starts = np.where(~alpha[:-1] & alpha[1:])[0].tolist()
    ends = np.where(alpha[:-1] & ~alpha[1:])[0].tolist()
    return [preprocess_image(Image.fromarray(array[:, s : e + 1])) for s, e in zip(starts, ends, strict=False)]


def build() -> gr.Blocks:
    """app.py:256-401, component for component (LitModel3D included), in the same order."""
    with gr.Blocks(delete_cache=(600, 600)) as demo:
        gr.Markdown("## Image to 3D Asset with TRELLIS (stand-in: model stubbed)")
        with gr.Row():
            with gr.Column():
                with gr.Tabs():
                    with gr.Tab(label="Single Image", id=0) as single_image_input_tab:
                        image_prompt = gr.Image(
                            label="Image Prompt", format="png", image_mode="RGBA", type="pil", height=300
                        )
                    with gr.Tab(label="Multiple Images", id=1) as multiimage_input_tab:
                        multiimage_prompt = gr.Gallery(
                            label="Image Prompt", format="png", type="pil", height=300, columns=3
                        )
                        gr.Markdown("Input different views of the object in separate images.")
                with gr.Accordion(label="Generation Settings", open=False):
                    seed = gr.Slider(0, MAX_SEED, label="Seed", value=0, step=1)
                    randomize_seed = gr.Checkbox(label="Randomize Seed", value=True)
                    gr.Markdown("Stage 1: Sparse Structure Generation")
                    with gr.Row():
                        ss_guidance_strength = gr.Slider(0.0, 10.0, label="Guidance Strength", value=7.5, step=0.1)
                        ss_sampling_steps = gr.Slider(1, 50, label="Sampling Steps", value=12, step=1)
                    gr.Markdown("Stage 2: Structured Latent Generation")
                    with gr.Row():
                        slat_guidance_strength = gr.Slider(0.0, 10.0, label="Guidance Strength", value=3.0, step=0.1)
                        slat_sampling_steps = gr.Slider(1, 50, label="Sampling Steps", value=12, step=1)
                    multiimage_algo = gr.Radio(
                        ["stochastic", "multidiffusion"], label="Multi-image Algorithm", value="stochastic"
                    )
                generate_btn = gr.Button("Generate")
                with gr.Accordion(label="GLB Extraction Settings", open=False):
                    mesh_simplify = gr.Slider(0.9, 0.98, label="Simplify", value=0.95, step=0.01)
                    texture_size = gr.Slider(512, 2048, label="Texture Size", value=1024, step=512)
                with gr.Row():
                    extract_glb_btn = gr.Button("Extract GLB", interactive=False)
                    extract_gs_btn = gr.Button("Extract Gaussian", interactive=False)
                gr.Markdown("*NOTE: Gaussian file can be very large (~50MB).*")
            with gr.Column():
                video_output = gr.Video(label="Generated 3D Asset", autoplay=True, loop=True, height=300)
                model_output = LitModel3D(label="Extracted GLB/Gaussian", exposure=10.0, height=300)
                with gr.Row():
                    download_glb = gr.DownloadButton(label="Download GLB", interactive=False)
                    download_gs = gr.DownloadButton(label="Download Gaussian", interactive=False)

        is_multiimage = gr.State(False)
        output_buf = gr.State()

        # app.py:330-350: the Examples come before the handlers, so their events take the function names first
        with gr.Row() as single_image_example:
            gr.Examples(
                examples=example_images(TMP_DIR / "example_image"),
                inputs=[image_prompt],
                fn=preprocess_image,
                outputs=[image_prompt],
                run_on_click=True,
                examples_per_page=64,
            )
        with gr.Row(visible=False) as multiimage_example:
            gr.Examples(
                examples=prepare_multi_example(),
                inputs=[image_prompt],
                fn=split_image,
                outputs=[multiimage_prompt],
                run_on_click=True,
                examples_per_page=8,
            )

        demo.load(start_session)  # app.py:353
        demo.unload(end_session)
        single_image_input_tab.select(
            lambda: (False, gr.Row(visible=True), gr.Row(visible=False)),
            outputs=[is_multiimage, single_image_example, multiimage_example],
        )
        multiimage_input_tab.select(
            lambda: (True, gr.Row(visible=False), gr.Row(visible=True)),
            outputs=[is_multiimage, single_image_example, multiimage_example],
        )
        image_prompt.upload(preprocess_image, inputs=[image_prompt], outputs=[image_prompt])  # → /preprocess_image_1
        multiimage_prompt.upload(preprocess_images, inputs=[multiimage_prompt], outputs=[multiimage_prompt])
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
        ).then(
            lambda: (gr.Button(interactive=True), gr.Button(interactive=True)),
            outputs=[extract_glb_btn, extract_gs_btn],
        )
        video_output.clear(
            lambda: (gr.Button(interactive=False), gr.Button(interactive=False)),
            outputs=[extract_glb_btn, extract_gs_btn],
        )
        extract_glb_btn.click(
            extract_glb, inputs=[output_buf, mesh_simplify, texture_size], outputs=[model_output, download_glb]
        ).then(lambda: gr.Button(interactive=True), outputs=[download_glb])
        extract_gs_btn.click(extract_gaussian, inputs=[output_buf], outputs=[model_output, download_gs]).then(
            lambda: gr.Button(interactive=True), outputs=[download_gs]
        )
        model_output.clear(lambda: gr.Button(interactive=False), outputs=[download_glb])
    return demo


def main() -> None:
    global FAULTS
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True, help="Port to listen on (127.0.0.1).")
    parser.add_argument("--fault", choices=["", "garbage", "empty", "error", "slow"], default="", help="Misbehave.")
    parser.add_argument("--fault-file", type=Path, default=None, help="A file whose content overrides --fault.")
    parser.add_argument("--calls-log", type=Path, default=None, help="Where to log each call's parameters (JSONL).")
    args = parser.parse_args()
    FAULTS = Faults(args.fault, args.fault_file, args.calls_log)
    os.chdir(TMP_DIR)
    # app.py:404 calls demo.launch() without queue(): Gradio 4 queues every event by default
    build().launch(server_name="127.0.0.1", server_port=args.port, quiet=True)  # show_error off, like upstream


if __name__ == "__main__":
    main()
