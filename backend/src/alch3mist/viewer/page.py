"""The 3D viewer page: Google's ``<model-viewer>`` (vendored from npm, see ``model_viewer/``) around one GLB.

Two modes, both loading nothing from any CDN:

* URL mode (:func:`render_url_page`): the backend serves the page; bundle, GLB and poster come from the backend over
  signed links with CORS. Small (~5 KB), so chats stay small.
* Self-contained mode (:func:`render_inline_page`): the bundle is inlined and the GLB and poster are data: URLs —
  zero network, for browsers that cannot reach the backend. About 1.1 MB + 1.33 × the GLB.

The page runs inside Open WebUI's sandboxed iframe (``allow-scripts allow-downloads allow-popups``, opaque origin): it
reports its height with ``postMessage({type: 'iframe:height'})`` and downloads the GLB through a blob: URL. Every
caller-supplied string is escaped by Jinja2's autoescape; URLs must be http(s) or relative.
"""

from __future__ import annotations

import base64
import io
import re
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup
from PIL import Image

from ..errors import MeshError

__all__ = ["bundle_path", "render_inline_page", "render_url_page"]

BUNDLE_NAME = "model-viewer-umd.min.js"
REPO_BUNDLE = Path(__file__).resolve().parents[4] / "model_viewer" / "vendor" / BUNDLE_NAME
VIEWER_HEIGHT_PX = 380
GLB_MAGIC = b"glTF"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
POSTER_MAX_PX = 768  # self-contained mode: larger posters are shrunk (and stored as JPEG)
POSTER_JPEG_QUALITY = 85

# model-viewer fetches its Draco and KTX2 decoders (and a Lottie loader) from gstatic.com / jsdelivr.net unless told
# otherwise. Our GLBs use neither (post-processing writes plain or meshopt-compressed GLBs), so those locations point
# at an empty data: URL: a foreign GLB that needs them fails with the viewer's error event, with no request made.
# The meshopt decoder is compiled into the bundle; setting its "location" makes model-viewer load that script and then
# use the bundled decoder, so an empty script enables meshopt-compressed GLBs with zero network.
DECODER_LOCATIONS = {
    "dracoDecoderLocation": "data:text/plain,",
    "ktx2TranscoderLocation": "data:text/plain,",
    "meshoptDecoderLocation": "data:text/javascript,",
    "lottieLoaderLocation": "data:text/javascript,",
}


def bundle_path(configured: Path | None = None) -> Path:
    """The model-viewer UMD bundle: ``configured`` (Settings.model_viewer_bundle), else the repository's copy."""
    path = configured or REPO_BUNDLE
    if not path.is_file():
        raise FileNotFoundError(
            f"model-viewer bundle not found at {path}: run model_viewer/vendor.sh or set ALCH3MIST_MODEL_VIEWER_BUNDLE"
        )
    return path


def render_url_page(
    *, title: str, glb_url: str, poster_url: str | None, bundle_url: str, download_name: str, caption: str = ""
) -> str:
    """The viewer page for the backend to serve: GLB, poster and bundle are fetched from the given (CORS) URLs."""
    for url in (glb_url, poster_url, bundle_url):
        _check_url(url)
    return _render(
        title=title,
        caption=caption,
        download_name=download_name,
        glb_src=glb_url,
        poster_src=poster_url,
        bundle_url=bundle_url,
        bundle_js=None,
        csp=_content_security_policy(glb_url, poster_url, bundle_url),
    )


def render_inline_page(
    *,
    title: str,
    glb_bytes: bytes,
    poster_png: bytes | None,
    download_name: str,
    caption: str = "",
    bundle: Path | None = None,
) -> str:
    """A self-contained viewer page: bundle inlined, GLB and poster as data: URLs — it makes no request at all."""
    if not glb_bytes.startswith(GLB_MAGIC):
        raise MeshError("the viewer needs a binary glTF (GLB) file")
    if poster_png is not None and not poster_png.startswith(PNG_MAGIC):
        raise ValueError("poster_png must be a PNG image")
    return _render(
        title=title,
        caption=caption,
        download_name=download_name,
        glb_src=_data_url("model/gltf-binary", glb_bytes),
        poster_src=_poster_data_url(poster_png) if poster_png is not None else None,
        bundle_url=None,
        bundle_js=_inline_bundle(bundle_path(bundle)),
        csp=_content_security_policy(),
    )


def _render(**values: object) -> str:
    values["download_name"] = _safe_filename(str(values["download_name"]))
    return (
        _environment()
        .get_template("viewer.html")
        .render(decoder_locations=DECODER_LOCATIONS, height=VIEWER_HEIGHT_PX, **values)
    )


@lru_cache(maxsize=1)
def _environment() -> Environment:
    return Environment(
        loader=PackageLoader("alch3mist.viewer", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=False,
    )


def _check_url(url: str | None) -> None:
    """Only http(s) and relative URLs: escaping does not make ``javascript:`` harmless in a src attribute."""
    if url is None:
        return
    scheme = urlsplit(url).scheme.lower()
    if scheme not in ("", "http", "https"):
        raise ValueError(f"viewer URLs must be http(s) or relative, got scheme {scheme!r}")


def _origin(url: str | None) -> str | None:
    if not url:
        return None
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme else "'self'"


def _content_security_policy(*urls: str | None) -> str:
    """Allow inline code and data:/blob: URLs, plus exactly the origins of ``urls``; everything else is blocked."""
    origins = " ".join(sorted({origin for origin in map(_origin, urls) if origin}))
    allowed = f"{origins} data: blob:".strip()
    return "; ".join(
        [
            "default-src 'none'",
            f"script-src 'unsafe-inline' 'wasm-unsafe-eval' {allowed}",  # wasm: the bundled meshopt decoder
            f"connect-src {allowed}",
            f"img-src {allowed}",
            f"worker-src {allowed}",
            "style-src 'unsafe-inline'",
        ]
    )


def _data_url(mime: str, data: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _poster_data_url(png: bytes) -> str:
    """The poster as a data: URL; one larger than ``POSTER_MAX_PX`` is shrunk to a JPEG (it is stored in every chat
    message that embeds the page, and the viewer is only ~700 px wide)."""
    with Image.open(io.BytesIO(png)) as image:
        if max(image.size) <= POSTER_MAX_PX:
            return _data_url("image/png", png)
        image.thumbnail((POSTER_MAX_PX, POSTER_MAX_PX), Image.Resampling.LANCZOS)
        flat = Image.new("RGB", image.size, (255, 255, 255))
        flat.paste(image, mask=image.getchannel("A") if image.mode == "RGBA" else None)
    encoded = io.BytesIO()
    flat.save(encoded, format="JPEG", quality=POSTER_JPEG_QUALITY)
    return _data_url("image/jpeg", encoded.getvalue())


def _safe_filename(name: str) -> str:
    """A plain file name ending in .glb: no path parts, only letters, digits, dot, dash, underscore."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name).name).strip("._") or "model"
    return stem if stem.lower().endswith(".glb") else f"{stem}.glb"


@lru_cache(maxsize=2)
def _read_bundle(path: Path, mtime_ns: int) -> str:
    text = path.read_text(encoding="utf-8")
    if re.search(r"</?script", text, re.IGNORECASE):  # would let the HTML parser end or nest the inline script
        raise ValueError(f"{path} contains '<script' or '</script' and cannot be inlined safely")
    return text


def _inline_bundle(path: Path) -> Markup:
    """The bundle as trusted inline-script text (it is our vendored file, not user input)."""
    return Markup(_read_bundle(path, path.stat().st_mtime_ns))  # noqa: S704
