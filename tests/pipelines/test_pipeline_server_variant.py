"""pipelines/alch3mist_pipeline.py: the Pipelines-server ``Pipeline`` class, loaded directly, against a real backend
and the test LLM server (as its OpenAI-compatible API for the rewrite and base chat models)."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import BACKEND_KEY, E2E_SEED, OWUI_VENV
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
    with e2e_backend.client(user="u1") as client:  # the job is Open WebUI user u1's, through this key
        job = client.get(f"/v1/jobs/{job_id}").json()
    assert job["prompt"]["rewriter"] == "caller"  # the rewrite model wrote the prompts
    assert job["user"] == "u1"  # the opaque id, never the e-mail
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


# --- what Open WebUI 0.12.4 forwards to a Pipelines connection ------------------------------------------------------

CHAT = [
    {"role": "user", "content": "Material Alch3mist, genérame una vaca con piel de cocodrilo"},
    {"role": "assistant", "content": "### Vaca de cocodrilo\n- **Seed:** 7\n\n`alch3mist job j0b1d`"},
]


@pytest.fixture(scope="module")
def forwarded_task_bodies(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Open WebUI's own code builds its title / tags / follow-up task bodies for a Pipelines model (see the script)."""
    python = OWUI_VENV / "bin" / "python"
    if not python.is_file():
        pytest.fail(f"Open WebUI is not installed at {OWUI_VENV}: run `bash scripts/openwebui-venv.sh`")
    data = tmp_path_factory.mktemp("owui-data")
    frontend = next((OWUI_VENV / "lib").glob("python3*/site-packages/open_webui/frontend"))
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(data),
        "DATA_DIR": str(data),
        "WEBUI_SECRET_KEY": "alch3mist-test",
        "OFFLINE_MODE": "True",
        "FRONTEND_BUILD_DIR": str(frontend),
    }
    script = Path(__file__).with_name("openwebui_task_bodies.py")
    done = subprocess.run(
        [str(python), str(script), "alch3mist", json.dumps(CHAT)],
        env=env,
        cwd=data,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    bodies: dict[str, dict[str, Any]] = json.loads(done.stdout.strip().splitlines()[-1])
    return bodies


def serve_like_the_pipelines_server(pipeline: Any, payload: dict[str, Any]) -> str:
    """open-webui/pipelines main.py generate_openai_chat_completion: messages dumped from the form, user_message from
    utils/pipelines/main.py get_last_user_message (the first text part, or the content as it is), body = the form."""
    messages = [dict(m) for m in payload["messages"]]
    user_message: Any = None
    for message in reversed(messages):
        if message["role"] == "user":
            content = message["content"]
            user_message = (
                next((i["text"] for i in content if i["type"] == "text"), content)
                if isinstance(content, list)
                else content
            )
            break
    result = pipeline.pipe(user_message=user_message, model_id=payload["model"], messages=messages, body=payload)
    return result if isinstance(result, str) else "".join(result)


@pytest.mark.parametrize(("task", "key"), [("title", "title"), ("tags", "tags"), ("follow_up", "follow_ups")])
def test_open_webui_task_prompts_never_generate(
    forwarded_task_bodies: dict[str, dict[str, Any]], task: str, key: str
) -> None:
    payload = forwarded_task_bodies[task]
    assert "metadata" not in payload and "task" not in payload  # what makes the prompt the only sign
    assert "Alch3mist" in payload["messages"][-1]["content"]  # the trigger word, quoted from the chat
    pipeline = MODULE.Pipeline()
    pipeline.valves = MODULE.Pipeline.Valves(BACKEND_URL=f"http://127.0.0.1:{free_port()}")  # nothing listens
    answer = serve_like_the_pipelines_server(pipeline, payload)
    assert key in json.loads(answer), answer


def test_open_webui_task_goes_to_the_base_chat_model(
    forwarded_task_bodies: dict[str, dict[str, Any]], e2e_backend: BackendProcess, llm: RunningServer
) -> None:
    answer = serve_like_the_pipelines_server(make(e2e_backend, llm), forwarded_task_bodies["title"])
    assert answer.startswith("You said: ### Task:"), answer  # the test LLM echoes; no job was started


def test_a_message_of_images_only_does_not_crash() -> None:
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    payload = {"model": "alch3mist", "messages": [{"role": "user", "content": [image]}], "stream": True}
    answer = serve_like_the_pipelines_server(MODULE.Pipeline(), payload)
    assert "I make 3D assets" in answer
