"""A small client for ComfyUI's HTTP + websocket API, as ``script_examples/websockets_api_example.py`` uses it.

One run: open ``/ws?clientId=<ours>`` → ``POST /prompt`` with our ``client_id`` and ``prompt_id`` → read the socket
(``progress`` of the sampler → our stage progress; ``execution_error`` → ``ComfyUIError`` naming the node;
``executing`` with ``node: null`` → done, and by then ``/history`` holds the result: ComfyUI's ``prompt_worker``
writes the history before it sends that message) → ``GET /history/{prompt_id}`` → ``GET /view`` for each file.
Cancel: ``POST /queue {"delete": [id]}`` (still queued) and ``POST /interrupt {"prompt_id": id}`` (running).
A validation failure is ``POST /prompt``'s 400 with ``node_errors``, turned into one sentence per node.
"""

from __future__ import annotations

import io
import json
import logging
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from PIL import Image, UnidentifiedImageError

from ..errors import Cancelled, ComfyUIError, ComfyUIUnavailable
from ..stages.progress import StageControl

__all__ = ["ComfyUIClient", "OutputFile", "RunResult"]

logger = logging.getLogger(__name__)

POLL_S = 0.25  # how often a waiting run looks at the cancel flag
CANCEL_GRACE_S = 15.0  # how long a cancelled run waits for ComfyUI to confirm before giving up on it


@dataclass(frozen=True)
class OutputFile:
    """A file an output node wrote: what ``/view`` takes (``filename``, ``subfolder``, ``type``)."""

    filename: str
    subfolder: str
    type: str


@dataclass(frozen=True)
class RunResult:
    """A finished prompt: its id and, per output node, the files it wrote (``images``, ``3d``, …)."""

    prompt_id: str
    outputs: dict[str, dict[str, list[OutputFile]]]

    def files(self, node_id: str, kind: str = "images") -> list[OutputFile]:
        return self.outputs.get(node_id, {}).get(kind, [])


