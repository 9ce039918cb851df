"""A stand-in for microsoft/TRELLIS.2 ``app.py`` on Gradio 6.0.1 (what its setup.sh pins), model stubbed.

    .cache/trellis2-standin-venv/bin/python tests/servers/trellis2_app.py --port 7860 [--fault F] [--fault-file P]

Everything a client sees is upstream's: the component tree in the same order (the ``gr.Examples(fn=preprocess_image,
run_on_click=True)`` event takes the name ``preprocess_image`` and is undocumented, so the upload handler is
``/preprocess_image_1``), the same signatures, slider ranges and defaults (Gradio 6 *rejects* out-of-range values:
steps 1–50, guidance 1–10), ``resolution`` "512"/"1024"/"1536", ``extract_glb(decimation_target 100k–1M, texture_size
1024–4096)``, the API description at ``/gradio_api/info``. Like upstream, ``image_to_3d`` keeps its result only in the
session's ``gr.State`` and ``extract_glb`` creates the session folder itself. Only the model is stubbed
(``standin_common``). Upstream file: microsoft/TRELLIS.2 ``app.py`` (commit 5565d24); line numbers are from it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
from PIL import Image
from standin_common import Faults, example_images, sample_stub, textured_sphere_glb, trellis2_preprocess

MAX_SEED = np.iinfo(np.int32).max  # app.py:21
TMP_DIR = Path(tempfile.mkdtemp(prefix="trellis2-standin-"))  # app.py:22
FAULTS = Faults()
EMPTY_HTML = '<div class="previewer-container"></div>'  # app.py: empty_html


def start_session(req: gr.Request) -> None:  # app.py: start_session
    (TMP_DIR / str(req.session_hash)).mkdir(parents=True, exist_ok=True)
    FAULTS.log("start_session")


def end_session(req: gr.Request) -> None:
    shutil.rmtree(TMP_DIR / str(req.session_hash))


def preprocess_image(image: Image.Image) -> Image.Image:  # → Trellis2ImageTo3DPipeline.preprocess_image
    FAULTS.log("preprocess_image", size=list(image.size), mode=image.mode)
    return trellis2_preprocess(image)


def get_seed(randomize_seed: bool, seed: int) -> int:
    return int(np.random.randint(0, MAX_SEED)) if randomize_seed else seed


def image_to_3d(  # app.py: image_to_3d, same parameters and order (its annotation says -> str; it returns two)
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
    progress: gr.Progress = gr.Progress(track_tqdm=True),  # noqa: B008 (upstream's signature)
) -> str:
    sent = {name: value for name, value in locals().items() if name not in ("image", "req", "progress")}
    FAULTS.log("image_to_3d", image_size=list(image.size), **sent)
    if FAULTS.now() == "error":
        raise RuntimeError("CUDA out of memory (stand-in fault)")
    if FAULTS.now() == "slow":
        time.sleep(60)
    pipeline_type = {"512": "512", "1024": "1024_cascade", "1536": "1536_cascade"}[resolution]  # KeyError like app
    state = {**sample_stub(image, seed), "res": pipeline_type}
    return state, f'<div class="previewer-container">{pipeline_type}</div>'  # type: ignore[return-value]


def extract_glb(  # app.py: extract_glb
    state: dict[str, Any],
    decimation_target: int,
    texture_size: int,
    req: gr.Request,
    progress: gr.Progress = gr.Progress(track_tqdm=True),  # noqa: B008
) -> tuple[str, str]:
    FAULTS.log("extract_glb", decimation_target=decimation_target, texture_size=texture_size)
    user_dir = TMP_DIR / str(req.session_hash)
    user_dir.mkdir(parents=True, exist_ok=True)  # upstream creates it here (os.makedirs(user_dir, exist_ok=True))
    now = datetime.now()
    glb_path = user_dir / f"sample_{now.strftime('%Y-%m-%dT%H%M%S')}.{now.microsecond // 1000:03d}.glb"
    fault = FAULTS.now()
    if fault == "garbage":
        glb_path.write_bytes(b"<html>502 Bad Gateway</html>")
    elif fault == "empty":
        glb_path.write_bytes(b"")
    else:
        glb_path.write_bytes(textured_sphere_glb(state, int(texture_size), webp=True))  # export(extension_webp=True)
    return str(glb_path), str(glb_path)


def build() -> gr.Blocks:
    """app.py's ``with gr.Blocks(...) as demo`` block, component for component, in the same order."""
    with gr.Blocks(delete_cache=(600, 600)) as demo:
        gr.Markdown("## Image to 3D Asset with TRELLIS.2 (stand-in: model stubbed)")
        with gr.Row():
            with gr.Column(scale=1, min_width=360):
                image_prompt = gr.Image(label="Image Prompt", format="png", image_mode="RGBA", type="pil", height=400)
                resolution = gr.Radio(["512", "1024", "1536"], label="Resolution", value="1024")
                seed = gr.Slider(0, MAX_SEED, label="Seed", value=0, step=1)
                randomize_seed = gr.Checkbox(label="Randomize Seed", value=True)
                decimation_target = gr.Slider(100000, 1000000, label="Decimation Target", value=500000, step=10000)
                texture_size = gr.Slider(1024, 4096, label="Texture Size", value=2048, step=1024)
                generate_btn = gr.Button("Generate")
                with gr.Accordion(label="Advanced Settings", open=False):
                    gr.Markdown("Stage 1: Sparse Structure Generation")
                    with gr.Row():
                        ss_guidance_strength = gr.Slider(1.0, 10.0, label="Guidance Strength", value=7.5, step=0.1)
                        ss_guidance_rescale = gr.Slider(0.0, 1.0, label="Guidance Rescale", value=0.7, step=0.01)
                        ss_sampling_steps = gr.Slider(1, 50, label="Sampling Steps", value=12, step=1)
                        ss_rescale_t = gr.Slider(1.0, 6.0, label="Rescale T", value=5.0, step=0.1)
                    gr.Markdown("Stage 2: Shape Generation")
                    with gr.Row():
                        shape_guidance = gr.Slider(1.0, 10.0, label="Guidance Strength", value=7.5, step=0.1)
                        shape_rescale = gr.Slider(0.0, 1.0, label="Guidance Rescale", value=0.5, step=0.01)
                        shape_steps = gr.Slider(1, 50, label="Sampling Steps", value=12, step=1)
                        shape_rescale_t = gr.Slider(1.0, 6.0, label="Rescale T", value=3.0, step=0.1)
                    gr.Markdown("Stage 3: Material Generation")
                    with gr.Row():
                        tex_guidance = gr.Slider(1.0, 10.0, label="Guidance Strength", value=1.0, step=0.1)
                        tex_rescale = gr.Slider(0.0, 1.0, label="Guidance Rescale", value=0.0, step=0.01)
                        tex_steps = gr.Slider(1, 50, label="Sampling Steps", value=12, step=1)
                        tex_rescale_t = gr.Slider(1.0, 6.0, label="Rescale T", value=3.0, step=0.1)
            with gr.Column(scale=10):  # noqa: SIM117 (upstream's layout, kept as it is)
                with gr.Walkthrough(selected=0) as walkthrough:
                    with gr.Step("Preview", id=0):
                        preview_output = gr.HTML(EMPTY_HTML, label="3D Asset Preview", show_label=True, container=True)
                        extract_btn = gr.Button("Extract GLB")
                    with gr.Step("Extract", id=1):
                        glb_output = gr.Model3D(
                            label="Extracted GLB",
                            height=724,
                            show_label=True,
                            display_mode="solid",
                            clear_color=(0.25, 0.25, 0.25, 1.0),
                        )
                        download_btn = gr.DownloadButton(label="Download GLB")
            with gr.Column(scale=1, min_width=172):
                gr.Examples(  # before the upload handler: takes the name preprocess_image
                    examples=example_images(TMP_DIR / "example_image"),
                    inputs=[image_prompt],
                    fn=preprocess_image,
                    outputs=[image_prompt],
                    run_on_click=True,
                    examples_per_page=18,
                )
        output_buf = gr.State()

        demo.load(start_session)
        demo.unload(end_session)
        image_prompt.upload(preprocess_image, inputs=[image_prompt], outputs=[image_prompt])  # → /preprocess_image_1
        generate_btn.click(get_seed, inputs=[randomize_seed, seed], outputs=[seed]).then(
            lambda: gr.Walkthrough(selected=0), outputs=walkthrough
        ).then(
            image_to_3d,
            inputs=[
                image_prompt,
                seed,
                resolution,
                ss_guidance_strength,
                ss_guidance_rescale,
                ss_sampling_steps,
                ss_rescale_t,
                shape_guidance,
                shape_rescale,
                shape_steps,
                shape_rescale_t,
                tex_guidance,
                tex_rescale,
                tex_steps,
                tex_rescale_t,
            ],
            outputs=[output_buf, preview_output],
        )
        extract_btn.click(lambda: gr.Walkthrough(selected=1), outputs=walkthrough).then(
            extract_glb, inputs=[output_buf, decimation_target, texture_size], outputs=[glb_output, download_btn]
        )
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
    # app.py: demo.launch(css=css, head=head) — Gradio 6 takes css/head at launch; show_error stays off like upstream
    build().launch(server_name="127.0.0.1", server_port=args.port, quiet=True)


if __name__ == "__main__":
    main()
