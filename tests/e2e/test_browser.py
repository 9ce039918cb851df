"""A person in headless Chromium (Debian's chromium + chromedriver, driven by selenium; nothing is downloaded):
log into Open WebUI, pick "Alch3mist", send the request, and see the images, the views and the 3D viewer with the
model loaded inside Open WebUI's sandboxed iframe. Screenshots are kept in test-artifacts/e2e/."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.conftest import ADMIN, ARTIFACTS_DIR, OpenWebUI

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
REQUEST = "Material Alch3mist, a chair made of crocodile leather"


@pytest.fixture()
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    for path in (CHROMIUM, CHROMEDRIVER):
        if not shutil.which(path):
            pytest.fail(f"{path} is missing: run `bash scripts/install-system-deps.sh` (Debian chromium, chromedriver)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1400,2200",
        "--use-angle=swiftshader",
        "--enable-unsafe-swiftshader",
        "--disable-gpu-sandbox",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(120)
    try:
        yield driver
    finally:
        driver.quit()


def wait(predicate: Any, timeout: float, what: str, every: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # selenium raises many kinds while the page changes under it
            last_error = exc
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last error: {last_error})")


def shot(driver: Any, name: str) -> None:
    ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS_DIR / name))


def test_a_person_gets_images_views_and_a_loaded_viewer_in_the_chat(owui: OpenWebUI, browser: Any) -> None:
    try:
        _chat_in_the_browser(owui, browser)
    except BaseException:
        shot(browser, "browser-failure.png")
        raise


def _chat_in_the_browser(owui: OpenWebUI, browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    driver = browser
    # 1. Log in.
    driver.get(f"{owui.base_url}/auth")
    email = wait(lambda: driver.find_element(By.CSS_SELECTOR, "input[type=email]"), 120, "the login form")
    email.send_keys(ADMIN["email"])
    driver.find_element(By.CSS_SELECTOR, "input[type=password]").send_keys(ADMIN["password"], Keys.ENTER)
    wait(lambda: "/auth" not in driver.current_url, 60, "the login to finish")

    # 2. A new chat with the model "Alch3mist" (Open WebUI selects it from ?models=).
    driver.get(f"{owui.base_url}/?models=alch3mist")
    box = wait(lambda: driver.find_element(By.ID, "chat-input"), 120, "the chat input")
    for _ in range(3):  # a "what's new" dialog may open once after the first login
        driver.find_element(By.TAG_NAME, "body").send_keys(Keys.ESCAPE)
    wait(lambda: "Alch3mist" in driver.find_element(By.TAG_NAME, "body").text, 60, "the model name on the page")
    shot(driver, "browser-1-ready.png")
    box = driver.find_element(By.ID, "chat-input")
    box.click()
    box.send_keys(REQUEST)
    box.send_keys(Keys.ENTER)

    # 3. The images (from Open WebUI's file store) and the viewer iframe appear in the answer.
    def images() -> list[Any]:
        found = driver.find_elements(By.CSS_SELECTOR, "img[src*='/api/v1/files/']")
        return [i for i in found if driver.execute_script("return arguments[0].naturalWidth > 0", i)]

    wait(lambda: len(images()) >= 3, 600, "the base image, the textured image and the views", every=2)
    frame = wait(
        lambda: [
            f
            for f in driver.find_elements(By.TAG_NAME, "iframe")
            if f.get_attribute("srcdoc") or "/viewer" in (f.get_attribute("src") or "")
        ][-1],
        300,
        "the viewer iframe",
    )
    sandbox = frame.get_attribute("sandbox") or ""
    assert "allow-scripts" in sandbox and "allow-same-origin" not in sandbox, sandbox
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", frame)

    # 4. Inside the sandboxed iframe: <model-viewer> has loaded the GLB.
    driver.switch_to.frame(frame)
    try:
        wait(
            lambda: driver.execute_script(
                "const v = document.querySelector('model-viewer'); "
                "return !!(v && v.loaded && v.modelIsVisible !== false)"
            ),
            180,
            "model-viewer to load the model",
            every=1,
        )
    finally:
        driver.switch_to.default_content()
    height = driver.execute_script("return arguments[0].getBoundingClientRect().height", frame)
    assert height >= 300, f"the viewer iframe is only {height} px high"
    # The summary reads as text: escaped prompts show no markdown, HTML or KaTeX math.
    page_text = driver.find_element(By.TAG_NAME, "body").text
    assert "Base prompt:" in page_text and "Seed: 7" in page_text, page_text[-2000:]
    assert not driver.find_elements(By.CSS_SELECTOR, ".katex"), "an escaped prompt was rendered as math"
    time.sleep(2.0)  # let the first frames render before the screenshot
    shot(driver, "browser-2-viewer.png")
    driver.execute_script("window.scrollTo(0, 0)")
    shot(driver, "browser-3-answer-top.png")