class ComfyUIClient:
    """Talks to one ComfyUI server. Thread-safe for one run at a time per instance (one GPU, one job)."""

    def __init__(self, url: str, timeout_s: float = 600.0, http_timeout_s: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self.http_timeout_s = http_timeout_s
        self.client_id = uuid.uuid4().hex
        self._http = httpx.Client(base_url=self.url, timeout=http_timeout_s, follow_redirects=False)

    # ---------------------------------------------------------------------------------------------- plain routes

    def object_info(self, node_class: str | None = None) -> dict[str, Any]:
        """``GET /object_info`` (every node class) or ``/object_info/{class}`` (``{}`` when it is unknown)."""
        path = "/object_info" if node_class is None else f"/object_info/{node_class}"
        data = self._json("GET", path)
        if not isinstance(data, dict):
            raise ComfyUIError(self.url, f"{path} answered {type(data).__name__}, not a JSON object")
        return data

    def system_stats(self) -> dict[str, Any]:
        data = self._json("GET", "/system_stats")
        return data if isinstance(data, dict) else {}

    def upload_image(self, image: Image.Image, name: str, subfolder: str = "alch3mist") -> str:
        """``POST /upload/image`` into the input folder; returns the name LoadImage's ``image`` takes."""
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, format="PNG")
        files = {"image": (name, buffer.getvalue(), "image/png")}
        data = self._json("POST", "/upload/image", files=files, data={"type": "input", "subfolder": subfolder})
        if not isinstance(data, dict) or not isinstance(data.get("name"), str):
            raise ComfyUIError(self.url, f"/upload/image answered {data!r}, not {{name, subfolder, type}}")
        folder = str(data.get("subfolder") or "")
        return f"{folder}/{data['name']}" if folder else str(data["name"])

    def view(self, file: OutputFile) -> bytes:
        """``GET /view?filename&subfolder&type``: the bytes of a file an output node wrote."""
        params = {"filename": file.filename, "subfolder": file.subfolder, "type": file.type}
        response = self._request("GET", "/view", params=params)
        if response.status_code != 200:
            raise ComfyUIError(self.url, f"/view of {file.filename!r} answered HTTP {response.status_code}")
        return response.content

    def view_image(self, file: OutputFile) -> Image.Image:
        try:
            with Image.open(io.BytesIO(self.view(file))) as handle:
                handle.load()
                return handle.convert("RGB")
        except (UnidentifiedImageError, OSError) as error:
            raise ComfyUIError(self.url, f"{file.filename!r} is not a readable image: {error}") from error

    def interrupt(self, prompt_id: str) -> None:
        """Take ``prompt_id`` out of the queue if it waits there, and stop it if it runs."""
        self._request("POST", "/queue", json={"delete": [prompt_id]})
        self._request("POST", "/interrupt", json={"prompt_id": prompt_id})

    # ---------------------------------------------------------------------------------------------- one run

    def run(self, prompt: dict[str, Any], control: StageControl, label: str, progress_node: str) -> RunResult:
        """Queue ``prompt`` (API format), follow it on the websocket, and return what its output nodes wrote.

        ``progress`` messages of ``progress_node`` (the sampler) become ``control.report(value / max)``; a cancel
        interrupts it on the server and raises ``Cancelled``; past ``timeout_s`` it is interrupted and fails.
        """
        with self._socket() as socket:
            # 1. Queue it; a graph the server cannot run comes back at once with node_errors
            prompt_id = self._queue(prompt, str(uuid.uuid4()))
            # 2. Follow it until ComfyUI says it is done (executing, node null), reporting the sampler's steps
            self._follow(socket, prompt, prompt_id, control, label, progress_node)
        # 3. The history holds what the output nodes wrote
        return self._result(prompt_id)

    def _queue(self, prompt: dict[str, Any], prompt_id: str) -> str:
        """Queue under our ``prompt_id``; returns the id the server answers with (older servers pick their own)."""
        body = {"prompt": prompt, "client_id": self.client_id, "prompt_id": prompt_id}
        response = self._request("POST", "/prompt", json=body)
        data = _json_body(response)
        if response.status_code == 200 and isinstance(data, dict) and not data.get("node_errors"):
            return str(data.get("prompt_id") or prompt_id)
        raise ComfyUIError(self.url, f"the workflow was refused: {describe_prompt_error(data, prompt)}")

    def _follow(
        self, socket: Any, prompt: dict[str, Any], prompt_id: str, control: StageControl, label: str, node: str
    ) -> None:
        from websockets.exceptions import ConnectionClosed

        deadline = time.monotonic() + self.timeout_s
        while True:
            if control.cancel.is_set():
                self._cancel(socket, prompt_id)
            if time.monotonic() > deadline:
                self.interrupt(prompt_id)
                raise ComfyUIUnavailable(self.url, f"the workflow took longer than {self.timeout_s:.0f} s; interrupted")
            try:
                raw = socket.recv(timeout=POLL_S)
            except TimeoutError:
                continue
            except ConnectionClosed as error:
                raise ComfyUIUnavailable(self.url, f"the websocket closed while the workflow ran: {error}") from error
            message = _message(raw)
            if message is None or message.get("prompt_id") not in (prompt_id, None):
                continue
            kind, data = message["type"], message["data"]
            if kind == "progress" and str(data.get("node")) == node and data.get("max"):
                value, total = int(data["value"]), int(data["max"])
                control.report(value / total, f"{label} {value}/{total}")
            elif kind == "execution_error":
                raise ComfyUIError(self.url, describe_execution_error(data, prompt))
            elif kind == "execution_interrupted":
                where = data.get("node_id")
                raise ComfyUIError(self.url, f"the workflow was interrupted on the server (at node {where})")
            elif kind == "executing" and data.get("node") is None and data.get("prompt_id") == prompt_id:
                return

    def _cancel(self, socket: Any, prompt_id: str) -> None:
        """Interrupt ``prompt_id`` and wait (briefly) until ComfyUI has let go of it, then raise ``Cancelled``."""
        self.interrupt(prompt_id)
        deadline = time.monotonic() + CANCEL_GRACE_S
        while time.monotonic() < deadline:
            try:
                message = _message(socket.recv(timeout=POLL_S))
            except TimeoutError:
                if not self._is_queued_or_running(prompt_id):
                    break
                continue
            except Exception:  # noqa: BLE001 - a socket that dies here changes nothing: the job is cancelled anyway
                break
            if (
                message
                and message["data"].get("prompt_id") == prompt_id
                and (
                    message["type"] == "execution_interrupted"
                    or (message["type"] == "executing" and message["data"].get("node") is None)
                )
            ):
                break
        raise Cancelled("job cancelled")

    def _is_queued_or_running(self, prompt_id: str) -> bool:
        queue = self._json("GET", "/queue")
        items = [*queue.get("queue_running", []), *queue.get("queue_pending", [])] if isinstance(queue, dict) else []
        return any(isinstance(item, list) and len(item) > 1 and item[1] == prompt_id for item in items)

    def _result(self, prompt_id: str) -> RunResult:
        history = self._json("GET", f"/history/{prompt_id}")
        entry = history.get(prompt_id) if isinstance(history, dict) else None
        if not isinstance(entry, dict):
            raise ComfyUIError(self.url, f"/history has no entry for prompt {prompt_id} after it finished")
        status = entry.get("status") or {}
        if status.get("status_str") not in (None, "success"):
            raise ComfyUIError(self.url, f"prompt {prompt_id} ended with status {status.get('status_str')!r}")
        outputs: dict[str, dict[str, list[OutputFile]]] = {}
        for node_id, produced in (entry.get("outputs") or {}).items():
            outputs[str(node_id)] = {
                kind: [OutputFile(str(f["filename"]), str(f.get("subfolder", "")), str(f.get("type", "output")))
                       for f in files if isinstance(f, dict) and "filename" in f]
                for kind, files in produced.items()
                if isinstance(files, list)
            }  # fmt: skip
        return RunResult(prompt_id, outputs)

    # ---------------------------------------------------------------------------------------------- plumbing

    @contextmanager
    def _socket(self) -> Iterator[Any]:
        from websockets.exceptions import InvalidHandshake, InvalidURI
        from websockets.sync.client import connect

        ws_url = "ws" + self.url.removeprefix("http") + f"/ws?clientId={self.client_id}"
        try:
            connection = connect(ws_url, open_timeout=self.http_timeout_s, max_size=None)
        except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as error:
            raise ComfyUIUnavailable(self.url, f"cannot open its websocket /ws: {error}") from error
        with connection as socket:
            yield socket

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._http.request(method, path, **kwargs)
        except httpx.TimeoutException as error:
            message = f"{method} {path} timed out after {self.http_timeout_s:.0f} s"
            raise ComfyUIUnavailable(self.url, message) from error
        except httpx.HTTPError as error:
            raise ComfyUIUnavailable(self.url, f"{method} {path} failed: {error}") from error

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._request(method, path, **kwargs)
        if response.status_code != 200:
            raise ComfyUIError(self.url, f"{method} {path} answered HTTP {response.status_code}: {response.text[:300]}")
        data = _json_body(response)
        if data is None:
            raise ComfyUIError(self.url, f"{method} {path} did not answer JSON: {response.text[:200]!r}")
        return data


