"""A stand-in for Open WebUI's chat around our viewer page, driven in the real Debian Chromium through Playwright.

* a "backend" HTTP server (CORS on everything) serves the URL-mode viewer page, the GLB, the poster and the bundle;
* a "chat" HTTP server on another port serves the host page, which embeds the viewer in an iframe sandboxed exactly
  as Open WebUI does (``allow-scripts allow-downloads allow-popups``, no ``allow-same-origin``): ``srcdoc`` for the
  self-contained page, ``src=http://127.0.0.1:<backend port>/viewer.html`` for URL mode; like Open WebUI, it resizes
  the iframe from the page's ``iframe:height`` messages;
* every request the browser makes (from any frame or worker) is recorded; requests to any host other than
  127.0.0.1 are answered with an abort so nothing leaves the machine, and the test asserts there were none.

Used by tests/model_viewer/test_viewer_browser.py and bench/viewer.py.
"""

from __future__ import annotations

import html
import io
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

import numpy as np
import trimesh
from alch3mist.viewer.page import bundle_path, render_inline_page, render_url_page
from PIL import Image, ImageDraw
from playwright.sync_api import Browser, Frame, Page, Playwright, Request, Route

logger = logging.getLogger(__name__)

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
SANDBOX = "allow-scripts allow-downloads allow-popups"  # Open WebUI 0.12.4's embed iframe
LOCAL_HOSTS = {"127.0.0.1"}
TITLE = 'Vaca <img src=x onerror="window.pwned=1"> & "cocodrilo"'
CAPTION = "Alch3mist crocodile skin </p><script>window.pwned=2</script>"
DOWNLOAD_NAME = "vaca cocodrilo.glb"
LOADED_OR_FAILED = "window.alch3mistViewer && (alch3mistViewer.loaded || !!alch3mistViewer.error)"


# ---------------------------------------------------------------------------------------------------------------------
# Fixture content
# ---------------------------------------------------------------------------------------------------------------------


def make_glb(path: Path) -> bytes:
    """A small textured box (trimesh PBR GLB, PNG texture): saturated red at the front, blue at the back."""
    pixels = np.zeros((64, 64, 3), np.uint8)
    pixels[:32] = (225, 30, 30)
    pixels[32:] = (30, 50, 225)
    box = trimesh.creation.box(extents=(1.0, 0.8, 0.6))
    uv = np.where(box.vertices[:, 2:3] > 0, [[0.5, 0.75]], [[0.5, 0.25]])
    material = trimesh.visual.material.PBRMaterial(
        baseColorTexture=Image.fromarray(pixels), metallicFactor=0.0, roughnessFactor=0.6
    )
    box.visual = trimesh.visual.TextureVisuals(uv=uv, material=material)
    box.export(path)
    return path.read_bytes()


def make_poster() -> bytes:
    """A grey poster with no colour in it: colourful pixels in a screenshot can only come from the rendered model."""
    image = Image.new("RGB", (256, 256), (200, 200, 200))
    ImageDraw.Draw(image).rectangle((64, 64, 192, 192), fill=(120, 120, 120))
    encoded = io.BytesIO()
    image.save(encoded, format="PNG")
    return encoded.getvalue()


# ---------------------------------------------------------------------------------------------------------------------
# HTTP servers
# ---------------------------------------------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    routes: ClassVar[dict[str, tuple[str, bytes]]] = {}

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path not in self.routes:
            self.send_error(404)
            return
        content_type, body = self.routes[path]
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Access-Control-Allow-Origin", "*")  # the sandboxed viewer's origin is opaque ("null")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("http: " + format, *args)


@contextmanager
def serve(routes: dict[str, tuple[str, bytes]]) -> Iterator[str]:
    """Serve ``{path: (content type, body)}`` on 127.0.0.1 at a free port; yields the base URL."""
    handler = type("Handler", (_Handler,), {"routes": routes})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def host_page(iframe_attrs: str) -> bytes:
    """Open WebUI's embed, reduced: a sandboxed iframe resized from the embedded page's height messages."""
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>chat</title></head>
<body style="margin:0;width:720px;background:#fff">
<iframe id="embed" sandbox="{SANDBOX}" style="width:100%;height:140px;border:0" {iframe_attrs}></iframe>
<script>
  window.heights = [];
  window.addEventListener("message", function (event) {{
    var frame = document.getElementById("embed");
    if (event.source === frame.contentWindow && event.data && event.data.type === "iframe:height") {{
      window.heights.push(event.data.height);
      frame.style.height = event.data.height + "px";
    }}
  }});
