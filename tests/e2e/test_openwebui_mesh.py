"""A mesh attached to a trigger-word message in a real Open WebUI 0.12.4: uploaded into its file store the way the web
UI uploads it (processed, so Open WebUI's own file handling runs too), read by the pipe, retextured by the backend; and
a person in headless Chromium attaching a GLB and seeing the textured model in the viewer (screenshots in
test-artifacts/e2e/)."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trimesh
from playwright.sync_api import Page, sync_playwright

from tests.e2e.conftest import ADMIN, ARTIFACTS_DIR, OpenWebUI
from tests.e2e.test_openwebui_pipe import FILE_LINK, JOB_MARKER, file_bytes, job_of
from tests.integration.conftest import BackendProcess
from tests.model_viewer.harness import CHROMIUM, launch

pytestmark = pytest.mark.e2e

VIEWER_FRAME = "iframe[srcdoc], iframe[src*='/viewer']"
# The attachment chip ("chair.glb  3.5 KB") shows a spinner until Open WebUI has processed the upload.
ATTACHMENT_SETTLED = """() => {
    let chip = [...document.querySelectorAll("div, span")]
        .find((e) => e.children.length === 0 && e.textContent.trim() === "chair.glb");
    while (chip && !/KB/.test(chip.textContent)) chip = chip.parentElement;
    return !!chip && !chip.querySelector("[class*='spin']");
}"""


def chair_glb() -> bytes:
    """A small "chair": a seat, a back and four legs, several primitives (the backend merges them)."""
    parts = [trimesh.creation.box(extents=(0.5, 0.06, 0.5), transform=_at(0, 0.45, 0))]
    parts.append(trimesh.creation.box(extents=(0.5, 0.5, 0.06), transform=_at(0, 0.73, -0.22)))
    parts += [trimesh.creation.box(extents=(0.06, 0.45, 0.06), transform=_at(x, 0.22, z))
              for x in (-0.2, 0.2) for z in (-0.2, 0.2)]  # fmt: skip
    return bytes(trimesh.Scene(parts).export(file_type="glb"))


def _at(x: float, y: float, z: float) -> Any:
    return trimesh.transformations.translation_matrix((x, y, z))


def upload_as_the_web_ui_does(owui: OpenWebUI, name: str, data: bytes) -> dict[str, Any]:
    """POST /api/v1/files/ as the chat's attach button does (processed), then the item the chat sends with it."""
    with owui.client() as client:
        response = client.post("/api/v1/files/", files={"file": (name, data, "model/gltf-binary")})
        assert response.status_code == 200, response.text
        item = dict(response.json())
    return {"type": "file", "file": item, "id": item["id"], "url": item["id"], "name": name, "status": "uploaded",
            "size": len(data), "itemId": item["id"]}  # fmt: skip


def test_a_glb_attached_in_a_chat_is_retextured(owui: OpenWebUI, e2e_backend: BackendProcess, llm: Any) -> None:
    item = upload_as_the_web_ui_does(owui, "chair.glb", chair_glb())
    httpx.post(f"{llm.base_url}/_reset")
    _, _, message = owui.chat("alch3mist", "Alch3mist, make this chair crocodile leather", files=[item])
    content = message["content"]
    links = dict(FILE_LINK.findall(content))
    assert set(links) == {"texture_map", "contact_sheet"}, content
    assert file_bytes(owui, links["texture_map"])[:8] == b"\x89PNG\r\n\x1a\n"
    embeds = message.get("embeds") or []
    assert len(embeds) == 1 and "data:model/gltf-binary;base64," in embeds[0]
    statuses = [s.get("description", "") for s in message.get("statusHistory") or []]
    assert any(s.startswith("Texturing the mesh") for s in statuses) and statuses[-1] == "Done", statuses
    glb = re.search(r"\[3D model \(GLB\)\]\((/api/v1/files/[0-9a-f-]+/content)\)", content)
    assert glb and file_bytes(owui, glb.group(1))[:4] == b"glTF", content
    job = job_of(e2e_backend, JOB_MARKER.search(content).group(1))  # type: ignore[union-attr]
    assert job["status"] == "succeeded" and job["manifest"]["flow"] == "retexture"
    assert job["manifest"]["input_mesh"]["primitives"] == 6 and job["user"] == owui.user_id()
    # Open WebUI's own file handling (retrieval on the processed upload) did not reach the request: the rewrite
    # model saw the person's words, not file content.
    (rewrite,) = [r["body"] for r in httpx.get(f"{llm.base_url}/_requests").json() if r["body"]["model"] == "rewriter"]
    block = rewrite["messages"][-1]["content"].split("<<<REQUEST", 1)[1]
    assert "make this chair crocodile leather" in block and "glTF" not in block and "<context>" not in block, block


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


@pytest.mark.browser
def test_a_person_attaches_a_glb_and_sees_it_textured(owui: OpenWebUI, page: Page, tmp_path: Path) -> None:
    mesh = tmp_path / "chair.glb"
    mesh.write_bytes(chair_glb())
    try:
        _attach_in_the_browser(owui, page, mesh)
    except BaseException:
        shot(page, "mesh-failure.png")
        raise


def _attach_in_the_browser(owui: OpenWebUI, page: Page, mesh: Path) -> None:
    # 1. Log in; a new chat with the model "Alch3mist".
    page.goto(f"{owui.base_url}/auth")
    page.fill("input[type=email]", ADMIN["email"])
    page.fill("input[type=password]", ADMIN["password"])
    page.press("input[type=password]", "Enter")
    page.wait_for_url(lambda url: "/auth" not in url, timeout=60_000)
    page.goto(f"{owui.base_url}/?models=alch3mist")
    box = page.locator("#chat-input")
    box.wait_for()
    for _ in range(3):  # a "what's new" dialog may open once after the first login
        page.keyboard.press("Escape")
    page.get_by_text("Alch3mist").first.wait_for(timeout=60_000)

    # 2. Attach the GLB through the message input's file picker; wait until Open WebUI has stored it.
    with page.expect_response(lambda r: r.url.split("?")[0].endswith("/api/v1/files/")) as upload:
        page.locator("input[type=file][multiple]:not([webkitdirectory])").first.set_input_files(str(mesh))
    assert upload.value.status == 200, upload.value.text()
    page.get_by_text("chair.glb").first.wait_for(timeout=60_000)
    page.wait_for_function(ATTACHMENT_SETTLED, timeout=120_000, polling=500)
    shot(page, "mesh-1-attached.png")
    box.click()
    page.keyboard.type("Alch3mist, make this chair crocodile leather")
    page.keyboard.press("Enter")

    # 3. The UV texture and the views (from Open WebUI's file store), then the viewer with the model loaded.
    page.wait_for_function(
        """() => [...document.querySelectorAll("img[src*='/api/v1/files/']")]
                 .filter((img) => img.naturalWidth > 0).length >= 2""",
        timeout=600_000,
        polling=2000,
    )
    frame_element = page.locator(VIEWER_FRAME).last
    frame_element.wait_for(timeout=300_000)
    frame_element.scroll_into_view_if_needed()
    frame = frame_element.element_handle().content_frame()
    assert frame is not None, "the viewer iframe has no document"
    frame.wait_for_function(
        "() => { const v = document.querySelector('model-viewer'); return !!(v && v.loaded && v.modelIsVisible); }",
        timeout=180_000,
        polling=1000,
    )
    page_text = page.inner_text("body")
    assert "UV texture" in page_text and "Seed: 7" in page_text, page_text[-2000:]
    page.wait_for_timeout(2000)  # let the first frames render before the screenshot
    shot(page, "mesh-2-viewer.png")
