"""Texturing benchmark: the texture stage's geometry, step by step, without the Kontext call.

A 50k-face UV sphere (its own UVs: the whole texture is chart, the most texels there can be) at 8 views × 512² and a
2048² texture: load → UV check → UV raster → G-buffers → neutral renders → [edit skipped: the neutral renders are
projected as if edited] → back-projection → fill + gutter padding → GLB (post-processing + validation). And, apart,
the xatlas unwrap the same mesh would need without UVs. Target: projection + fill ≤ 10 s on 2 cores.

Run: ``python -m bench.texture [--runs N] [--faces F] [--views V] [--view-size S] [--texture-size T]``;
``--tiny`` runs a small case once (the form the tests run).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import trimesh
from alch3mist.mesh.gbuffer import MeshArrays
from alch3mist.mesh.validate import validate_glb, validator_available
from alch3mist.stages.texture import write_textured_glb
from alch3mist.texturing.fill import fill_unseen, texture_from_texels
from alch3mist.texturing.mesh_input import LoadedMesh, MeshLimits, load_mesh
from alch3mist.texturing.pbr import DEFAULT_FACTORS
from alch3mist.texturing.projection import EditedView, back_project
from alch3mist.texturing.uv import rasterise_uv, unwrap, uv_problem
from alch3mist.texturing.views import render_views, texturing_views
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.backend.texturing.meshes import uv_sphere  # the same UV sphere the projection tests use

PROJECTION_STEPS = ("UV raster", "back-projection", "fill + padding")
TARGET_S = 10.0


def sphere_glb(faces: int, path: Path) -> int:
    """A UV sphere of about ``faces`` triangles with its equirectangular UVs, written as a GLB."""
    rows = max(4, round((faces / 4) ** 0.5))
    arrays = uv_sphere(rows=rows, columns=2 * rows)
    mesh = trimesh.Trimesh(arrays.vertices, arrays.faces, visual=trimesh.visual.TextureVisuals(uv=arrays.uv))
    mesh.export(path)
    return len(arrays.faces)


CPU_SECONDS: list[float] = []  # CPU time of the last timed step (this process + its children), median over runs


def timed(runs: int, work: Callable[[], Any]) -> tuple[list[float], Any]:
    """Wall seconds of each run, and the last result; CPU seconds go to ``CPU_SECONDS`` (shared-machine proof)."""
    seconds, cpu, result = [], [], None
    for _ in range(runs):
        started, cpu_started = time.perf_counter(), _cpu()
        result = work()
        seconds.append(time.perf_counter() - started)
        cpu.append(_cpu() - cpu_started)
    CPU_SECONDS[:] = [statistics.median(cpu)]
    return seconds, result


def _cpu() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3, help="Timed runs per step.")
    parser.add_argument("--faces", type=int, default=50_000, help="Faces of the test mesh.")
    parser.add_argument("--views", type=int, default=8, help="Views projected.")
    parser.add_argument("--view-size", type=int, default=512, help="Side of each view in pixels.")
    parser.add_argument("--texture-size", type=int, default=2048, help="Side of the texture in pixels.")
    parser.add_argument("--no-unwrap", action="store_true", help="Skip the (slow) xatlas row.")
    parser.add_argument("--tiny", action="store_true", help="A small case, once (what the tests run).")
    args = parser.parse_args(argv)
    if args.tiny:
        args.runs, args.faces, args.views, args.view_size, args.texture_size = 1, 2000, 4, 128, 256

    medians: dict[str, float] = {}

    def row(name: str, seconds: list[float], note: str = "") -> None:
        medians[name] = statistics.median(seconds)
        cells = f"{medians[name]:.2f} | {min(seconds):.2f} | {max(seconds):.2f} | {CPU_SECONDS[0]:.2f}"
        print(f"| {name} | {cells} | {note} |", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        glb = out / "sphere.glb"
        faces = sphere_glb(args.faces, glb)
        print(
            f"{faces:,} faces, {args.views} views × {args.view_size}², texture {args.texture_size}², "
            f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"
        )
        print("| step | median s | min s | max s | CPU s | notes |")
        print("|---|---:|---:|---:|---:|---|")
        limits = MeshLimits(max_bytes=1 << 30, max_faces=10_000_000)
        seconds, loaded = timed(args.runs, lambda: load_mesh(glb, limits=limits))
        row("load + check + normalise", seconds, f"{loaded.source_faces:,} faces")
        arrays = MeshArrays.from_trimesh(loaded.mesh)
        seconds, problem = timed(args.runs, lambda: uv_problem(arrays))
        row("UV check (keep the mesh's UVs?)", seconds, problem or "kept")
        seconds, texels = timed(args.runs, lambda: rasterise_uv(arrays, args.texture_size))
        row("UV raster", seconds, f"{len(texels):,} texels")
        views = texturing_views(args.views)
        seconds, rendered = timed(args.runs, lambda: render_views(arrays, views, args.view_size))
        row("G-buffers + neutral renders (VTK child)", seconds, "child start, VTK import, rasterise, exact buffers")
        edited = [
            EditedView(view.gbuffer, np.asarray(view.neutral.image, dtype=np.float32) / 255.0) for view in rendered
        ]
        seconds, projection = timed(args.runs, lambda: back_project(texels, edited))
        row("back-projection", seconds, f"coverage {projection.coverage:.3f}")
        seconds, texture = timed(
            args.runs,
            lambda: texture_from_texels(texels, fill_unseen(texels, projection.colours, projection.seen)),
        )
        row("fill + padding", seconds, f"{int((~projection.seen).sum()):,} texels filled")
        seconds, _ = timed(args.runs, lambda: _write_glb(loaded, Image.fromarray(texture), out))
        row("GLB: post-processing + validation", seconds, "validated" if validator_available() else "no validator")
        total = sum(medians[step] for step in PROJECTION_STEPS)
        verdict = "met" if total <= TARGET_S else "NOT met"
        print(f"\nprojection + fill ({', '.join(PROJECTION_STEPS)}): {total:.2f} s (≤ {TARGET_S:.0f} s: {verdict})")
        medians["projection + fill"] = total
        if not args.no_unwrap:
            bare = trimesh.Trimesh(loaded.mesh.vertices, loaded.mesh.faces, process=True)
            seconds, unwrapped = timed(1, lambda: unwrap(bare, args.texture_size))
            row("xatlas unwrap (a mesh without UVs; own process)", seconds, f"{len(unwrapped.vertices):,} vertices")
    return medians


def _write_glb(loaded: LoadedMesh, texture: Image.Image, out: Path) -> None:
    write_textured_glb(loaded.mesh, texture, DEFAULT_FACTORS, loaded, out / "model.glb", out / "texture.png")
    if validator_available():
        validate_glb(out / "model.glb")


if __name__ == "__main__":
    main()