</script></body></html>""".encode()


# ---------------------------------------------------------------------------------------------------------------------
# A browser session on one mode
# ---------------------------------------------------------------------------------------------------------------------


@dataclass
class ViewerRun:
    mode: str
    page: Page
    frame: Frame = field(init=False)
    requests: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    seconds_to_load: float = 0.0
    page_bytes: int = 0

    def external_requests(self) -> list[str]:
        return [
            url
            for url in self.requests
            if urlsplit(url).scheme in ("http", "https", "ws", "wss") and urlsplit(url).hostname not in LOCAL_HOSTS
        ]


def launch(playwright: Playwright) -> Browser:
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)


@contextmanager
def open_viewer(browser: Browser, mode: str, glb: bytes, poster: bytes, timeout_s: float = 90.0) -> Iterator[ViewerRun]:
    """Open the viewer in ``mode`` ('inline' or 'url') inside the sandboxed iframe and wait for model-viewer's load."""
    bundle = bundle_path().read_bytes()
    backend_routes: dict[str, tuple[str, bytes]] = {
        "/model.glb": ("model/gltf-binary", glb),
        "/poster.png": ("image/png", poster),
        "/model-viewer-umd.min.js": ("text/javascript", bundle),
    }
    chat_routes: dict[str, tuple[str, bytes]] = {}
    with serve(backend_routes) as backend, serve(chat_routes) as chat:
        if mode == "inline":
            page_html = render_inline_page(
                title=TITLE, glb_bytes=glb, poster_png=poster, download_name=DOWNLOAD_NAME, caption=CAPTION
            )
            attrs = f'srcdoc="{html.escape(page_html, quote=True)}"'
        else:
            page_html = render_url_page(
                title=TITLE,
                glb_url=f"{backend}/model.glb",
                poster_url=f"{backend}/poster.png",
                bundle_url=f"{backend}/model-viewer-umd.min.js",
                download_name=DOWNLOAD_NAME,
                caption=CAPTION,
            )
            backend_routes["/viewer.html"] = ("text/html; charset=utf-8", page_html.encode())
            attrs = f'src="{backend}/viewer.html"'
        chat_routes["/host.html"] = ("text/html; charset=utf-8", host_page(attrs))

        with _in_chat(browser, mode, chat, len(page_html.encode()), timeout_s) as run:
            yield run


@contextmanager
def open_embed_url(browser: Browser, url: str, timeout_s: float = 90.0) -> Iterator[ViewerRun]:
    """A chat message whose embed is ``url`` (a real backend's viewer link), opened and waited for like the others."""
    chat_routes: dict[str, tuple[str, bytes]] = {}
    with serve(chat_routes) as chat:
        attrs = f'src="{html.escape(url, quote=True)}"'
        chat_routes["/host.html"] = ("text/html; charset=utf-8", host_page(attrs))
        with _in_chat(browser, "url", chat, 0, timeout_s) as run:
            yield run


@contextmanager
def _in_chat(browser: Browser, mode: str, chat: str, page_bytes: int, timeout_s: float) -> Iterator[ViewerRun]:
    """Open the chat's host page in a fresh browser context (every request recorded, none leaving 127.0.0.1) and
    wait for model-viewer's load (or error) inside the embed."""
    context = browser.new_context(viewport={"width": 720, "height": 600}, accept_downloads=True)
    run = ViewerRun(mode=mode, page=context.new_page(), page_bytes=page_bytes)

    def on_request(request: Request) -> None:
        run.requests.append(request.url)

    def guard(route: Route) -> None:
        if urlsplit(route.request.url).hostname in LOCAL_HOSTS:
            route.continue_()
        else:
            run.blocked.append(route.request.url)
            route.abort()

    context.on("request", on_request)
    context.route("**/*", guard)
    try:
        started = time.perf_counter()
        run.page.goto(f"{chat}/host.html")
        run.frame = _embedded_frame(run.page)
        wait_until(run.frame, LOADED_OR_FAILED, timeout_s)
        run.seconds_to_load = time.perf_counter() - started
        yield run
    finally:
        context.close()


def _embedded_frame(page: Page) -> Frame:
    handle = page.wait_for_selector("iframe#embed")
    assert handle is not None
    for _ in range(200):
        frame = handle.content_frame()
        if frame is not None:
            return frame
        time.sleep(0.05)
    raise AssertionError("the embedded viewer frame never appeared")


def wait_until(frame: Frame, expression: str, timeout_s: float) -> None:
    """Poll ``expression`` in ``frame`` until it is truthy. (Playwright's ``wait_for_function`` compiles its predicate
    with eval, which the viewer's Content-Security-Policy rightly forbids; ``evaluate`` goes through DevTools.)"""
    deadline = time.monotonic() + timeout_s
    while not frame.evaluate(f"() => Boolean({expression})"):
        if time.monotonic() > deadline:
            raise TimeoutError(f"not true after {timeout_s:.0f} s: {expression}")
        time.sleep(0.1)


def canvas_stats(png: bytes) -> tuple[float, int]:
    """(pixel standard deviation, number of strongly coloured pixels) of a screenshot."""
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(float)
    saturation = pixels.max(axis=2) - pixels.min(axis=2)
    return float(pixels.std()), int((saturation > 80).sum())
