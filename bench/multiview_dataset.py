"""Multiview dataset benchmark: seconds per mesh and meshes per hour of ``alch3mist dataset multiview``.

A textured UV sphere of about 50k faces (its own UVs, a checker texture, a GLB as our chain writes them) rendered as
Ortho10View — 10 orthographic views at 768², every modality: exact G-buffer (VTK face ids in a child process + ray
maths), lit colour render (VTK glTF importer in a child process), lossless WebP colour/normal/position, EXR depth,
meta.json — through the same ``render_scene`` the command runs. Then throughput: ``--meshes`` copies rendered by
``--workers`` processes, as ``--workers 2`` does.

Run: ``python -m bench.multiview_dataset [--runs N] [--faces F] [--size S] [--meshes M] [--workers W]``;
``--tiny`` runs a small case once (the form the tests run).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import trimesh
from alch3mist.training.multiview_dataset import MeshSource, RenderSettings, _render_all, render_scene
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.backend.texturing.meshes import checker_texture, uv_sphere  # the meshes the texturing tests use


def textured_sphere_glb(faces: int, path: Path) -> int:
    """A UV sphere of about ``faces`` triangles with a 1024² checker texture, written as a GLB."""
    rows = max(4, round((faces / 4) ** 0.5))
    arrays = uv_sphere(rows=rows, columns=2 * rows)
    material = trimesh.visual.material.PBRMaterial(baseColorTexture=Image.fromarray(checker_texture(1024)))
    mesh = trimesh.Trimesh(
        arrays.vertices,
        arrays.faces,
        vertex_normals=arrays.vertex_normals,
        visual=trimesh.visual.TextureVisuals(uv=arrays.uv, material=material),
        process=False,
    )
    path.write_bytes(trimesh.exchange.gltf.export_glb(trimesh.Scene(mesh)))
    return len(arrays.faces)


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="Timed renders of one mesh (median reported).")
    parser.add_argument("--faces", type=int, default=50_000, help="Faces of the test mesh (about).")
    parser.add_argument("--size", type=int, default=768, help="Image side in pixels.")
    parser.add_argument("--meshes", type=int, default=4, help="Meshes rendered for the throughput figure.")
    parser.add_argument("--workers", type=int, default=2, help="Worker processes for the throughput figure.")
    parser.add_argument("--tiny", action="store_true", help="One small run (2k faces, 64², 2 meshes): for tests.")
    args = parser.parse_args(argv)
    if args.tiny:
        args.runs, args.faces, args.size, args.meshes = 1, 2_000, 64, 2
    with tempfile.TemporaryDirectory(prefix="bench-multiview-") as tmp:
        folder = Path(tmp)
        faces = textured_sphere_glb(args.faces, folder / "sphere.glb")
        settings = RenderSettings(folder / "out", ("ortho10",), args.size, "gray", 0)
        # 1. One mesh at a time: wall and CPU seconds (this process + its VTK children)
        seconds, cpu = [], []
        for run in range(args.runs):
            started, cpu_started = time.perf_counter(), time.process_time() + children_cpu()
            outcome = render_scene(MeshSource(f"run{run:03d}", folder / "sphere.glb"), settings)
            if outcome.error is not None:
                raise RuntimeError(outcome.error)
            seconds.append(time.perf_counter() - started)
            cpu.append(time.process_time() + children_cpu() - cpu_started)
        # 2. Throughput: several meshes, several workers
        sources = [MeshSource(f"mesh{i:03d}", folder / "sphere.glb") for i in range(args.meshes)]
        started = time.perf_counter()
        outcomes = list(_render_all(sources, settings, args.workers))
        wall = time.perf_counter() - started
        errors = [o.error for o in outcomes if o.error is not None]
        if errors:
            raise RuntimeError(errors[0])
    result = {
        "faces": faces,
        "size": args.size,
        "views": 10,
        "seconds_per_mesh": statistics.median(seconds),
        "cpu_seconds_per_mesh": statistics.median(cpu),
        "workers": args.workers,
        "meshes": args.meshes,
        "meshes_per_hour": args.meshes / wall * 3600.0,
    }
    print(f"Ortho10View, {faces} faces, 10 views at {args.size}², all modalities ({args.runs} runs)")
    print(f"  seconds per mesh      median {result['seconds_per_mesh']:7.2f}  (all {np.round(seconds, 2).tolist()})")
    print(f"  CPU seconds per mesh  median {result['cpu_seconds_per_mesh']:7.2f}")
    print(f"  meshes per hour       {result['meshes_per_hour']:7.1f}  ({args.meshes} meshes, {args.workers} workers)")
    return result


if __name__ == "__main__":
    main()
