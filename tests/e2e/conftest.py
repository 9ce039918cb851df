"""The real thing, end to end: Open WebUI 0.12.4 in its own venv, the backend (tiny preset, preview engine) and the
test LLM server, each a real server on a free port of 127.0.0.1; the Alch3mist pipe and tool are installed,
activated and configured through Open WebUI's HTTP API exactly as an admin would.

Open WebUI's venv comes from ``scripts/openwebui-venv.sh`` (``make test-deps``); without it these tests FAIL with
that instruction, they are not skipped. Server logs land in the pytest tmp dir and are printed on failure.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.conftest import API_KEYS, BackendProcess, free_port, wait_until_healthy
from tests.servers.llm_server import RunningServer, running_llm_server

REPO_ROOT = Path(__file__).resolve().parents[2]
OWUI_VENV = Path(os.environ.get("OPENWEBUI_VENV", REPO_ROOT / ".cache" / "openwebui-venv"))
ARTIFACTS_DIR = REPO_ROOT / "test-artifacts" / "e2e"
ADMIN = {"name": "Admin", "email": "admin@example.com", "password": "alch3mist-e2e-admin"}
OWUI_STARTUP_S = 420.0
BACKEND_KEY = API_KEYS["webui"]
# Jobs run with a fixed seed (each user's UserValves), so results and timings are reproducible.
E2E_SEED = 7
# The tiny preset at its smallest useful sizes, so a whole chain takes seconds on a CPU.
FAST_VALVES: dict[str, Any] = {
    "DEFAULT_STEPS": 2,
    "DEFAULT_EDIT_STEPS": 2,
    "DEFAULT_SIZE": 64,
    "DEFAULT_TEXTURE_SIZE": 256,
    "DEFAULT_VIEWS": 2,
    "DEFAULT_VIEW_SIZE": 64,
    "DEFAULT_ENGINE_3D": "preview",
}


def _load_installer() -> Any:
    spec = importlib.util.spec_from_file_location("openwebui_install", REPO_ROOT / "scripts" / "openwebui_install.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


installer = _load_installer()


class OpenWebUI:
    """``open-webui serve`` on a free port with a fresh data dir; the LLM server is its OpenAI connection."""

    def __init__(self, root: Path, llm_url: str) -> None:
        self.root = root
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = root / "openwebui.log"
        self.llm_url = llm_url
        self.process: subprocess.Popen[bytes] | None = None
        self.token = ""

    def start(self) -> OpenWebUI:
        executable = OWUI_VENV / "bin" / "open-webui"
        if not executable.exists():
            pytest.fail(f"Open WebUI is not installed at {OWUI_VENV}: run `bash scripts/openwebui-venv.sh`")
        data = self.root / "data"
        data.mkdir(parents=True, exist_ok=True)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.root),
            "DATA_DIR": str(data),
            "WEBUI_SECRET_KEY": "alch3mist-e2e-secret",
            "WEBUI_AUTH": "True",
            "ENABLE_SIGNUP": "True",
            "ENABLE_OLLAMA_API": "False",
            "ENABLE_OPENAI_API": "True",
            "OPENAI_API_BASE_URL": self.llm_url,
            "OPENAI_API_KEY": "e2e-llm-key",
            "OFFLINE_MODE": "True",
            "HF_HUB_OFFLINE": "1",
            "ENABLE_VERSION_UPDATE_CHECK": "False",
            "ANONYMIZED_TELEMETRY": "False",
            "DO_NOT_TRACK": "True",
            "SCARF_NO_ANALYTICS": "True",
            "OMP_NUM_THREADS": "1",
        }
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [str(executable), "serve", "--host", "127.0.0.1", "--port", str(self.port)],
                cwd=data,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_until_healthy(self.process, f"{self.base_url}/health", "Open WebUI", OWUI_STARTUP_S, 1.0, self.log_tail)
        self.token = installer.sign_in(self.base_url, ADMIN["email"], ADMIN["password"], ADMIN["name"])
        return self

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def log_tail(self, lines: int = 80) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def client(self, token: str | None = None) -> httpx.Client:
        return httpx.Client(
            base_url=self.base_url, headers={"Authorization": f"Bearer {token or self.token}"}, timeout=300
        )

    def user_id(self, token: str | None = None) -> str:
        """Open WebUI's id of the signed-in user (what the plugins send the backend, never the e-mail)."""
        with self.client(token) as client:
            return str(client.get("/api/v1/auths/").json()["id"])

    def set_user_seed(self, token: str, seed: int = E2E_SEED, function_id: str = "alch3mist") -> None:
        """Fix a user's seed (UserValves, kept per function) for the pipe: see E2E_SEED."""
        with self.client(token) as client:
            response = client.post(f"/api/v1/functions/id/{function_id}/valves/user/update", json={"seed": seed})
            assert response.status_code == 200, response.text

    # -- chats, the way the web UI drives them -------------------------------------------------------------------

    def chat(
        self,
        model: str,
        text: str,
        chat_id: str | None = None,
        parent_id: str | None = None,
        history: list[dict[str, Any]] | None = None,
        files: list[dict[str, Any]] | None = None,
        token: str | None = None,
        tool_ids: list[str] | None = None,
        timeout: float = 600.0,
    ) -> tuple[str, str, dict[str, Any]]:
        """Send ``text`` in a (new or existing) saved chat as the web UI does; wait until the answer is done.

        Returns (chat_id, assistant message id, the stored assistant message).
        """
        user_id, assistant_id = str(uuid.uuid4()), str(uuid.uuid4())
        user_message: dict[str, Any] = {
            "id": user_id,
            "parentId": parent_id,
            "childrenIds": [],
            "role": "user",
            "content": text,
            "models": [model],
            "timestamp": int(time.time()),
        }
        if files:
            user_message["files"] = files
        body: dict[str, Any] = {
            "model": model,
            "stream": True,
            "messages": [*(history or []), {"role": "user", "content": text}],
            "user_message": user_message,
            "id": assistant_id,
            "session_id": f"e2e-{uuid.uuid4().hex[:8]}",
            "background_tasks": {},
        }
        if files:
            body["files"] = files
        if tool_ids:
            body["tool_ids"] = tool_ids
            body["params"] = {"function_calling": "native"}
        if chat_id:
            body["chat_id"] = chat_id
            body["parent_id"] = parent_id
        else:
            body["parent_id"] = None
        with self.client(token) as client:
            response = client.post("/api/chat/completions", json=body)
            assert response.status_code == 200, response.text
            answer = response.json()
            chat_id = answer.get("chat_id") or chat_id
            assert chat_id, answer
            message = self.wait_message(client, chat_id, assistant_id, timeout)
        return chat_id, assistant_id, message

    @staticmethod
    def wait_message(client: httpx.Client, chat_id: str, message_id: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        message: dict[str, Any] = {}
        while time.monotonic() < deadline:
            chat = client.get(f"/api/v1/chats/{chat_id}").json()
            message = ((chat.get("chat") or {}).get("history") or {}).get("messages", {}).get(message_id) or {}
            if message.get("done"):
                return message
            time.sleep(1.0)
        raise AssertionError(f"the answer was not done within {timeout} s: {message}")


@pytest.fixture(scope="session")
def llm() -> Iterator[RunningServer]:
    with running_llm_server(slow_seconds=5.0) as server:
        yield server


@pytest.fixture(scope="session")
def e2e_backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackendProcess]:
    """The backend as operators run it; TRELLIS points at a closed port, so a TRELLIS job fails at the mesh stage."""
    root = tmp_path_factory.mktemp("e2e-backend")
    server = BackendProcess(
        root / "data",
        root / "backend.log",
        ALCH3MIST_TRELLIS_URL=f"http://127.0.0.1:{free_port()}",
        ALCH3MIST_MAX_QUEUED_PER_USER="8",
    )
    server.env["ALCH3MIST_PUBLIC_URL"] = server.base_url  # signed links point at this very server
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def owui(
    tmp_path_factory: pytest.TempPathFactory, llm: RunningServer, e2e_backend: BackendProcess
) -> Iterator[OpenWebUI]:
    """Open WebUI with the pipe ``alch3mist`` (model "Alch3mist") and the tool ``alch3mist_tool`` configured."""
    server = OpenWebUI(tmp_path_factory.mktemp("openwebui"), f"{llm.base_url}/v1")
    server.start()
    try:
        common = {"BACKEND_URL": e2e_backend.base_url, "BACKEND_API_KEY": BACKEND_KEY}
        installer.install_all(
            server.base_url,
            server.token,
            {**common, **FAST_VALVES, "REWRITE_MODEL": "rewriter", "BASE_CHAT_MODEL": "chat", "STATUS_EVERY": 3},
            {**common, **{k: v for k, v in FAST_VALVES.items() if k in TOOL_VALVE_KEYS}},
        )
        server.set_user_seed(server.token)
        yield server
    finally:
        server.stop()
        ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
        for log in (server.log_path, e2e_backend.log_path):
            if log.exists():
                (ARTIFACTS_DIR / log.name).write_bytes(log.read_bytes())


TOOL_VALVE_KEYS = {
    "DEFAULT_STEPS",
    "DEFAULT_EDIT_STEPS",
    "DEFAULT_SIZE",
    "DEFAULT_TEXTURE_SIZE",
    "DEFAULT_VIEWS",
    "DEFAULT_VIEW_SIZE",
    "DEFAULT_ENGINE_3D",
}


def backend_jobs(backend: BackendProcess) -> list[dict[str, Any]]:
    """Every job on the backend: the admin key sees all owners' (the pipe's jobs belong to each Open WebUI user)."""
    with backend.admin() as client:
        response = client.get("/v1/jobs", params={"limit": 200})
        assert response.status_code == 200, response.text
        return list(response.json()["jobs"])
