"""Chain benchmark (CPU, tiny preset): time per stage and the orchestration overhead.

overhead = end-to-end seconds ÷ seconds spent inside the model / engine / renderer calls (target ≤ 1.05).
Run: ``python -m bench.chain [--runs N]``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from alch3mist.chain import GenerationRequest, build_chain
from alch3mist.config import Settings

REQUEST = "Material Alch3mist, a cow with crocodile skin and a mane on fire"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3, help="Timed runs after one warm-up run.")
    parser.add_argument("--views", type=int, default=8, help="Multiview renders per run.")
    parser.add_argument("--cache-dir", type=Path, default=Path(".cache/alch3mist-tests"), help="Tiny models cache.")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(preset="tiny", cache_dir=args.cache_dir, data_dir=Path(tmp), engine_3d="preview")
        started = time.perf_counter()
        chain = build_chain(settings)
        load_s = time.perf_counter() - started
        request = GenerationRequest(request=REQUEST, seed=7, views=args.views)
        chain.run(request, Path(tmp) / "warmup")
        runs = []
        for index in range(args.runs):
            wall = time.perf_counter()
            manifest = chain.run(request, Path(tmp) / f"run{index}")
            wall = time.perf_counter() - wall
            assert manifest.status == "succeeded", manifest.error
            runs.append((wall, manifest))

    print(
        f"chain benchmark — tiny preset, preview engine, {args.views} views, {args.runs} runs "
        f"(model load {load_s:.2f} s)"
    )
    stages = list(runs[0][1].timings_s)
    print(f"{'stage':<15}{'median s':>10}")
    for stage in stages:
        print(f"{stage:<15}{statistics.median(m.timings_s[stage] for _, m in runs):>10.3f}")
    wall = statistics.median(w for w, _ in runs)
    model = statistics.median(m.model_seconds for _, m in runs)
    print(f"{'end-to-end':<15}{wall:>10.3f}")
    print(f"{'model calls':<15}{model:>10.3f}")
    print(f"overhead = end-to-end / model calls = {wall / model:.3f}  (target ≤ 1.05)")


if __name__ == "__main__":
    main()
