from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alch3mist.chain import Chain
from alch3mist.config import Settings
from alch3mist.engines.registry import build_engines
from alch3mist.prompting.rewrite import PromptRewriter

from tests.servers.s3_server import CREDENTIALS, S3Server, running_s3_server


@pytest.fixture(scope="session")
def tiny_chain(tiny_models: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chain]:
    """The whole chain on the session's tiny models, the preview engine and the offline rewriter."""
    settings = Settings(
        preset="tiny",
        cache_dir=Path(".cache/alch3mist-tests"),
        data_dir=tmp_path_factory.mktemp("chain-data"),
        engine_3d="preview",
        llm_url=None,
    )
    yield Chain(settings, tiny_models, build_engines(settings), PromptRewriter(settings))  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with running_s3_server(tmp_path_factory.mktemp("moto") / "moto.log") as server:
        yield server


@pytest.fixture
def s3_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """boto3's standard chain finds the test credentials, and nothing of the developer's (~/.aws)."""
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/config")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
