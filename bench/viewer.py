"""Viewer benchmark: time-to-load of the viewer page in headless Debian Chromium, self-contained vs URL mode.

Measured as Open WebUI shows it: the chat's host page embeds the viewer in an iframe sandboxed like Open WebUI's
(tests/model_viewer/harness.py); the clock runs from navigating the host page to model-viewer's ``load`` event.
Chromium runs with --disable-gpu, so WebGL is SwiftShader on the CPU: most of the time is shader compilation there;
a browser with a GPU loads the same page far faster. Run: ``python -m bench.viewer [--runs N]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

from tests.model_viewer.harness import launch, make_glb, make_poster, open_viewer

MODES = ("inline", "url")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=2, help="Timed page loads per mode (one browser, fresh contexts).")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as playwright:
        glb, poster = make_glb(Path(tmp) / "box.glb"), make_poster()
        browser = launch(playwright)
        with open_viewer(browser, "url", glb, poster):  # warm-up: first WebGL context of the browser
            pass
        print(f"GLB {len(glb):,} bytes, poster {len(poster):,} bytes")
        print("| mode | page bytes | requests by the viewer | median s to load | min s | max s | load avg |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for mode in MODES:
            seconds, page_bytes, requests = [], 0, 0
            for _ in range(args.runs):
                with open_viewer(browser, mode, glb, poster) as run:
                    assert run.frame.evaluate("window.alch3mistViewer.loaded"), f"{mode}: the model did not load"
                    assert run.external_requests() == [], run.requests
                    seconds.append(run.seconds_to_load)
                    page_bytes, requests = run.page_bytes, len(run.requests) - 1  # minus the host page itself
            print(
                f"| {mode} | {page_bytes:,} | {requests} | {statistics.median(seconds):.2f} | {min(seconds):.2f} "
                f"| {max(seconds):.2f} | {os.getloadavg()[0]:.1f} |",
                flush=True,
            )
        browser.close()


if __name__ == "__main__":
    main()
