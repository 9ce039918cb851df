"""pipelines/alch3mist_pipe.py exec'd standalone (outside Open WebUI) against a real backend process.

Outside Open WebUI there is no request object: images are linked from the backend's signed URLs instead of Open
WebUI's file store, and no rewrite model is reachable, so the backend's rewriter writes the prompts.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import BACKEND_KEY, FAST_VALVES
from tests.integration.conftest import BackendProcess, free_port
from tests.pipelines.conftest import Events, load_plugin

MODULE = load_plugin("pipelines/alch3mist_pipe.py")


def make_pipe(backend: BackendProcess, **valves: Any) -> Any:
    pipe = MODULE.Pipe()
    settings = {"BACKEND_URL": backend.base_url, "BACKEND_API_KEY": BACKEND_KEY, **FAST_VALVES, **valves}
    pipe.valves = MODULE.Pipe.Valves(**settings)
    return pipe


# A fixed seed (the user's valve), so results are reproducible.
SEED = 7


async def run(pipe: Any, text: str, events: Events | None = None, **kwargs: Any) -> str:
    user = {"id": "u1", "email": "ada@example.com", "name": "Ada", "role": "user"}
    user["valves"] = MODULE.Pipe.UserValves(seed=SEED)
    result = await pipe.pipe(
        {"model": "alch3mist", "stream": True, "messages": [{"role": "user", "content": text}]},
        __user__=user,
        __event_emitter__=events,
        **kwargs,
    )
    if isinstance(result, str):
        return result
    return "".join([chunk async for chunk in result])


def test_file_loads_like_open_webui_loads_it() -> None:
    pipe = MODULE.Pipe()
    assert pipe.name == "Alch3mist" and pipe.type == "pipe"
    schema = MODULE.Pipe.Valves.model_json_schema()["properties"]
    assert schema["BACKEND_API_KEY"]["input"] == {"type": "password"}
    assert all(prop.get("description") for prop in schema.values())


def test_chain_against_a_real_backend(e2e_backend: BackendProcess) -> None:
    events = Events()
    content = asyncio.run(run(make_pipe(e2e_backend), "Alch3mist, a chair made of crocodile leather", events))
    links = dict(re.findall(r"!\[(\w+)\]\((http[^)]+)\)", content))
    assert set(links) == {"base_image", "textured_image", "contact_sheet"}, content
    for url in links.values():  # signed URLs: a browser loads them without the key
        response = httpx.get(url)
        assert response.status_code == 200 and response.headers["content-type"].startswith("image/")
    embeds = events.of("embeds")
    assert len(embeds) == 1 and "model-viewer" in embeds[0]["embeds"][0]
    statuses = [s["description"] for s in events.of("status")]
    assert statuses[0] == "Sending the job to the Alch3mist backend…", statuses  # no rewrite model configured
    assert any(s.startswith("Building the 3D mesh") for s in statuses) and statuses[-1] == "Done", statuses
    assert "`alch3mist job " in content and "**Seed:**" in content


def test_url_mode_embeds_the_viewer_url(e2e_backend: BackendProcess) -> None:
    events = Events()
    pipe = make_pipe(e2e_backend, PUBLIC_BACKEND_URL=e2e_backend.base_url)
    content = asyncio.run(run(pipe, "Alch3mist, a vase of glass", events))
    (embed,) = events.of("embeds")
    url = embed["embeds"][0]
    assert url.startswith(f"{e2e_backend.base_url}/v1/jobs/") and "/viewer" in url
    assert httpx.get(url).status_code == 200  # signed: no API key needed
    assert "[open in a new tab]" in content


def test_backend_down() -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    pipe = MODULE.Pipe()
    pipe.valves = MODULE.Pipe.Valves(BACKEND_URL=dead)
    content = asyncio.run(run(pipe, "Alch3mist, a lamp"))
    assert f"The Alch3mist backend at {dead} is not reachable" in content


def test_wrong_api_key_is_explained(e2e_backend: BackendProcess) -> None:
    pipe = make_pipe(e2e_backend, BACKEND_API_KEY="wrong")
    content = asyncio.run(run(pipe, "Alch3mist, a lamp"))
    assert "refused the job" in content and "BACKEND_API_KEY" in content


@pytest.mark.parametrize("task", ["title_generation", "tags_generation", "follow_up_generation"])
def test_background_tasks_never_generate(task: str) -> None:
    pipe = MODULE.Pipe()
    pipe.valves = MODULE.Pipe.Valves(BACKEND_URL=f"http://127.0.0.1:{free_port()}")  # would fail loudly if called
    content = asyncio.run(run(pipe, "Alch3mist, a chair", __task__=task))
    assert "backend" not in content
    assert content.startswith("{")


def test_plain_message_without_base_model_explains_the_trigger() -> None:
    content = asyncio.run(run(MODULE.Pipe(), "hello"))
    assert "Alch3mist" in content and "BASE_CHAT_MODEL" in content


def test_trigger_word_is_configurable_and_case_insensitive() -> None:
    find = MODULE.find_trigger
    assert find("material ALCH3MIST, a cow", "Alch3mist")
    assert not find("alch3mists are nice", "Alch3mist")
    assert find("Forge: a golden cup", "forge")
    assert MODULE.strip_trigger("Material Alch3mist, a cow", find("Material Alch3mist, a cow", "Alch3mist")) == "a cow"


def test_previous_job_is_found_in_the_conversation() -> None:
    messages = [
        {"role": "user", "content": "Alch3mist, a cow"},
        {"role": "assistant", "content": "...\n`alch3mist job abc123def`"},
        {"role": "user", "content": "Alch3mist, same thing but in gold"},
    ]
    assert MODULE.previous_job_id(messages) == "abc123def"
    assert MODULE.REFINE_CUES.search("same thing but in gold")
    assert not MODULE.REFINE_CUES.search("a cow with crocodile skin but with a flaming mane")


def test_markdown_escaping() -> None:
    text = MODULE.md_text(r"<script>alert(1)</script> [x](javascript:alert(1)) ![i](http://e/x.png) $x$ \(y\)")
    assert not re.search(r"(?<!\\)[<>]", text) and not re.search(r"(?<!\\)\]\(", text)  # no HTML tag, no link
    assert not re.search(r"(?<!\\)\$", text) and "\\\\(" in text  # no math: $ and \ are escaped
    assert "(y" in text  # parentheses stay as they are (an escaped one would open KaTeX math)


def test_only_inline_png_jpeg_webp_pictures_are_sent() -> None:
    """The backend checks the picture itself (decoders, size, bombs); the pipe only skips what is clearly not one."""
    png = "data:image/png;base64,iVBORw0KGgo="
    urls = [png, "https://e/x.png", "data:image/gif;base64,R0lGOD"]
    parts = [*({"type": "image_url", "image_url": {"url": url}} for url in urls), {"type": "text", "text": "hi"}]
    usable, notes = MODULE.message_images(parts)
    assert usable == [png] and len(notes) == 2 and "not an inline PNG, JPEG or WebP picture" in notes[0]


def test_late_stage_failure_keeps_the_images(e2e_backend: BackendProcess) -> None:
    # The backend's TRELLIS URL is a closed port: a TRELLIS job fails at the mesh stage.
    content = asyncio.run(run(make_pipe(e2e_backend, DEFAULT_ENGINE_3D="trellis"), "Alch3mist, a teapot of bronze"))
    assert {name for name, _ in re.findall(r"!\[(\w+)\]\((http[^)]+)\)", content)} >= {"base_image", "textured_image"}
    assert "**The generation failed at: Building the 3D mesh**" in content, content


def test_the_backend_gets_the_opaque_user_id_never_the_email(e2e_backend: BackendProcess) -> None:
    """Issue 10 item 2: the pipe sent the user's e-mail as `user` and the backend logged it."""
    content = asyncio.run(run(make_pipe(e2e_backend, DEFAULT_VIEWS=0), "Alch3mist, a spoon of tin"))
    job_id = re.search(r"`alch3mist job ([0-9a-f]+)`", content).group(1)  # type: ignore[union-attr]
    with e2e_backend.client(user="u1") as owner:
        assert owner.get(f"/v1/jobs/{job_id}").json()["user"] == "u1"  # Open WebUI's id, and the job is theirs
    with e2e_backend.client() as the_key_alone:
        assert the_key_alone.get(f"/v1/jobs/{job_id}").status_code == 404
    log = e2e_backend.log_path.read_text(errors="replace")
    assert "ada@example.com" not in log and "Ada" not in log


def test_the_summary_comes_from_the_backend_and_the_limits_too(e2e_backend: BackendProcess) -> None:
    pipe = make_pipe(e2e_backend, DEFAULT_VIEWS=0)
    user = {"id": "u2", "valves": MODULE.Pipe.UserValves(views=30, seed=SEED)}
    body = {"model": "alch3mist", "messages": [{"role": "user", "content": "Alch3mist, a bell of bronze"}]}

    async def go() -> str:
        return "".join([chunk async for chunk in await pipe.pipe(body, __user__=user)])

    content = asyncio.run(go()).replace("\\", "")
    assert "Views 30 is above the backend's limit; 16 was used" in content  # GET /v1/limits: max_views
    job_id = re.search(r"`alch3mist job ([0-9a-f]+)`", content).group(1)  # type: ignore[union-attr]
    with e2e_backend.client(user="u2") as owner:
        job = owner.get(f"/v1/jobs/{job_id}").json()
    assert job["manifest"]["parameters"]["views"] == 16
    assert job["summary"].replace("\\", "") in content  # the backend's escaped summary, as it is
