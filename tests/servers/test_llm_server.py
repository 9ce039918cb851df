"""The test LLM server speaks OpenAI's wire format (Open WebUI's end-to-end tests connect to it as an OpenAI API)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.servers.llm_server import RunningServer, running_llm_server

SCRIPT = Path(__file__).with_name("llm_server.py")


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    with running_llm_server(api_key="k", slow_seconds=2.0) as running:
        yield running


def chat(server: RunningServer, **body: Any) -> httpx.Response:
    body.setdefault("messages", [{"role": "user", "content": "hello alchemist"}])
    return httpx.post(f"{server.url}/chat/completions", json=body, headers={"Authorization": "Bearer k"})


def test_models(server: RunningServer) -> None:
    response = httpx.get(f"{server.url}/models", headers={"Authorization": "Bearer k"})
    assert response.status_code == 200
    data = response.json()
    assert data["object"] == "list"
    assert {"rewriter", "rewriter-invalid-once", "garbage", "slow", "chat"} <= {m["id"] for m in data["data"]}
    assert all(m["object"] == "model" and "owned_by" in m and "created" in m for m in data["data"])


def test_auth_is_enforced(server: RunningServer) -> None:
    response = httpx.get(f"{server.url}/models")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"


def test_chat_completion_format(server: RunningServer) -> None:
    data = chat(server, model="chat").json()
    assert data["object"] == "chat.completion" and data["id"].startswith("chatcmpl-")
    (choice,) = data["choices"]
    assert choice["message"] == {"role": "assistant", "content": "You said: hello alchemist", "refusal": None}
    assert choice["finish_reason"] == "stop"
    usage = data["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_multipart_user_content_is_read(server: RunningServer) -> None:
    messages = [{"role": "user", "content": [{"type": "text", "text": "a cow"}, {"type": "image_url"}]}]
    assert chat(server, model="chat", messages=messages).json()["choices"][0]["message"]["content"] == "You said: a cow"


def test_rewriter_answers_material_prompt_json(server: RunningServer) -> None:
    messages = [{"role": "user", "content": "Material Alch3mist, una vaca de oro"}]
    content = json.loads(chat(server, model="rewriter", messages=messages).json()["choices"][0]["message"]["content"])
    assert content["subject"] == "a cow" and content["materials"] == ["gold"]
    assert content["edit_prompt"].startswith("Alch3mist")


def test_streaming_format(server: RunningServer) -> None:
    body = {"model": "chat", "stream": True, "messages": [{"role": "user", "content": "stream this back to me please"}]}
    with httpx.stream("POST", f"{server.url}/chat/completions", json=body, headers={"Authorization": "Bearer k"}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        raw = r.read().decode()
    events = [block for block in raw.split("\n\n") if block]
    assert all(block.startswith("data: ") for block in events)
    assert events[-1] == "data: [DONE]"
    chunks = [json.loads(block[len("data: ") :]) for block in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == chunks[0]["id"] for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop" and chunks[-1]["choices"][0]["delta"] == {}
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert text == "You said: stream this back to me please"
    assert len(chunks) > 3  # really in pieces


def test_streaming_usage_chunk(server: RunningServer) -> None:
    body = {
        "model": "chat",
        "stream": True,
        "stream_options": {"include_usage": True},
        "messages": [{"role": "user", "content": "hi"}],
    }
    with httpx.stream("POST", f"{server.url}/chat/completions", json=body, headers={"Authorization": "Bearer k"}) as r:
        events = [b for b in r.read().decode().split("\n\n") if b]
    last = json.loads(events[-2][len("data: ") :])
    assert last["choices"] == [] and last["usage"]["total_tokens"] > 0


def test_unknown_model_and_bad_body(server: RunningServer) -> None:
    response = chat(server, model="gpt-nope")
    assert response.status_code == 404 and response.json()["error"]["code"] == "model_not_found"
    response = httpx.post(f"{server.url}/chat/completions", content=b"{", headers={"Authorization": "Bearer k"})
    assert response.status_code == 400


def test_slow_delay_is_configurable_per_request(server: RunningServer) -> None:
    started = time.monotonic()
    response = httpx.post(
        f"{server.url}/chat/completions?delay_s=0.2",
        json={"model": "slow", "messages": [{"role": "user", "content": "a cow made of gold"}]},
        headers={"Authorization": "Bearer k"},
    )
    assert response.status_code == 200
    assert 0.2 <= time.monotonic() - started < 1.5


def test_requests_are_recorded_and_reset(server: RunningServer) -> None:
    httpx.post(f"{server.base_url}/_reset").raise_for_status()
    chat(server, model="chat")
    (record,) = httpx.get(f"{server.base_url}/_requests").json()
    assert record["path"] == "/v1/chat/completions" and record["body"]["model"] == "chat"
    httpx.post(f"{server.base_url}/_reset").raise_for_status()
    assert httpx.get(f"{server.base_url}/_requests").json() == []


def test_runs_as_a_script() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen([sys.executable, str(SCRIPT), "--port", str(port)])
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=1)
                break
            except httpx.TransportError:
                assert process.poll() is None, "the server script exited"
                assert time.monotonic() < deadline, "the server script did not start within 30 s"
                time.sleep(0.2)
        assert response.status_code == 200  # no --api-key: no auth
    finally:
        process.terminate()
        process.wait(timeout=10)


TOOLS = [{"type": "function", "function": {"name": "generate_3d_asset", "parameters": {"type": "object"}}}]


def test_tool_caller_calls_the_first_tool_then_answers_its_result(server: RunningServer) -> None:
    ask = [{"role": "user", "content": "a chair made of crocodile leather"}]

    first = chat(server, model="tool-caller", tools=TOOLS, messages=ask).json()["choices"][0]

    assert first["finish_reason"] == "tool_calls" and first["message"]["content"] is None
    (call,) = first["message"]["tool_calls"]
    assert call["function"]["name"] == "generate_3d_asset"
    assert json.loads(call["function"]["arguments"]) == {"request": "a chair made of crocodile leather"}

    answered = [*ask, first["message"], {"role": "tool", "tool_call_id": call["id"], "content": "made a chair"}]
    second = chat(server, model="tool-caller", tools=TOOLS, messages=answered).json()["choices"][0]
    assert second["finish_reason"] == "stop" and "made a chair" in second["message"]["content"]


def test_tool_caller_streams_the_call_as_openai_does(server: RunningServer) -> None:
    body = {"model": "tool-caller", "stream": True, "tools": TOOLS, "messages": [{"role": "user", "content": "a vase"}]}
    with httpx.stream("POST", f"{server.url}/chat/completions", json=body, headers={"Authorization": "Bearer k"}) as r:
        raw = r.read().decode()
    chunks = [json.loads(block[len("data: ") :]) for block in raw.split("\n\n") if block and block != "data: [DONE]"]
    deltas = [c["choices"][0]["delta"] for c in chunks]
    assert deltas[0]["tool_calls"][0]["function"] == {"name": "generate_3d_asset", "arguments": ""}
    assert json.loads(deltas[1]["tool_calls"][0]["function"]["arguments"]) == {"request": "a vase"}
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