def describe_prompt_error(data: Any, prompt: dict[str, Any]) -> str:
    """``POST /prompt``'s 400 body (execution.py ``validate_prompt``) as one readable sentence per failing node."""
    if not isinstance(data, dict):
        return f"unexpected answer {data!r}"
    parts = []
    for node_id, entry in (data.get("node_errors") or {}).items():
        reasons = "; ".join(f"{e.get('message')}: {e.get('details')}" for e in entry.get("errors", []))
        parts.append(f"node {node_id} ({entry.get('class_type') or _class_of(prompt, node_id)}): {reasons}")
    if not parts and isinstance(data.get("error"), dict):
        error = data["error"]
        parts.append(f"{error.get('message')}" + (f" ({error['details']})" if error.get("details") else ""))
    return "; ".join(parts) or "no reason given"


def describe_execution_error(data: dict[str, Any], prompt: dict[str, Any]) -> str:
    node_id = str(data.get("node_id"))
    node_type = data.get("node_type") or _class_of(prompt, node_id)
    message = str(data.get("exception_message", "")).strip()
    return f"node {node_id} ({node_type}) failed: {data.get('exception_type', 'error')}: {message}"


def _class_of(prompt: dict[str, Any], node_id: str) -> str:
    node = prompt.get(node_id)
    return str(node.get("class_type")) if isinstance(node, dict) else "?"


def _message(raw: Any) -> dict[str, Any] | None:
    """A JSON message ``{type, data}`` (with ``prompt_id`` lifted out of data), or None for previews/other."""
    if not isinstance(raw, str):
        return None  # binary frames are latent previews
    try:
        message = json.loads(raw)
    except json.JSONDecodeError:
        return None
    if not isinstance(message, dict) or not isinstance(message.get("data"), dict):
        return None
    return {"type": message.get("type"), "data": message["data"], "prompt_id": message["data"].get("prompt_id")}


def _json_body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
