"""Embeds that keep working (issue 10 item 12), with a simulated clock, in the real Chromium.

A chat keeps the viewer link from the API answer. It lives as long as the job (``ALCH3MIST_RETENTION_DAYS``); the page
behind it is rendered on every load with fresh short-lived links (``ALCH3MIST_LINK_TTL_S``) for the GLB, poster and
bundle. So a message opened long after the short TTL still shows the model — while a GLB link copied out of an old
page has expired. The backend is the real FastAPI app under uvicorn; only its link clock is moved.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import uvicorn
from alch3mist.api.main import create_app
from alch3mist.api.signing import LinkSigner
from alch3mist.config import Settings
from alch3mist.jobs.store import JobRecord, JobStore, new_job_id
from alch3mist.jobs.worker import Worker
from playwright.sync_api import Browser, sync_playwright
from pydantic import SecretStr

from tests.integration.conftest import free_port

from .harness import CHROMIUM, launch, make_glb, make_poster, open_embed_url

pytestmark = pytest.mark.browser

KEY = "key-webui-embed-0123"
LINK_TTL_S = 600
RETENTION_DAYS = 30


@dataclass
class Clock:
    now: float

    def __call__(self) -> float:
        return self.now


@dataclass
class Backend:
    url: str
    clock: Clock
    job_id: str


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    """The API app on a free port with a finished job of (webui, ana): a GLB and a poster on disk."""
    root = tmp_path_factory.mktemp("embed")
    port = free_port()
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        api_keys=SecretStr(f"webui:{KEY}"),
        data_dir=root / "data",
        link_ttl_s=LINK_TTL_S,
        retention_days=RETENTION_DAYS,
        public_url=f"http://127.0.0.1:{port}",
    )
    clock = Clock(time.time())
    store = JobStore(settings.data_dir)
    record = JobRecord(
        id=new_job_id(), status="succeeded", key_name="webui", user="ana", seed=7, engine_3d="preview",
        artifacts=["textured.png", "model.glb"], finished_at=clock.now, prompt=None,
    )  # fmt: skip
    store.job_dir(record.id).mkdir(parents=True)
    make_glb(store.job_dir(record.id) / "model.glb")
    (store.job_dir(record.id) / "textured.png").write_bytes(make_poster())
    store.insert(record)
    app = create_app(settings)
    app.state.signer = LinkSigner(settings.link_secret.get_secret_value().encode(), clock=clock)
    # The models are not needed to serve a finished job: the store and an idle (never started) worker are.
    app.state.store, app.state.chain = store, None
    app.state.worker = Worker(store, settings)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield Backend(f"http://127.0.0.1:{port}", clock, record.id)
    finally:
        server.should_exit = True
        thread.join(10)
        store.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if shutil.which(CHROMIUM) is None:
        pytest.fail(f"{CHROMIUM} is missing: run scripts/install-system-deps.sh (Debian package 'chromium')")
    with sync_playwright() as playwright:
        browser = launch(playwright)
        yield browser
        browser.close()


def _job(backend: Backend) -> Any:
    headers = {"Authorization": f"Bearer {KEY}", "X-Alch3mist-User": "ana"}
    response = httpx.get(f"{backend.url}/v1/jobs/{backend.job_id}", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def _glb_link(page: str) -> str:
    return next(p for p in page.split('"') if "/artifacts/model.glb?token=" in p).replace("&amp;", "&")


def test_a_message_opened_after_the_link_ttl_still_loads_the_model(backend: Backend, browser: Browser) -> None:
    # 1. The chat message is written now: it keeps the viewer link of the API answer.
    viewer = _job(backend)["artifacts"]["viewer"]
    old_glb = _glb_link(httpx.get(viewer).text)
    assert httpx.get(old_glb).status_code == 200

    # 2. Much later — long past the short TTL, within the job's retention — someone scrolls back to it.
    backend.clock.now += LINK_TTL_S + 7 * 86400
    expired = httpx.get(old_glb)
    assert expired.status_code == 401 and "expired" in expired.json()["error"]["message"]
    with open_embed_url(browser, viewer) as run:
        state = run.frame.evaluate("window.alch3mistViewer")
        assert state["loaded"] and state["error"] is None, state
        assert run.blocked == [] and run.external_requests() == []
        fresh = [url for url in run.requests if "/artifacts/model.glb?token=" in url]
    assert fresh and fresh[0] != old_glb  # the page handed the browser a link signed at load time

    # 3. Once the job's retention has passed the job is gone anyway, and so is its link.
    backend.clock.now += RETENTION_DAYS * 86400
    assert httpx.get(viewer).status_code == 401


def test_the_viewer_page_is_never_cached(backend: Backend) -> None:
    response = httpx.get(_job(backend)["artifacts"]["viewer"])
    assert response.headers["cache-control"] == "no-store"  # a cached copy would hold stale links
    assert response.headers["access-control-allow-origin"] == "*"
