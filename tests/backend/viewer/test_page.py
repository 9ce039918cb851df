"""The viewer page as HTML (fast, no browser): escaping, modes, CDN-free decoder settings, CSP, the vendored bundle.

tests/model_viewer/ runs the same pages in a real Chromium inside Open WebUI's sandbox.
"""

from __future__ import annotations

import base64
import hashlib
import html.parser
import io
import re
from pathlib import Path

import pytest
from alch3mist.config import Settings
from alch3mist.errors import MeshError
from alch3mist.viewer import bundle_path, render_inline_page, render_url_page
from alch3mist.viewer.page import REPO_BUNDLE
from PIL import Image

HOSTILE = "</title><script>alert('t')</script><img src=x onerror=alert(1)> & \"quotes\""
CDN_HOSTS = ("gstatic.com", "jsdelivr.net", "unpkg.com", "googleapis.com", "modelviewer.dev", "cdnjs")
GLB = b"glTF\x02\x00\x00\x00" + b"\x00" * 24


def png() -> bytes:
    encoded = io.BytesIO()
    Image.new("RGB", (8, 8), (128, 128, 128)).save(encoded, format="PNG")
    return encoded.getvalue()


class Elements(html.parser.HTMLParser):
    """Every start tag with its attributes, and the text of every non-script element."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if not self._in_script and data.strip():
            self.text.append(data.strip())

    def find(self, tag: str) -> list[dict[str, str | None]]:
        return [attrs for name, attrs in self.tags if name == tag]


def parse(page: str) -> Elements:
    parser = Elements()
    parser.feed(page)
    return parser


def url_page(**overrides: str | None) -> str:
    values: dict[str, str | None] = {
        "title": "A cow",
        "glb_url": "https://gpu.example.org/v1/jobs/j1/artifacts/model.glb?token=abc&exp=1",
        "poster_url": "https://gpu.example.org/v1/jobs/j1/artifacts/views/view_04.png?token=abc",
        "bundle_url": "https://gpu.example.org/static/model-viewer-umd.min.js",
        "download_name": "cow.glb",
    }
    values.update(overrides)
    return render_url_page(**values)  # type: ignore[arg-type]


def test_url_page_references_the_given_urls() -> None:
    page = parse(url_page())
    (viewer,) = page.find("model-viewer")
    assert viewer["src"] == "https://gpu.example.org/v1/jobs/j1/artifacts/model.glb?token=abc&exp=1"
    assert viewer["poster"] == "https://gpu.example.org/v1/jobs/j1/artifacts/views/view_04.png?token=abc"
    assert {"camera-controls", "auto-rotate"} <= set(viewer)
    assert viewer["environment-image"] == "neutral"
    assert "https://gpu.example.org/static/model-viewer-umd.min.js" in [s.get("src") for s in page.find("script")]
    assert len(url_page()) < 20_000


def test_title_and_caption_are_escaped() -> None:
    for page_html in (
        url_page(title=HOSTILE, caption=HOSTILE),
        render_inline_page(title=HOSTILE, glb_bytes=GLB, poster_png=None, download_name="x", caption=HOSTILE),
    ):
        page = parse(page_html)
        assert page.find("img") == []
        assert len(page.find("script")) == 3  # decoder settings, bundle, controller: none injected
        assert page.text.count(HOSTILE) >= 3  # <title>, .title and .caption, as text
        assert page.find("model-viewer")[0]["alt"] == HOSTILE
        assert "alert('t')</script>" not in page_html


def test_only_http_urls_are_accepted() -> None:
    for bad in ("javascript:alert(1)", "data:text/html,<script>1</script>", "file:///etc/passwd"):
        with pytest.raises(ValueError, match="http"):
            url_page(glb_url=bad)
        with pytest.raises(ValueError, match="http"):
            url_page(poster_url=bad)
    assert "model.glb" in url_page(glb_url="/v1/jobs/j1/artifacts/model.glb", poster_url=None)


def test_download_name_is_a_plain_glb_file_name() -> None:
    def name(download_name: str) -> str | None:
        return parse(url_page(download_name=download_name)).find("button")[0]["data-filename"]

    assert name("cow.glb") == "cow.glb"
    assert name("../../etc/passwd") == "passwd.glb"
    assert name('vaca "roja" <1>.glb') == "vaca_roja_1_.glb"
    assert name("") == "model.glb"


def test_inline_page_is_self_contained() -> None:
    page_html = render_inline_page(title="t", glb_bytes=GLB, poster_png=png(), download_name="m.glb")
    page = parse(page_html)
    (viewer,) = page.find("model-viewer")
    assert viewer["src"] == "data:model/gltf-binary;base64," + base64.b64encode(GLB).decode()
    assert (viewer["poster"] or "").startswith("data:image/png;base64,")
    assert all("src" not in s for s in page.find("script"))  # the bundle is inlined
    assert bundle_path().read_text(encoding="utf-8") in page_html
    csp = next(m["content"] for m in page.find("meta") if m.get("http-equiv") == "Content-Security-Policy")
    assert csp is not None and "http" not in csp  # no origin at all may be contacted


def test_no_cdn_anywhere_outside_the_bundle() -> None:
    """Decoder locations are set before the bundle runs; the page itself names no CDN."""
    bundle = bundle_path().read_text(encoding="utf-8")
    inline = render_inline_page(title="t", glb_bytes=GLB, poster_png=None, download_name="m")
    # after the bundle (the UMD wrapper replaces self.ModelViewerElement), before the element is parsed
    settings, element = "Object.assign(self.ModelViewerElement, {", '<model-viewer id="viewer"'
    assert inline.index(bundle) + len(bundle) < inline.index(settings) < inline.index(element)
    url = url_page()
    assert url.index("model-viewer-umd.min.js") < url.index(settings) < url.index(element)
    for page_html in (url_page(), inline):
        own = page_html.replace(bundle, "")
        assert not any(host in own for host in CDN_HOSTS)
        for key in ("dracoDecoderLocation", "ktx2TranscoderLocation", "meshoptDecoderLocation", "lottieLoaderLocation"):
            assert re.search(rf'"{key}": "data:', own), key


def test_url_page_csp_allows_only_the_backend() -> None:
    csp = next(m["content"] for m in parse(url_page()).find("meta") if m.get("http-equiv") == "Content-Security-Policy")
    assert csp is not None and "default-src 'none'" in csp
    assert set(re.findall(r"https?://[^\s;]+", csp)) == {"https://gpu.example.org"}


def test_large_posters_are_shrunk_in_the_self_contained_page() -> None:
    big = io.BytesIO()
    Image.effect_noise((1200, 1000), 64).convert("RGBA").save(big, format="PNG")
    page = render_inline_page(title="t", glb_bytes=GLB, poster_png=big.getvalue(), download_name="m")
    poster = parse(page).find("model-viewer")[0]["poster"] or ""
    assert poster.startswith("data:image/jpeg;base64,")
    shrunk = Image.open(io.BytesIO(base64.b64decode(poster.split(",", 1)[1])))
    assert max(shrunk.size) == 768
    assert len(poster) < len(big.getvalue()) / 4


def test_inline_page_rejects_non_glb_and_non_png() -> None:
    with pytest.raises(MeshError):
        render_inline_page(title="t", glb_bytes=b"<html>", poster_png=None, download_name="m")
    with pytest.raises(ValueError):
        render_inline_page(title="t", glb_bytes=GLB, poster_png=b"GIF89a", download_name="m")


def test_vendored_bundle_is_the_pinned_release() -> None:
    """model_viewer/vendor/: the real ~1 MB UMD bundle, matching VERSION (written by model_viewer/vendor.sh)."""
    path = bundle_path()
    assert path == REPO_BUNDLE
    assert 900_000 < path.stat().st_size < 2_000_000
    version = (path.parent / "VERSION").read_text()
    assert "@google/model-viewer 4.4.0" in version
    assert hashlib.sha256(path.read_bytes()).hexdigest() in version
    assert "Apache License" in (path.parent / "LICENSE").read_text()
    assert '"@google/model-viewer": "4.4.0"' in (path.parents[1] / "package.json").read_text()


def test_bundle_path_is_configurable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    custom = tmp_path / "mv.js"
    custom.write_text("/* model-viewer */")
    monkeypatch.setenv("ALCH3MIST_MODEL_VIEWER_BUNDLE", str(custom))
    assert bundle_path(Settings().model_viewer_bundle) == custom
    assert bundle_path() == REPO_BUNDLE
    with pytest.raises(FileNotFoundError, match=r"vendor\.sh"):
        bundle_path(tmp_path / "missing.js")


def test_a_bundle_that_could_break_out_of_its_script_tag_is_refused(tmp_path: Path) -> None:
    evil = tmp_path / "mv.js"
    evil.write_text('var s = "</script><script>alert(1)//";')
    with pytest.raises(ValueError, match="inlined"):
        render_inline_page(title="t", glb_bytes=GLB, poster_png=None, download_name="m", bundle=evil)
