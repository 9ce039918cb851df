"""The viewer page in the real Debian Chromium, inside an iframe sandboxed exactly as Open WebUI does, in both modes.

Proves: model-viewer's ``load`` event fires, the canvas shows the model (colour only the model has), the page reports
its height and the host resizes the iframe, title and caption are escaped, the download button hands out the GLB,
and no request leaves 127.0.0.1. Screenshots are kept in test-artifacts/model_viewer/.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from alch3mist.mesh.compress import compress_glb, compressor_available
from playwright.sync_api import Browser, sync_playwright

from .harness import (
    CAPTION,
    CHROMIUM,
    DOWNLOAD_NAME,
    SANDBOX,
    TITLE,
    ViewerRun,
    canvas_stats,
    launch,
    make_glb,
    make_poster,
    open_viewer,
    wait_until,
)

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "model_viewer"
VIEWER_HEIGHT_PX = 380


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if shutil.which(CHROMIUM) is None:
        pytest.fail(f"{CHROMIUM} is missing: run scripts/install-system-deps.sh (Debian package 'chromium')")
    with sync_playwright() as playwright:
        browser = launch(playwright)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def glb(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return make_glb(tmp_path_factory.mktemp("viewer") / "box.glb")


@pytest.fixture(scope="module", params=["inline", "url"])
def run(request: pytest.FixtureRequest, browser: Browser, glb: bytes) -> Iterator[ViewerRun]:
    """The viewer opened once per mode (loading takes seconds on SwiftShader); the tests below share it."""
    with open_viewer(browser, request.param, glb, make_poster()) as opened:
        yield opened


def test_model_viewer_load_event_fires(run: ViewerRun) -> None:
    state = run.frame.evaluate("window.alch3mistViewer")
    assert state["error"] is None and state["loaded"], state
    _record(run)


def test_canvas_shows_the_model(run: ViewerRun) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    wait_until(run.frame, "document.getElementById('viewer').modelIsVisible === true", 30)
    time.sleep(0.5)  # a few frames of auto-rotation after the poster is dismissed
    shot = run.page.locator("iframe#embed").screenshot(path=str(ARTIFACTS / f"{run.mode}.png"))
    spread, coloured = canvas_stats(shot)
    assert spread > 10, "the viewer looks blank"
    assert coloured > 2000, f"no model colours on screen ({coloured} saturated pixels; the poster is grey)"


def test_height_report_resizes_the_iframe(run: ViewerRun) -> None:
    """Open WebUI sizes embeds from ``iframe:height`` messages; without them the iframe stays ~140 px and clips."""
    heights = run.page.evaluate("window.heights")
    assert heights and max(heights) >= VIEWER_HEIGHT_PX
    box = run.page.locator("iframe#embed").bounding_box()
    assert box is not None and box["height"] >= VIEWER_HEIGHT_PX


def test_sandbox_is_open_webuis(run: ViewerRun) -> None:
    assert run.page.get_attribute("iframe#embed", "sandbox") == SANDBOX
    assert run.frame.evaluate("window.origin") == "null"  # opaque origin: no allow-same-origin


def test_title_and_caption_are_escaped_text(run: ViewerRun) -> None:
    assert run.frame.inner_text(".title") == TITLE
    assert run.frame.inner_text(".caption") == CAPTION
    assert run.frame.evaluate("window.pwned === undefined")
    assert run.frame.evaluate("document.querySelectorAll('.card img, .card script').length") == 0


def test_download_button_hands_out_the_glb(run: ViewerRun, glb: bytes, tmp_path: Path) -> None:
    with run.page.expect_download(timeout=30_000) as download_info:
        run.frame.click("#download")
    download = download_info.value
    assert download.suggested_filename == DOWNLOAD_NAME.replace(" ", "_")
    download.save_as(tmp_path / "downloaded.glb")
    assert (tmp_path / "downloaded.glb").read_bytes() == glb


def test_decoders_point_nowhere_near_a_cdn(run: ViewerRun) -> None:
    """What model-viewer actually uses (its static getters), not what the page meant to set."""
    locations = run.frame.evaluate(
        """() => { const mv = customElements.get('model-viewer');
                   return [mv.dracoDecoderLocation, mv.ktx2TranscoderLocation, mv.meshoptDecoderLocation]; }"""
    )
    assert all(location.startswith("data:") for location in locations), locations


def test_no_request_leaves_localhost(run: ViewerRun) -> None:
    """Every request of every frame is recorded; any to another host is aborted by the harness and listed here."""
    assert run.blocked == [] and run.external_requests() == [], run.requests
    if run.mode == "inline":  # only the chat's host page itself: the viewer makes no request at all
        assert len(run.requests) == 1, run.requests


def test_meshopt_compressed_glb_loads_without_network(browser: Browser, glb: bytes, tmp_path: Path) -> None:
    """Post-processing may hand the viewer an EXT_meshopt_compression GLB (gltfpack -cc): the decoder compiled into
    the bundle must decode it (CSP allows WebAssembly, not eval), and no decoder is fetched from anywhere."""
    if not compressor_available():
        pytest.fail("gltfpack is missing: run scripts/setup-engine-test-servers.sh (it installs gltfpack from npm)")
    (tmp_path / "box.glb").write_bytes(glb)
    compress_glb(tmp_path / "box.glb", tmp_path / "box.meshopt.glb")
    compressed = (tmp_path / "box.meshopt.glb").read_bytes()
    assert b"EXT_meshopt_compression" in compressed
    with open_viewer(browser, "inline", compressed, make_poster()) as run:
        state = run.frame.evaluate("window.alch3mistViewer")
        assert state["loaded"] and state["error"] is None, state
        assert run.blocked == [] and len(run.requests) == 1, run.requests


def test_broken_glb_shows_an_error_instead_of_hanging(browser: Browser) -> None:
    """A GLB that model-viewer cannot parse: the error event is reported on the page (and no CDN is asked)."""
    broken = b"glTF" + b"\x02\x00\x00\x00" + b"\xff" * 64
    with open_viewer(browser, "inline", broken, make_poster()) as run:
        state = run.frame.evaluate("window.alch3mistViewer")
        assert state["loaded"] is False and state["error"]
        assert "could not be loaded" in run.frame.inner_text("#status")
        assert run.blocked == [] and run.external_requests() == []


def _record(run: ViewerRun) -> None:
    """Keep the measured time-to-load next to the screenshots (bench/viewer.py measures it properly)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / "timings.json"
    timings = json.loads(path.read_text()) if path.exists() else {}
    timings[run.mode] = {"seconds_to_load": round(run.seconds_to_load, 3), "page_bytes": run.page_bytes}
    path.write_text(json.dumps(timings, indent=2))
