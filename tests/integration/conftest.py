"""Real backend processes for the integration tests: ``alch3mist serve --preset tiny`` on 127.0.0.1.

``WorkerProcess`` is a cluster worker (``alch3mist worker``, tests/integration/test_cluster.py).
``BackendProcess`` starts the service exactly as an operator does (the ``alch3mist`` console script, configured
by ``ALCH3MIST_*`` environment variables, in a scratch working directory so no developer ``.env`` leaks in), waits for
``/healthz``, and can be stopped politely, killed with SIGKILL and restarted on the same data directory.
The tiny models are shared with the rest of the suite through ``.cache/alch3mist-tests``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
TINY_CACHE_DIR = REPO_ROOT / ".cache" / "alch3mist-tests"
API_KEYS = {"webui": "key-webui-0123456789", "tool": "key-tool-9876543210"}
ADMIN_KEY = ("ops", "key-ops-admin-55555555")  # ``ops@admin``: sees every job; its limits reach the schema's maxima
BIG_LIMITS = {"max_steps": 100, "max_size": 2048, "max_views": 36, "max_view_size": 2048, "max_texture_size": 4096}
LINK_SECRET = "integration-link-secret"
STARTUP_TIMEOUT_S = 600.0  # the first start may build the tiny models into the cache
# Small, fast jobs: the tiny preset at its smallest useful sizes.
FAST_JOB: dict[str, Any] = {
    "steps": 2, "edit_steps": 2, "size": 64, "texture_size": 256, "views": 2, "view_size": 64, "seed": 1234,
}  # fmt: skip
TERMINAL = ("succeeded", "failed", "cancelled")
WORKER_READY_S = 180.0  # a cluster worker's pool process loads the tiny chain (seconds; minutes when first built)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_healthy(
    process: subprocess.Popen[bytes], url: str, name: str, timeout_s: float, every_s: float, log_tail: Callable[[], str]
) -> None:
    """Poll ``url`` until it answers 200; fail with the server's log if it exits or the time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}:\n{log_tail()}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(every_s)
    raise RuntimeError(f"{name} did not become healthy in {timeout_s} s:\n{log_tail()}")


class BackendProcess:
    def __init__(self, data_dir: Path, log_path: Path, preset: str = "tiny", **env: str) -> None:
        self.data_dir = data_dir
        self.preset = preset
        self.log_path = log_path
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "ALCH3MIST_API_KEYS": ",".join(
                [*(f"{name}:{key}" for name, key in API_KEYS.items()), f"{ADMIN_KEY[0]}@admin:{ADMIN_KEY[1]}"]
            ),
            "ALCH3MIST_KEY_LIMITS": json.dumps({ADMIN_KEY[0]: BIG_LIMITS}),
            # Many tests share one backend and one key: no hourly quotas unless a test sets them (test_limits.py).
            "ALCH3MIST_KEY_JOBS_PER_HOUR": "0",
            "ALCH3MIST_USER_JOBS_PER_HOUR": "0",
            "ALCH3MIST_DATA_DIR": str(data_dir),
            "ALCH3MIST_CACHE_DIR": str(TINY_CACHE_DIR),
            "ALCH3MIST_ENGINE_3D": "preview",
            "ALCH3MIST_LINK_SECRET": LINK_SECRET,
            "OMP_NUM_THREADS": "1",
            **env,
        }
        for name in ("ALCH3MIST_PUBLIC_URL", "ALCH3MIST_LLM_URL", "ALCH3MIST_HUNYUAN3D_URL"):
            self.env.pop(name, None)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> BackendProcess:
        alch3mist = Path(sys.executable).with_name("alch3mist")  # the console script of this environment
        command = [str(alch3mist), "serve", "--preset", self.preset, "--host", "127.0.0.1", "--port", str(self.port)]
        cwd = self.data_dir.parent / f"cwd-{self.port}"
        cwd.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(command, cwd=cwd, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        self._wait_healthy()
        return self

    def _wait_healthy(self) -> None:
        assert self.process is not None
        wait_until_healthy(self.process, f"{self.base_url}/healthz", "backend", STARTUP_TIMEOUT_S, 0.3, self.log_tail)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)

    def kill9(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def log_tail(self, lines: int = 60) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def client(self, key: str | None = API_KEYS["webui"], user: str | None = None, **kwargs: Any) -> httpx.Client:
        """A client with ``key`` (None: none) vouching for end user ``user`` (None: the key alone)."""
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        if user is not None:
            headers["X-Alch3mist-User"] = user
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=60, **kwargs)

    def admin(self, **kwargs: Any) -> httpx.Client:
        """A client with the admin key: reads every job, and may ask for the schema's largest values."""
        return self.client(ADMIN_KEY[1], **kwargs)


