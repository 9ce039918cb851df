"""Run every CPU benchmark in turn: ``python -m bench`` (``make bench``). Each prints its own table."""

from __future__ import annotations

import importlib
import sys

# (module, arguments): the GPU-sized benchmarks run here in their CPU --tiny form
BENCHMARKS: list[tuple[str, list[str]]] = [
    ("bench.chain", []),
    ("bench.api", []),
    ("bench.event_log", []),
    ("bench.comfyui", []),
    ("bench.mesh", []),
    ("bench.render", []),
    ("bench.texture", []),
    ("bench.multiview_dataset", []),
    ("bench.viewer", []),
    ("bench.train", ["--tiny"]),
    ("bench.gpu_flux", ["--tiny"]),
    ("bench.gpu_shape", ["--tiny"]),
    ("bench.rewriter", []),
]


def main() -> int:
    failed = []
    for name, args in BENCHMARKS:
        print(f"\n=== {name} ===", flush=True)
        try:
            importlib.import_module(name).main(args)
        except Exception as exc:  # noqa: BLE001 — one broken benchmark must not hide the others' numbers
            print(f"{name} failed: {exc!r}", flush=True)
            failed.append(name)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
