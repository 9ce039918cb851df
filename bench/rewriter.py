"""Offline prompt rewriter: the first request of a fresh process, a service start (``warm()``), and per-request time
once loaded, over the public request tables.

Each cold start runs in a fresh interpreter and prints its wall time (import, then the first rewrite) and the
process's CPU time: on a shared machine the wall time is inflated by the other processes, the CPU time is close to
what an idle machine takes. The look-up indexes are built first when missing (``--build`` times that from an empty
cache folder).

Run: ``python -m bench.rewriter [--runs N] [--build]``. Needs the Debian dictionaries and WordNet
(``scripts/install-system-deps.sh``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TABLES = [ROOT / "tests" / "backend" / "prompting" / name for name in ("offline_requests.tsv",
                                                                      "offline_requests_heldout.tsv")]  # fmt: skip
COLD = {
    "en": "a teapot made of blue porcelain",
    "es": "Material Alch3mist, genérame una vaca con piel de cocodrilo y con una melena en llamas",
    "es or it (Lingua loads both)": "una vaca con piel de cocodrilo y con una melena en llamas",
    "de": "Alch3mist, ein Teddybär aus geschmolzenem Gold",
    "fr": "une théière en cuivre, s'il vous plaît",
    "it": "un gatto di legno",
    "pl": "złoty pierścień",
    "nl (no closed-class word)": "gouden kroon",
    "unknown (Swahili)": "Ng'ombe wa dhahabu",
}
_FIRST_REQUEST = """
import sys, time
started = time.perf_counter()
from alch3mist.prompting.offline import offline_rewriter
imported = time.perf_counter()
rewriter = offline_rewriter()
if sys.argv[2] == "warm":
    rewriter.warm()
warmed = time.perf_counter()
rewriter.rewrite(sys.argv[1])
done = time.perf_counter()
print(imported - started, warmed - imported, done - warmed, time.process_time())
"""
_BUILD = """
import sys, time
from pathlib import Path
from alch3mist.prompting.offline import OfflineRewriter
started = time.perf_counter()
missing = OfflineRewriter(cache_dir=Path(sys.argv[1])).warm()
print(time.perf_counter() - started, time.process_time(), len(missing))
"""


def fresh_process(request: str, mode: str) -> tuple[float, float, float, float]:
    """(import s, warm s, first rewrite s, process CPU s) in a fresh interpreter."""
    output = subprocess.run(
        [sys.executable, "-c", _FIRST_REQUEST, request, mode], capture_output=True, text=True, check=True
    )
    imported, warmed, first, cpu = (float(x) for x in output.stdout.split())
    return imported, warmed, first, cpu


def build_from_scratch() -> tuple[float, float, int]:
    """(wall s, CPU s, missing resources) to build every look-up index into an empty cache folder."""
    with tempfile.TemporaryDirectory() as folder:
        output = subprocess.run([sys.executable, "-c", _BUILD, folder], capture_output=True, text=True, check=True)
        wall, cpu, missing = output.stdout.split()
        return float(wall), float(cpu), int(missing)


def warm_requests(runs: int) -> list[float]:
    from alch3mist.prompting.offline import offline_rewriter

    requests = [line.split("\t")[1] for table in TABLES for line in table.read_text(encoding="utf-8").splitlines()
                if line[:1].isalpha()]  # fmt: skip
    rewriter = offline_rewriter()
    for request in requests:  # every language's resources opened first
        rewriter.rewrite(request)
    seconds = []
    for _ in range(runs):
        for request in requests:
            started = time.perf_counter()
            rewriter.rewrite(request)
            seconds.append(time.perf_counter() - started)
    return seconds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3, help="passes over the request tables for the warm timing")
    parser.add_argument("--build", action="store_true", help="also time building the indexes from an empty cache")
    args = parser.parse_args(argv)
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    if args.build:
        wall, cpu, missing = build_from_scratch()
        print(f"build every index from scratch: {wall:.1f} s wall, {cpu:.1f} s CPU ({missing} resources missing)")
    fresh_process(COLD["en"], "lazy")  # builds the default cache's indexes when missing (not measured)
    print("\n| request | import s | first rewrite s | process CPU s |\n|---|---|---|---|")
    for language, request in COLD.items():
        imported, _, first, cpu = fresh_process(request, "lazy")
        print(f"| {language} | {imported:.2f} | {first:.2f} | {cpu:.2f} |", flush=True)
    imported, warmed, first, cpu = fresh_process(COLD["es"], "warm")
    print(
        f"\nservice start: import {imported:.2f} s, warm() {warmed:.2f} s, then the first rewrite "
        f"{first * 1000:.1f} ms (process CPU {cpu:.2f} s)"
    )
    seconds = warm_requests(args.runs)
    print(
        f"\nonce loaded, {len(seconds)} requests: median {statistics.median(seconds) * 1000:.1f} ms, "
        f"p90 {statistics.quantiles(seconds, n=10)[-1] * 1000:.1f} ms, max {max(seconds) * 1000:.1f} ms"
    )
    print(f"load average at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
