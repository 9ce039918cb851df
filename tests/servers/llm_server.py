"""A real OpenAI-compatible HTTP server that stands in for an LLM endpoint in tests.

Run it:        python tests/servers/llm_server.py --port 8001 [--api-key KEY] [--slow-seconds 5]
From pytest:   with running_llm_server() as server: ... server.url  (http://127.0.0.1:<free port>/v1)

It speaks the parts of the OpenAI API that our code and Open WebUI use: ``GET /v1/models`` and
``POST /v1/chat/completions``, non-streaming and ``stream: true`` (SSE ``chat.completion.chunk`` events ending
with ``data: [DONE]``). The *model name* picks the behaviour:

``rewriter``               a valid MaterialPrompt JSON for the request (built with the offline rewriter — this
                           server stands in for an LLM, it does not pretend to be one)
``rewriter-invalid-once``  the first reply for each distinct request is broken JSON, later replies are valid
``garbage``                never valid JSON
``wrong-schema``           valid JSON that is not a MaterialPrompt
``no-json-mode``           like ``rewriter``, but HTTP 400 when ``response_format`` is sent (no JSON mode)
``messy``                  valid but dirty: markup, a string for ``materials``, no trigger word, over-long fields
``slow``                   like ``rewriter`` after a delay: ``X-Slow-Seconds`` header, ``?delay_s=`` query or the
                           server's ``--slow-seconds`` (at most 60 s); it stops early if the client goes away
``chat``                   a short deterministic plain-text answer echoing the last user message
``tool-caller``            native function calling: a request carrying ``tools`` gets one ``tool_calls`` entry for the
                           first tool with arguments ``{"request": <last user message>}``; once a ``tool`` message
                           answers it, a short plain-text reply quoting that result

The request is the text between ``<<<REQUEST`` and ``REQUEST>>>`` in the latest user message that has them
(the format of ``alch3mist.prompting.llm``), else the whole last user message.

Test helpers: ``GET /_requests`` lists the recorded chat requests (method, path, auth header present, body);
``POST /_reset`` forgets them and the ``rewriter-invalid-once`` memory.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from alch3mist.errors import InvalidRequest
from alch3mist.prompting.llm import REQUEST_CLOSE, REQUEST_OPEN
from alch3mist.prompting.offline import rewrite_offline
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

logger = logging.getLogger("llm_server")

MODELS = (
    "rewriter",
    "no-json-mode",
    "rewriter-invalid-once",
    "garbage",
    "wrong-schema",
    "messy",
    "slow",
    "chat",
    "tool-caller",
)
MAX_SLOW_SECONDS = 60.0
INVALID_JSON = '{"subject": "a cow", "materials": ["gold"], "base_prompt": "A single cow'  # cut short
GARBAGE = "Sure! Here is a lovely poem about materials instead of JSON: gold is bold, clay is grey."

MESSY: dict[str, Any] = {
    "subject": "<b>a **cow**</b>",
    "materials": "gold",
    "base_prompt": "# A single cow, " + "plain light background, " * 40,
    "edit_prompt": "turn it into <script>alert(1)</script> **polished gold** [link](http://x.io/) " + "shiny " * 99,
    "title": "A " + "very " * 40 + "golden cow",
    "language": "Spanish!",
}


@dataclass
class ServerState:
    api_key: str | None = None
    slow_seconds: float = 5.0
    requests: list[dict[str, Any]] = field(default_factory=list)
    seen_invalid_once: set[str] = field(default_factory=set)
    counter: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    lock: threading.Lock = field(default_factory=threading.Lock)


def create_app(api_key: str | None = None, slow_seconds: float = 5.0) -> FastAPI:
    """The app; each call has its own state (recorded requests, invalid-once memory)."""
    state = ServerState(api_key=api_key, slow_seconds=min(slow_seconds, MAX_SLOW_SECONDS))
    # The "rewriter" models answer with the offline rewriter: load its language resources before the first request
    # (seconds on a busy machine), not inside a client's timeout.
    for request in ("a cow made of gold", "una vaca con piel de cocodrilo", "une vache en or"):
        rewrite_offline(request)
    app = FastAPI(title="alch3mist test LLM server", docs_url=None, redoc_url=None)

    @app.get("/v1/models", response_model=None)
    async def list_models(request: Request) -> JSONResponse:
        if (denied := _check_auth(state, request)) is not None:
            return denied
        data = [{"id": m, "object": "model", "created": 1700000000, "owned_by": "alch3mist-tests"} for m in MODELS]
        return JSONResponse({"object": "list", "data": data})

    @app.post("/v1/chat/completions", response_model=None)
    async def create_chat_completion(request: Request) -> JSONResponse | StreamingResponse:
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "We could not parse the JSON body of your request.", "invalid_request_error")
        with state.lock:
            state.requests.append(
                {
                    "method": "POST",
                    "path": request.url.path,
                    "authorization": request.headers.get("authorization"),
                    "body": body,
                }
            )
        if (denied := _check_auth(state, request)) is not None:
            return denied
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list) or not body["messages"]:
            return _error(400, "'messages' must be a non-empty array.", "invalid_request_error", param="messages")
        model = body.get("model")
        if model not in MODELS:
            return _error(404, f"The model `{model}` does not exist.", "invalid_request_error", "model_not_found")
        if model == "no-json-mode" and "response_format" in body:
            return _error(
                400, "response_format is not supported by this model", "invalid_request_error", None, "response_format"
            )
        if model == "slow" and await _sleep_unless_gone(request, _delay(state, request)):
            return _error(499, "client closed the request", "client_closed")
        completion_id = f"chatcmpl-test{next(state.counter):06d}"
        tool_call = _tool_call(completion_id, body) if model == "tool-caller" else None
        content = "" if tool_call else _answer(state, model, body["messages"])
        if body.get("stream"):
            usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return StreamingResponse(
                _chunks(completion_id, model, content, body["messages"], usage, tool_call),
                media_type="text/event-stream",
            )
        return JSONResponse(_completion(completion_id, model, content, body["messages"], tool_call))

    @app.get("/_requests")
    async def recorded_requests() -> list[dict[str, Any]]:
        with state.lock:
            return list(state.requests)

    @app.post("/_reset")
    async def reset() -> dict[str, bool]:
        with state.lock:
            state.requests.clear()
            state.seen_invalid_once.clear()
        return {"ok": True}

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


# --- behaviour -----------------------------------------------------------------------------------------------------


def _answer(state: ServerState, model: str, messages: list[Any]) -> str:
    if model == "chat":
        return f"You said: {_last_user_text(messages)[:500]}"
    if model == "tool-caller":
        results = [_text_of(m) for m in messages if isinstance(m, dict) and m.get("role") == "tool"]
        return f"The tool answered: {results[-1][:300]}" if results else f"You said: {_last_user_text(messages)[:500]}"
    if model == "garbage":
        return GARBAGE
    if model == "wrong-schema":
        return json.dumps({"poem": "gold is bold", "mood": "cheerful"})
    if model == "messy":
        return "```json\n" + json.dumps(MESSY) + "\n```"
    request = extract_request(messages)
    if model == "rewriter-invalid-once":
        with state.lock:
            first_time = request not in state.seen_invalid_once
            state.seen_invalid_once.add(request)
        if first_time:
            return INVALID_JSON
    return _material_prompt_json(request)


def _material_prompt_json(request: str) -> str:
    try:
        prompt = rewrite_offline(request)
    except InvalidRequest as exc:  # an empty request: answer like a model that has nothing to work with
        return json.dumps({"error": exc.message})
    return json.dumps(prompt.model_dump(exclude={"rewriter"}), ensure_ascii=False)


def _tool_call(completion_id: str, body: dict[str, Any]) -> dict[str, Any] | None:
    """The call a tool-calling model makes: the first offered tool, unless a tool already answered this turn."""
    tools = body.get("tools") or []
    messages = body["messages"]
    last_user = max((i for i, m in enumerate(messages) if _is_user(m)), default=-1)
    answered = any(isinstance(m, dict) and m.get("role") == "tool" for m in messages[last_user + 1 :])
    if not tools or answered:
        return None
    name = tools[0].get("function", {}).get("name", "")
    arguments = json.dumps({"request": _last_user_text(messages)}, ensure_ascii=False)
    return {"id": f"call_{completion_id[-6:]}", "type": "function", "function": {"name": name, "arguments": arguments}}


def extract_request(messages: list[Any]) -> str:
    """The text between the request markers in the latest user message that has them, else the last user text."""
    for message in reversed(messages):
        text = _text_of(message) if _is_user(message) else ""
        if REQUEST_OPEN in text and REQUEST_CLOSE in text:
            return text.split(REQUEST_OPEN, 1)[1].split(REQUEST_CLOSE, 1)[0].strip()
    return _last_user_text(messages)


def _last_user_text(messages: list[Any]) -> str:
    return next((_text_of(m) for m in reversed(messages) if _is_user(m)), "")


def _is_user(message: Any) -> bool:
    return isinstance(message, dict) and message.get("role") == "user"


def _text_of(message: dict[str, Any]) -> str:
    """Message content as text: a string, or the text parts of an array (OpenAI's multi-part format)."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def _delay(state: ServerState, request: Request) -> float:
    raw = request.headers.get("x-slow-seconds") or request.query_params.get("delay_s")
    try:
        seconds = float(raw) if raw is not None else state.slow_seconds
    except ValueError:
        seconds = state.slow_seconds
    return max(0.0, min(seconds, MAX_SLOW_SECONDS))


async def _sleep_unless_gone(request: Request, seconds: float) -> bool:
    """Sleep ``seconds``; True when the client disconnected meanwhile."""
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        await asyncio.sleep(min(0.05, left))
        if await request.is_disconnected():
            return True
    return False


def _check_auth(state: ServerState, request: Request) -> JSONResponse | None:
    if state.api_key and request.headers.get("authorization") != f"Bearer {state.api_key}":
        return _error(401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key")
    return None


# --- OpenAI wire format --------------------------------------------------------------------------------------------


def _error(status: int, message: str, kind: str, code: str | None = None, param: str | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "param": param, "code": code}}, status)


