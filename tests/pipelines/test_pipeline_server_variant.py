"""pipelines/alch3mist_pipeline.py: the Pipelines-server ``Pipeline`` class, loaded directly, against a real backend
and the test LLM server (as its OpenAI-compatible API for the rewrite and base chat models)."""

from __future__ import annotations

import re
from typing import Any

import httpx

from tests.e2e.conftest import BACKEND_KEY, E2E_SEED
from tests.integration.conftest import BackendProcess, free_port
from tests.pipelines.conftest import load_plugin
from tests.servers.llm_server import RunningServer

MODULE = load_plugin("pipelines/alch3mist_pipeline.py")
FAST = {
    "DEFAULT_STEPS": 2,
    "DEFAULT_EDIT_STEPS": 2,
    "DEFAULT_SIZE": 64,
    "DEFAULT_TEXTURE_SIZE": 256,
    "DEFAULT_VIEW_SIZE": 64,
    "DEFAULT_SEED": E2E_SEED,
}


def make(backend: BackendProcess, llm: RunningServer, **valves: Any) -> Any:
    pipeline = MODULE.Pipeline()
    pipeline.valves = MODULE.Pipeline.Valves(
        BACKEND_URL=backend.base_url,
        BACKEND_API_KEY=BACKEND_KEY,
        OPENAI_API_BASE_URL=f"{llm.base_url}/v1",
        REWRITE_MODEL="rewriter",
        BASE_CHAT_MODEL="chat",
        DEFAULT_ENGINE_3D="preview",
        DEFAULT_VIEWS=2,
        POLL_EVERY=0.5,
        **{**FAST, **valves},
    )
    return pipeline


def run(pipeline: Any, text: str, history: list[dict[str, Any]] | None = None, **body: Any) -> str:
    messages = [*(history or []), {"role": "user", "content": text}]
    body = {"model": "alch3mist", "messages": messages, "user": {"id": "u1", "email": "ada@example.com"}, **body}
    result = pipeline.pipe(text, "alch3mist", messages, body)
    return result if isinstance(result, str) else "".join(result)


def test_valves_and_name() -> None:
    pipeline = MODULE.Pipeline()
    assert pipeline.name == "Alch3mist"
    schema = MODULE.Pipeline.Valves.model_json_schema()["properties"]
    assert schema["BACKEND_API_KEY"]["input"] == {"type": "password"}
    assert all(prop.get("description") for prop in schema.values())


def test_plain_message_goes_to_the_chat_model(e2e_backend: BackendProcess, llm: RunningServer) -> None:
    assert run(make(e2e_backend, llm), "hello") == "You said: hello"


def test_title_task_never_generates(llm: RunningServer) -> None:
    pipeline = MODULE.Pipeline()
    pipeline.valves = MODULE.Pipeline.Valves(BACKEND_URL=f"http://127.0.0.1:{free_port()}")
    assert run(pipeline, "Alch3mist, a chair", title=True) == '{"title": "Alch3mist 3D asset"}'


def test_trigger_word_runs_the_chain(e2e_backend: BackendProcess, llm: RunningServer) -> None:
    pipeline = make(e2e_backend, llm)
    content = run(pipeline, "Alch3mist, a chair made of crocodile leather")
    assert "`alch3mist job " in content, content
    job_id = re.search(r"`alch3mist job ([A-Za-z0-9_-]+)`", content).group(1)  # type: ignore[union-attr]
    with e2e_backend.client() as client:
        job = client.get(f"/v1/jobs/{job_id}").json()
    assert job["prompt"]["rewriter"] == "caller"  # the rewrite model wrote the prompts
    assert job["user"] == "ada@example.com"
    assert "![base_image](http" in content
    for url in re.findall(r"!\[\w+\]\((http[^)]+)\)", content):
        assert httpx.get(url).status_code == 200


def test_backend_down(llm: RunningServer) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    pipeline = MODULE.Pipeline()
    pipeline.valves = MODULE.Pipeline.Valves(BACKEND_URL=dead)
    assert f"The Alch3mist backend at {dead} is not reachable" in run(pipeline, "Alch3mist, a lamp")


def test_empty_request() -> None:
    assert "Tell me what to make" in run(MODULE.Pipeline(), "Alch3mist")
