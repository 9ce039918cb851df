"""3D-engine benchmark on the CPU: the preview engine on a 1024² image, the whole image-to-3D stage around it
(post-processing + glTF validation), simplify → xatlas unwrap → bake, and GLB bytes before/after meshopt compression.

Run: ``python -m bench.mesh [--runs N] [--size 1024]``. Needs ``scripts/setup-engine-test-servers.sh`` for the
validator and gltfpack rows (they are reported as "not installed" otherwise).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from alch3mist.engines.base import EngineParams
from alch3mist.engines.preview import PreviewEngine
from alch3mist.mesh.compress import compress_glb, compressor_available
from alch3mist.mesh.postprocess import PostprocessOptions, postprocess_glb
from alch3mist.mesh.validate import validate_glb, validator_available
from alch3mist.stages.image_to_3d import ImageTo3DStage
from alch3mist.stages.progress import StageControl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.backend.engines.servers import object_image  # the same synthetic object the tests use


def timed(runs: int, work: Callable[[], object]) -> tuple[float, float, float]:
    """(median, min, max) seconds of ``runs`` calls after one warm-up call."""
    work()
    seconds = []
    for _ in range(runs):
        started = time.perf_counter()
        work()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds), min(seconds), max(seconds)


def row(name: str, stats: tuple[float, float, float], note: str = "") -> None:
    print(f"| {name} | {stats[0]:.2f} | {stats[1]:.2f} | {stats[2]:.2f} | {note} |", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3, help="Timed runs per row (after one warm-up run).")
    parser.add_argument("--size", type=int, default=1024, help="Side of the square input image.")
    args = parser.parse_args(argv)
    image = object_image(args.size)
    engine, params, control = PreviewEngine(), EngineParams(), StageControl()

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        raw = out / "raw.glb"
        print(f"| step ({args.size}² input) | median s | min s | max s | notes |")
        print("|---|---:|---:|---:|---|")
        result = engine.generate(image, params, raw, control)
        faces = result.details["faces"]
        row(
            "preview engine generate",
            timed(args.runs, lambda: engine.generate(image, params, raw, control)),
            f"{faces} faces, {raw.stat().st_size / 1e6:.2f} MB GLB",
        )
        normal = out / "normal.glb"
        row(
            "post-process (normalise, no simplify)",
            timed(args.runs, lambda: postprocess_glb(raw, normal, out / "t.png", PostprocessOptions())),
        )
        simple = out / "simple.glb"
        options = PostprocessOptions(target_faces=10_000)
        report = postprocess_glb(raw, simple, out / "baked.png", options)
        row(
            "post-process simplify 10k → xatlas → bake 1024²",
            timed(args.runs, lambda: postprocess_glb(raw, simple, out / "baked.png", options)),
            f"{report.faces} faces, unwrapped={report.unwrapped}",
        )
        if validator_available():
            row("glTF validation (node gltf-validator)", timed(args.runs, lambda: validate_glb(normal)))
            stage = ImageTo3DStage({"preview": engine}, require_validator=True)
            row(
                "whole stage (check, preview, post-process, validate)",
                timed(
                    args.runs,
                    lambda: stage.run(image, engine="preview", params=params, out_dir=out / "stage", control=control),
                ),
            )
        else:
            print("| glTF validation | – | – | – | gltf-validator not installed |")
        print()
        print("| GLB | bytes | meshopt (gltfpack -cc) bytes | ratio |")
        print("|---|---:|---:|---:|")
        for name, path in (("preview, normalised", normal), ("simplified 10k + baked", simple)):
            if compressor_available():
                packed = compress_glb(path, out / f"{path.stem}.meshopt.glb")
                print(f"| {name} | {packed.bytes_before} | {packed.bytes_after} | {packed.ratio:.2f} |")
            else:
                print(f"| {name} | {path.stat().st_size} | gltfpack not installed | – |")


if __name__ == "__main__":
    main()
