"""A person in headless Chromium (Debian's chromium driven by Playwright, as the viewer tests do; nothing is
downloaded): log into Open WebUI, pick "Alch3mist", send the request, and see the images, the views and the 3D viewer
with the model loaded inside Open WebUI's sandboxed iframe. Screenshots are kept in test-artifacts/e2e/."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, sync_playwright

from tests.e2e.conftest import ADMIN, ARTIFACTS_DIR, OpenWebUI
from tests.model_viewer.harness import CHROMIUM, launch

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

REQUEST = "Material Alch3mist, a chair made of crocodile leather"
VIEWER_FRAME = "iframe[srcdoc], iframe[src*='/viewer']"


@pytest.fixture()
def page() -> Iterator[Page]:
    if not shutil.which(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: run `bash scripts/install-system-deps.sh` (Debian's chromium)")
    with sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 2200})
            page.set_default_timeout(120_000)
            yield page
        finally:
            browser.close()


def shot(page: Page, name: str) -> None:
    ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS_DIR / name))


def test_a_person_gets_images_views_and_a_loaded_viewer_in_the_chat(owui: OpenWebUI, page: Page) -> None:
    try:
        _chat_in_the_browser(owui, page)
    except BaseException:
        shot(page, "browser-failure.png")
        raise


def _chat_in_the_browser(owui: OpenWebUI, page: Page) -> None:
    # 1. Log in.
    page.goto(f"{owui.base_url}/auth")
    page.fill("input[type=email]", ADMIN["email"])
    page.fill("input[type=password]", ADMIN["password"])
    page.press("input[type=password]", "Enter")
    page.wait_for_url(lambda url: "/auth" not in url, timeout=60_000)

    # 2. A new chat with the model "Alch3mist" (Open WebUI selects it from ?models=).
    page.goto(f"{owui.base_url}/?models=alch3mist")
    box = page.locator("#chat-input")
    box.wait_for()
    for _ in range(3):  # a "what's new" dialog may open once after the first login
        page.keyboard.press("Escape")
    page.get_by_text("Alch3mist").first.wait_for(timeout=60_000)
    shot(page, "browser-1-ready.png")
    box.click()
    page.keyboard.type(REQUEST)
    page.keyboard.press("Enter")

    # 3. The images (from Open WebUI's file store) and the viewer iframe appear in the answer.
    page.wait_for_function(
        """() => [...document.querySelectorAll("img[src*='/api/v1/files/']")]
                 .filter((img) => img.naturalWidth > 0).length >= 3""",
        timeout=600_000,
        polling=2000,
    )
    frame_element = page.locator(VIEWER_FRAME).last
    frame_element.wait_for(timeout=300_000)
    sandbox = frame_element.get_attribute("sandbox") or ""
    assert "allow-scripts" in sandbox and "allow-same-origin" not in sandbox, sandbox
    frame_element.scroll_into_view_if_needed()

    # 4. Inside the sandboxed iframe: <model-viewer> has loaded the GLB.
    frame = frame_element.element_handle().content_frame()
    assert frame is not None, "the viewer iframe has no document"
    frame.wait_for_function(
        "() => { const v = document.querySelector('model-viewer'); return !!(v && v.loaded && v.modelIsVisible); }",
        timeout=180_000,
        polling=1000,
    )
    height = frame_element.bounding_box()["height"]  # type: ignore[index]
    assert height >= 300, f"the viewer iframe is only {height} px high"

    # The summary reads as text: escaped prompts show no markdown, HTML or KaTeX math.
    page_text = page.inner_text("body")
    assert "Base prompt:" in page_text and "Seed: 7" in page_text, page_text[-2000:]
    assert page.locator(".katex").count() == 0, "an escaped prompt was rendered as math"
    page.wait_for_timeout(2000)  # let the first frames render before the screenshot
    shot(page, "browser-2-viewer.png")
    page.evaluate("window.scrollTo(0, 0)")
    shot(page, "browser-3-answer-top.png")
