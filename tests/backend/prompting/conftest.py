"""Fixtures: the OpenAI-compatible test LLM server (a real HTTP server on 127.0.0.1) and settings that use it."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import httpx
import pytest
from alch3mist.config import Settings

from tests.servers.llm_server import RunningServer, running_llm_server

SLOW_SECONDS = 3.0


@pytest.fixture(scope="session")
def llm_server_session() -> Iterator[RunningServer]:
    with running_llm_server(api_key="test-key", slow_seconds=SLOW_SECONDS) as server:
        yield server


@pytest.fixture
def llm_server(llm_server_session: RunningServer) -> RunningServer:
    """The server with its recorded requests and memory cleared."""
    httpx.post(f"{llm_server_session.base_url}/_reset").raise_for_status()
    return llm_server_session


def recorded(server: RunningServer) -> list[dict[str, object]]:
    requests: list[dict[str, object]] = httpx.get(f"{server.base_url}/_requests").json()
    return requests


@pytest.fixture
def closed_port_url() -> str:
    """An OpenAI base URL on a port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def llm_settings(url: str, model: str, timeout_s: float = 5.0) -> Settings:
    """Settings from these values only (no environment, no .env)."""
    values = {"llm_url": url, "llm_api_key": "test-key", "llm_model": model, "llm_timeout_s": timeout_s}
    return Settings.model_validate(values)
