"""Multiview benchmark: ``MultiviewStage.run`` (8 views at 512², contact sheet included) on textured GLBs of
10k / 50k / 200k faces. Target: ≤ 5 s at 50k faces on a 2-core CPU (Mesa llvmpipe through EGL).

The time is end to end as the chain sees it: the renderer's child process start, VTK import, GLB import, IBL
prefiltering, every view, the PNGs and the contact sheet. Run: ``python -m bench.render [--runs N] [--faces ...]``.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import trimesh
from alch3mist.stages.multiview import MultiviewStage
from alch3mist.stages.progress import StageControl
from PIL import Image

DEFAULT_FACES = (10_000, 50_000, 200_000)


def textured_sphere(faces: int, path: Path, texture_size: int = 1024) -> int:
    """A UV sphere of about ``faces`` triangles with a 1024² checker texture (as our engines write), as a GLB."""
    rows = max(4, round(np.sqrt(faces / 8)))  # uv_sphere(count=[r, 2r]) has about 8r² faces
    mesh = trimesh.creation.uv_sphere(count=[rows, 2 * rows])
    direction = mesh.vertices / np.linalg.norm(mesh.vertices, axis=1, keepdims=True)
    uv = np.stack([(np.arctan2(direction[:, 0], direction[:, 2]) / (2 * np.pi)) % 1.0, direction[:, 1] * 0.5 + 0.5], 1)
    grid = (np.indices((texture_size, texture_size)) // (texture_size // 16)).sum(axis=0) % 2
    pixels = np.stack([40 + 180 * grid, 90 + 60 * grid, 200 - 120 * grid], axis=-1).astype(np.uint8)
    material = trimesh.visual.material.PBRMaterial(
        baseColorTexture=Image.fromarray(pixels), metallicFactor=0.0, roughnessFactor=0.7
    )
    mesh.visual = trimesh.visual.TextureVisuals(uv=uv, material=material)
    mesh.export(path)
    return len(mesh.faces)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3, help="Timed runs per mesh (after one warm-up run).")
    parser.add_argument("--faces", type=int, nargs="+", default=list(DEFAULT_FACES), help="Face counts to measure.")
    parser.add_argument("--views", type=int, default=8, help="Views per run.")
    parser.add_argument("--size", type=int, default=512, help="View size in pixels.")
    args = parser.parse_args(argv)

    stage = MultiviewStage()
    print(f"| faces | GLB MB | {args.views}×{args.size}² median s | min s | max s | renderer CPU s | load avg |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for target in args.faces:
            glb = Path(tmp) / f"sphere_{target}.glb"
            faces = textured_sphere(target, glb)
            stage.run(glb, views=args.views, size=args.size, out_dir=Path(tmp) / "warmup", control=StageControl())
            times, cpu = [], []
            for run in range(args.runs):
                started, cpu_before = time.perf_counter(), _children_cpu()
                out_dir = Path(tmp) / f"{target}_{run}"
                stage.run(glb, views=args.views, size=args.size, out_dir=out_dir, control=StageControl())
                times.append(time.perf_counter() - started)
                cpu.append(_children_cpu() - cpu_before)
            median = statistics.median(times)
            print(
                f"| {faces:,} | {glb.stat().st_size / 1e6:.1f} | {median:.2f} | {min(times):.2f} | {max(times):.2f} "
                f"| {statistics.median(cpu):.2f} | {os.getloadavg()[0]:.1f} |",
                flush=True,
            )


def _children_cpu() -> float:
    """CPU seconds (user + system) of the renderer child processes so far: the contention-free cost."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


if __name__ == "__main__":
    main()
