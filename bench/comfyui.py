"""ComfyUI backend benchmark (CPU): what our ComfyUI path adds per stage, against the stand-in server.

Per call: build the workflow, (edit: upload the input PNG,) ``POST /prompt``, follow ``/ws`` through every sampler
step, read ``/history``, fetch the image with ``/view`` and decode it — at the full preset's sizes (1024², 28 steps).
The stand-in's own work (resizing to Kontext's size, PNG encoding) is included, so this is an upper bound of the
overhead; on a real server the GPU time comes on top.

Run: ``python -m bench.comfyui [--runs N]``. It starts its own stand-in (``tests/servers/comfyui_server.py``).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="Timed calls per stage.")
    parser.add_argument("--steps", type=int, default=28, help="Sampler steps (one progress message each).")
    args = parser.parse_args(argv)

    from alch3mist.config import Settings
    from alch3mist.models.registry import load_models
    from alch3mist.stages.base_image import BaseImageStage
    from alch3mist.stages.material_edit import MaterialEditStage
    from alch3mist.stages.progress import StageControl

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "ComfyUI"
        process, url = _start_standin(root, Path(tmp) / "comfyui.log")
        try:
            settings = Settings(_env_file=None, comfyui_url=url, data_dir=Path(tmp) / "data")  # type: ignore[call-arg]
            models = load_models(settings)
            base_s, edit_s = [], []
            for seed in range(args.runs):
                started = time.perf_counter()
                image = BaseImageStage(models).run(
                    "a cow", seed=seed, steps=args.steps, guidance=3.5, size=1024, control=StageControl()
                )
                base_s.append(time.perf_counter() - started)
                started = time.perf_counter()
                MaterialEditStage(models).run(
                    image, "Alch3mist copper", seed=seed, steps=args.steps, guidance=2.5, lora="alch3mist",
                    lora_scale=1.0, control=StageControl(),
                )  # fmt: skip
                edit_s.append(time.perf_counter() - started)
        finally:
            process.terminate()
            process.wait(timeout=10)
    print(f"| stage (1024², {args.steps} steps, {args.runs} runs) | median s | max s |")
    print("| --- | --- | --- |")
    for label, values in (("base image (prompt → ws → history → view)", base_s), ("material edit (+ upload)", edit_s)):
        print(f"| {label} | {statistics.median(values):.2f} | {max(values):.2f} |")


def _start_standin(root: Path, log_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    from alch3mist.comfyui.workflows import ModelFiles

    files = ModelFiles.defaults()
    for folder, names in {**files.required(), "loras": ["alch3mist.safetensors"]}.items():
        for name in names:
            (root / "models" / folder).mkdir(parents=True, exist_ok=True)
            (root / "models" / folder / name).write_bytes(b"placeholder")
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    command = [
        sys.executable,
        str(REPO / "tests" / "servers" / "comfyui_server.py"),
        "--port",
        str(port),
        "--root",
        str(root),
    ]
    with log_path.open("w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(f"{url}/system_stats", timeout=2).status_code == 200:
                return process, url
        except httpx.TransportError:
            time.sleep(0.1)
    process.terminate()
    raise RuntimeError(f"the ComfyUI stand-in did not start:\n{log_path.read_text()[-2000:]}")


if __name__ == "__main__":
    main()
