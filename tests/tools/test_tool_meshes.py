"""The tool with a mesh: ``mesh_url`` fetched SSRF-safely (http(s) only, no loopback / private / link-local address
after DNS, none reached by a redirect either, a size cap and a timeout) from a real HTTP server, or a mesh attached to
the chat (the file-store stand-in of tests/pipelines), retextured by a real backend process."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import trimesh
from fastapi.responses import HTMLResponse

from tests.integration.conftest import BackendProcess
from tests.pipelines.conftest import Events
from tests.pipelines.openwebui_files import install
from tests.tools.test_tool_standalone import MODULE, make

BOX = bytes(trimesh.creation.box(extents=(1.0, 0.5, 0.5)).export(file_type="glb"))
BIG = 2 * 2**20 + 1


class MeshFiles(BaseHTTPRequestHandler):
    """/box.glb, a redirect to it through ``localhost``, files over 1 MB (with and without a length) and a slow one."""

    def do_GET(self) -> None:
        port = self.server.server_port  # type: ignore[attr-defined]
        if self.path == "/box.glb":
            self._send(200, BOX)
        elif self.path == "/via-localhost":
            self._send(302, b"", {"Location": f"http://localhost:{port}/box.glb"})
        elif self.path == "/relative":
            self._send(302, b"", {"Location": "/box.glb"})
        elif self.path == "/big.glb":
            self._send(200, bytes(BIG))
        elif self.path == "/endless.glb":  # no Content-Length: the cap must hold while reading
            self.send_response(200)
            self.end_headers()
            for _ in range(BIG // 65536 + 2):
                self.wfile.write(bytes(65536))
        elif self.path == "/slow.glb":
            time.sleep(3)
            self._send(200, BOX)
        else:
            self._send(404, b"no")

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def files_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), MeshFiles)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def call(tools: Any, request: str, events: Events | None = None, **kwargs: Any) -> Any:
    user = {"id": "u1", "valves": MODULE.Tools.UserValves()}
    coroutine = tools.generate_3d_asset(request, seed=7, __user__=user, __event_emitter__=events, **kwargs)
    return asyncio.run(coroutine)


def fetch(url: str, allowed: frozenset[str] = frozenset(), max_bytes: int = 2**20) -> Any:
    return asyncio.run(MODULE.fetch_mesh(url, max_bytes, set(allowed)))


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("file:///etc/passwd", "must be an http:// or https:// link"),
        ("ftp://example.com/a.glb", "must be an http:// or https:// link"),
        ("http:///a.glb", "must be an http:// or https:// link"),
        ("http://user:secret@example.com/a.glb", "must not carry a user name or password"),
        ("http://127.0.0.1/a.glb", "127.0.0.1 is a local or private address"),
        ("http://localhost:8080/a.glb", "localhost is a local or private address"),
        ("http://[::1]/a.glb", "is a local or private address (::1)"),
        ("http://[::ffff:127.0.0.1]/a.glb", "is a local or private address"),
        ("http://0.0.0.0/a.glb", "is a local or private address"),
        ("http://10.1.2.3/a.glb", "is a local or private address (10.1.2.3)"),
        ("http://192.168.1.1/a.glb", "is a local or private address"),
        ("http://169.254.169.254/latest/meta-data/", "is a local or private address (169.254.169.254)"),
        ("http://2130706433/a.glb", "is a local or private address (127.0.0.1)"),  # 127.0.0.1 as one number
        ("http://no-such-host.invalid/a.glb", "cannot be resolved"),
    ],
)
def test_links_that_are_not_public_http_are_refused_before_connecting(url: str, says: str) -> None:
    with pytest.raises(MODULE.MeshUnavailable) as refused:
        fetch(url)
    assert says in str(refused.value)


def test_an_allowed_host_is_fetched_and_redirects_are_checked_again(files_server: str) -> None:
    assert fetch(f"{files_server}/box.glb", frozenset({"127.0.0.1"})) == (BOX, "box.glb")
    assert fetch(f"{files_server}/relative", frozenset({"127.0.0.1"})) == (BOX, "box.glb")
    with pytest.raises(MODULE.MeshUnavailable) as refused:  # 127.0.0.1 is allowed; localhost, reached by redirect, not
        fetch(f"{files_server}/via-localhost", frozenset({"127.0.0.1"}))
    assert "localhost is a local or private address" in str(refused.value)


@pytest.mark.parametrize("path", ["/big.glb", "/endless.glb"])
def test_a_file_over_the_cap_is_cut_off(files_server: str, path: str) -> None:
    with pytest.raises(MODULE.MeshUnavailable) as refused:
        fetch(f"{files_server}{path}", frozenset({"127.0.0.1"}))
    assert "larger than 1 MB" in str(refused.value)


def test_a_slow_link_times_out_and_nothing_is_made(e2e_backend: BackendProcess, files_server: str) -> None:
    tools = make(e2e_backend, MESH_URL_ALLOWED_HOSTS="127.0.0.1", MESH_URL_TIMEOUT=1.0)
    started = time.monotonic()
    answer = call(tools, "make it gold", mesh_url=f"{files_server}/slow.glb")
    assert time.monotonic() - started < 2.5
    assert answer.startswith("The mesh could not be used: mesh_url did not download within 1 s"), answer


def test_a_private_link_is_refused_to_the_model(e2e_backend: BackendProcess) -> None:
    answer = call(make(e2e_backend), "make it gold", mesh_url="http://169.254.169.254/latest/meta-data/")
    assert "is a local or private address" in answer and "Nothing was made" in answer
    with e2e_backend.client(user="u1") as client:
        assert not [j for j in client.get("/v1/jobs").json()["jobs"] if j["status"] in ("queued", "running")]


def test_a_mesh_url_is_retextured(e2e_backend: BackendProcess, files_server: str) -> None:
    events = Events()
    tools = make(e2e_backend, MESH_URL_ALLOWED_HOSTS="127.0.0.1")
    result = call(tools, "make it crocodile leather", events, mesh_url=f"{files_server}/box.glb")
    assert isinstance(result, tuple), result
    page, context = result
    assert isinstance(page, HTMLResponse) and b"model-viewer" in page.body
    info = json.loads(context)
    assert info["status"] == "succeeded" and info["textured_a_given_mesh"] is True
    statuses = [e["description"] for e in events.of("status")]
    assert statuses[0] == "Downloading the mesh…" and any(s.startswith("Texturing the mesh") for s in statuses)
    with e2e_backend.client(user="u1") as client:
        job = client.get(f"/v1/jobs/{info['job_id']}").json()
    assert job["manifest"]["flow"] == "retexture" and job["manifest"]["input_mesh"]["format"] == "glb"


def test_an_attached_mesh_is_retextured(
    e2e_backend: BackendProcess, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    store = install(monkeypatch, tmp_path)
    files = [store.attach("u1", "notes.txt", b"text"), store.attach("u1", "vase.obj", _vase_obj())]
    result = call(make(e2e_backend), "make it blue porcelain", __files__=files)
    assert isinstance(result, tuple), result
    info = json.loads(result[1])
    with e2e_backend.client(user="u1") as client:
        job = client.get(f"/v1/jobs/{info['job_id']}").json()
    assert job["manifest"]["flow"] == "retexture" and job["manifest"]["input_mesh"]["format"] == "obj"

    theirs = [store.attach("someone-else", "theirs.glb", BOX)]
    answer = call(make(e2e_backend), "make it gold", __files__=theirs)
    assert "the attached theirs.glb is not in this user's files" in answer


def _vase_obj() -> bytes:
    return str(trimesh.creation.cylinder(radius=0.3, height=1.0, sections=16).export(file_type="obj")).encode()