def _tokens(text: str) -> int:
    return max(1, len(text.split()))


def _usage(messages: list[Any], content: str) -> dict[str, int]:
    prompt = sum(_tokens(_text_of(m)) for m in messages if isinstance(m, dict))
    completion = _tokens(content)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _completion(
    completion_id: str, model: str, content: str, messages: list[Any], tool_call: dict[str, Any] | None = None
) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
    if tool_call is not None:
        message.update(content=None, tool_calls=[tool_call])
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": "fp_alch3mist_test",
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": "tool_calls" if tool_call else "stop",
            }
        ],
        "usage": _usage(messages, content),
    }


async def _chunks(
    completion_id: str,
    model: str,
    content: str,
    messages: list[Any],
    include_usage: bool,
    tool_call: dict[str, Any] | None = None,
) -> AsyncIterator[str]:
    created = int(time.time())

    def chunk(delta: dict[str, Any], finish: str | None, usage: dict[str, int] | None = None) -> str:
        choices = [] if usage else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
        payload: dict[str, Any] = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": "fp_alch3mist_test",
            "choices": choices,
        }
        if include_usage:
            payload["usage"] = usage
        return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"

    if tool_call is not None:  # name first, then the arguments, as OpenAI streams a call
        head = {**tool_call, "index": 0, "function": {"name": tool_call["function"]["name"], "arguments": ""}}
        yield chunk({"role": "assistant", "content": None, "tool_calls": [head]}, None)
        arguments = {"index": 0, "function": {"arguments": tool_call["function"]["arguments"]}}
        yield chunk({"tool_calls": [arguments]}, None)
        yield chunk({}, "tool_calls")
    else:
        yield chunk({"role": "assistant", "content": "", "refusal": None}, None)
        for piece in _pieces(content):
            yield chunk({"content": piece}, None)
            await asyncio.sleep(0)
        yield chunk({}, "stop")
    if include_usage:
        yield chunk({}, None, _usage(messages, content))
    yield "data: [DONE]\n\n"


