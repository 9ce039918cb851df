"""Offline prompt rewriter: cold start per language (a fresh process: imports, Lingua, WordNet, the dictionaries,
simplemma's lemma table) and per-request time once loaded, over the public request table.

Run: ``python -m bench.rewriter [--runs N]``. Needs the Debian dictionaries and WordNet
(``scripts/install-system-deps.sh``).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TABLE = ROOT / "tests" / "backend" / "prompting" / "offline_requests.tsv"
COLD = {
    "en": "a teapot made of blue porcelain",
    "es": "una vaca con piel de cocodrilo y con una melena en llamas",
    "de": "ein Teddybär aus geschmolzenem Gold",
    "it": "un gatto di legno",
    "pl": "koń ze złota",
}
_ONE_REQUEST = (
    "import sys, time; t = time.perf_counter(); "
    "from alch3mist.prompting.offline import rewrite_offline; rewrite_offline(sys.argv[1]); "
    "print(time.perf_counter() - t)"
)


def cold_start(request: str) -> float:
    """Seconds from the import to the first prompt, in a fresh interpreter."""
    output = subprocess.run([sys.executable, "-c", _ONE_REQUEST, request], capture_output=True, text=True, check=True)
    return float(output.stdout.strip().splitlines()[-1])


def warm_requests(runs: int) -> list[float]:
    from alch3mist.prompting.offline import offline_rewriter

    requests = [line.split("\t")[1] for line in TABLE.read_text(encoding="utf-8").splitlines() if line[:1].isalpha()]
    rewriter = offline_rewriter()
    for request in requests:  # load every language's resources first
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
    parser.add_argument("--runs", type=int, default=3, help="passes over the request table for the warm timing")
    args = parser.parse_args(argv)
    print("| language | cold start s (first request in a fresh process) |\n|---|---|")
    for language, request in COLD.items():
        print(f"| {language} | {cold_start(request):.2f} |", flush=True)
    seconds = warm_requests(args.runs)
    print(
        f"\nwarm, {len(seconds)} requests: median {statistics.median(seconds) * 1000:.1f} ms, "
        f"p90 {statistics.quantiles(seconds, n=10)[-1] * 1000:.1f} ms, max {max(seconds) * 1000:.1f} ms"
    )


if __name__ == "__main__":
    main()