class WorkerProcess:
    """``alch3mist worker --preset tiny --name NAME`` with its own data folder (its scratch space)."""

    def __init__(self, name: str, root: Path, env: dict[str, str]) -> None:  # env: as a BackendProcess's + cluster
        self.name = name
        self.data_dir = root / name / "data"
        self.log_path = root / f"{name}.log"
        self.env = {**env, "ALCH3MIST_DATA_DIR": str(self.data_dir)}
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        alch3mist = Path(sys.executable).with_name("alch3mist")
        cwd = self.data_dir.parent / "cwd"
        cwd.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [str(alch3mist), "worker", "--preset", "tiny", "--name", self.name],
                cwd=cwd,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def wait_ready(self, after: int = 0) -> None:
        """Until the log says ``worker ready`` more than ``after`` times (a pool process loaded the chain)."""
        deadline = time.monotonic() + WORKER_READY_S
        while self.log().count("worker ready") <= after:
            assert self.process is not None and self.process.poll() is None, self.log()[-3000:]
            assert time.monotonic() < deadline, f"{self.name} not ready:\n{self.log()[-3000:]}"
            time.sleep(0.2)

    def pool_pid(self) -> int:
        """The pool process (the Celery main process's one child) that runs the jobs."""
        assert self.process is not None
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
        assert len(children) == 1, children
        return int(children[0])

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGQUIT)  # cold shutdown: the test is over, no job to finish
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


@pytest.fixture(scope="session")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackendProcess]:
    """One backend shared by the read-mostly tests. The TRELLIS URL points at a closed port: a job that asks
    for TRELLIS fails in the mesh stage, which is how a late-stage failure is tested for real."""
    root = tmp_path_factory.mktemp("backend")
    server = BackendProcess(
        root / "data",
        root / "backend.log",
        ALCH3MIST_TRELLIS_URL=f"http://127.0.0.1:{free_port()}",
        ALCH3MIST_MAX_QUEUED_PER_USER="4",
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


def wait_for(client: httpx.Client, job_id: str, timeout: float = 300.0, until: tuple[str, ...] = TERMINAL) -> Any:
    """Poll until the job reaches one of ``until``; returns its JSON."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in until:
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} still {job['status']} after {timeout} s: {job}")


def read_events(client: httpx.Client, job_id: str, timeout: float = 300.0) -> list[dict[str, Any]]:
    """Follow ``/events`` until ``done``; returns the parsed JSON of every event (with ``event`` added)."""
    events: list[dict[str, Any]] = []
    with client.stream("GET", f"/v1/jobs/{job_id}/events", timeout=timeout) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        name, data = "message", []
        for line in response.iter_lines():
            if line.startswith("event:"):
                name = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                data.append(line.split(":", 1)[1].strip())
            elif not line and data:
                events.append({**json.loads("\n".join(data)), "event": name})
                name, data = "message", []
                if events[-1]["event"] == "done":
                    break
    return events


def submit(client: httpx.Client, **fields: Any) -> Any:
    body = {key: value for key, value in {**FAST_JOB, **fields}.items() if value is not None}  # None: leave it out
    response = client.post("/v1/jobs", json=body)
    assert response.status_code == 202, response.text
    return response.json()
