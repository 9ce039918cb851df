from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alch3mist.chain import Chain
from alch3mist.config import Settings
from alch3mist.engines.registry import build_engines
from alch3mist.prompting.rewrite import PromptRewriter


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