def _pieces(content: str, size: int = 24) -> list[str]:
    """The content in a few chunks (at spaces where possible), joined back exactly by the client."""
    pieces, start = [], 0
    while start < len(content):
        end = min(len(content), start + size)
        space = content.rfind(" ", start + 1, end) if end < len(content) else -1
        end = space if space > start else end
        pieces.append(content[start:end])
        start = end
    return pieces


# --- running it ----------------------------------------------------------------------------------------------------


@dataclass
class RunningServer:
    host: str
    port: int

    @property
    def base_url(self) -> str:
        """Root of the server, e.g. http://127.0.0.1:8001."""
        return f"http://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """The OpenAI base URL (what clients call ``base_url``), e.g. http://127.0.0.1:8001/v1."""
        return f"{self.base_url}/v1"


@contextmanager
def running_llm_server(api_key: str | None = None, slow_seconds: float = 5.0) -> Iterator[RunningServer]:
    """Serve the app on a free port of 127.0.0.1 in a background thread for the duration of the block."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        create_app(api_key, slow_seconds), log_level="warning", lifespan="off", timeout_graceful_shutdown=1
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=f"llm-server-{port}", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test LLM server did not start")
            time.sleep(0.01)
        yield RunningServer("127.0.0.1", port)
    finally:
        server.should_exit = True
        thread.join(timeout=5)
        sock.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="OpenAI-compatible test LLM server (see the module docstring).")
    parser.add_argument("--host", default="127.0.0.1", help="Interface to listen on.")
    parser.add_argument("--port", type=int, default=8001, help="Port to listen on.")
    parser.add_argument("--api-key", default=None, help="Require 'Authorization: Bearer KEY' (default: no auth).")
    parser.add_argument("--slow-seconds", type=float, default=5.0, help="Default delay of the 'slow' model.")
    args = parser.parse_args(argv)
    uvicorn.run(create_app(args.api_key, args.slow_seconds), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
