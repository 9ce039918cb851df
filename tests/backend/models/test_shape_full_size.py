"""The real Hunyuan3D-2 shape config of bench/gpu_shape.py, on the meta device, and that benchmark's CPU form."""

from __future__ import annotations

import json
from pathlib import Path

from alch3mist.engines.hunyuan3d_local import RESIDENT_MIN_FREE, GiB

from bench import gpu_shape


def test_the_real_config_builds_with_hy3dgen_and_has_the_published_sizes() -> None:
    sizes = gpu_shape.model_sizes()
    assert 1050 < sizes["model"]["params_m"] < 1150  # "Hunyuan3D-DiT-v2-0: 1.1B"
    assert 1100 < sizes["conditioner"]["params_m"] < 1200  # DINOv2-giant
    weights = sum(part["fp16_gib"] for part in sizes.values())
    assert weights < RESIDENT_MIN_FREE / GiB - 4  # the resident plan leaves room for decoding
    assert max(part["fp16_gib"] for part in sizes.values()) < 2.5  # one model at a time fits a small card


def test_the_gpu_benchmark_runs_on_the_cpu_with_the_tiny_model(tmp_path: Path) -> None:
    out = tmp_path / "shape.json"
    cache = Path(__file__).resolve().parents[3] / ".cache" / "alch3mist-tests"
    argv = ["--tiny", "--octrees", "32", "--chunks", "8000", "--cache-dir", str(cache), "--out", str(out)]
    gpu_shape.main(argv)
    results = json.loads(out.read_text())
    rows = results["decoding"]
    assert [(row["octree"], row["chunks"], row["chunk_calls"], row["points"]) for row in rows] == [(32, 8000, 5, 35937)]
    assert all(row["peak_mib"] >= 0 and row["faces"] > 100 and row["memory"] == "RSS high-water mark" for row in rows)
    assert results["pipeline"]["model"] == "tiny" and results["pipeline"]["faces"] > 100
