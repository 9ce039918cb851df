"""tools/alch3mist_tool.py exec'd standalone, as Open WebUI loads it, against a real backend process."""

from __future__ import annotations

import asyncio
import inspect
import json
from typing import Any

from fastapi.responses import HTMLResponse

from tests.e2e.conftest import BACKEND_KEY, E2E_SEED, FAST_VALVES
from tests.integration.conftest import BackendProcess, free_port
from tests.pipelines.conftest import Events, load_plugin

MODULE = load_plugin("tools/alch3mist_tool.py")
TOOL_VALVES = {k: v for k, v in FAST_VALVES.items() if k in MODULE.Tools.Valves.model_fields}


def make(backend: BackendProcess, **valves: Any) -> Any:
    tools = MODULE.Tools()
    settings = {"BACKEND_URL": backend.base_url, "BACKEND_API_KEY": BACKEND_KEY, **TOOL_VALVES, **valves}
    tools.valves = MODULE.Tools.Valves(**settings)
    return tools


def call(tools: Any, request: str, events: Events | None = None) -> Any:
    user = {"id": "u1", "email": "ada@example.com", "valves": MODULE.Tools.UserValves()}
    return asyncio.run(tools.generate_3d_asset(request, seed=E2E_SEED, __user__=user, __event_emitter__=events))


def test_one_public_method_with_a_documented_signature() -> None:
    public = [name for name, _ in inspect.getmembers(MODULE.Tools(), inspect.ismethod) if not name.startswith("_")]
    assert public == ["generate_3d_asset"]  # Open WebUI turns every public method into a tool
    doc = MODULE.Tools.generate_3d_asset.__doc__
    assert ":param request:" in doc and ":param seed:" in doc
    schema = MODULE.Tools.Valves.model_json_schema()["properties"]
    assert schema["BACKEND_API_KEY"]["input"] == {"type": "password"}
    assert all(prop.get("description") for prop in schema.values())


def test_tool_call_returns_an_inline_embed_and_context(e2e_backend: BackendProcess) -> None:
    events = Events()
    result = call(make(e2e_backend), "a chair made of crocodile leather", events)
    assert isinstance(result, tuple), result
    page, context = result
    assert isinstance(page, HTMLResponse) and page.headers["content-disposition"] == "inline"
    assert b"model-viewer" in page.body and b"data:model/gltf-binary;base64," in page.body
    info = json.loads(context)
    assert info["status"] == "succeeded" and info["seed"] == E2E_SEED and info["engine_is_preview"]
    assert info["material_prompt"].startswith("Alch3mist")
    statuses = [e["description"] for e in events.of("status")]
    assert statuses[0].startswith("Sending the job") and statuses[-1] == "Done"


def test_url_mode_frames_the_backend_viewer(e2e_backend: BackendProcess) -> None:
    result = call(make(e2e_backend, PUBLIC_BACKEND_URL=e2e_backend.base_url), "a vase of glass")
    assert isinstance(result, tuple), result
    body = result[0].body.decode()
    assert f'<iframe src="{e2e_backend.base_url}/v1/jobs/' in body
    assert "iframe:height" in body


def test_backend_down_tells_the_model() -> None:
    tools = MODULE.Tools()
    dead = f"http://127.0.0.1:{free_port()}"
    tools.valves = MODULE.Tools.Valves(BACKEND_URL=dead)
    result = call(tools, "a lamp")
    assert isinstance(result, str) and f"backend at {dead} is not reachable" in result


def test_url_mode_page_escapes_everything() -> None:
    page = MODULE.url_mode_page('https://x/"><script>', [("<b>", 'https://x/"><img>')], "<script>alert(1)</script>")
    assert "<script>alert" not in page and '"><script>' not in page and '"><img>' not in page


def test_the_tool_sends_the_opaque_user_id(e2e_backend: BackendProcess) -> None:
    result = call(make(e2e_backend, DEFAULT_VIEWS=0), "a spoon of tin")
    assert isinstance(result, tuple), result
    job_id = json.loads(result[1])["job_id"]
    with e2e_backend.client(user="u1") as owner:
        assert owner.get(f"/v1/jobs/{job_id}").json()["user"] == "u1"
    assert "ada@example.com" not in e2e_backend.log_path.read_text(errors="replace")
