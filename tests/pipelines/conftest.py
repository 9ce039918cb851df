"""Load each plugin file standalone, the way Open WebUI (or the Pipelines server) does, against real servers.

Open WebUI exec()s a plugin's source in a fresh module (``open_webui.utils.plugin.load_function_module_by_id``);
``load_plugin`` does the same, so a plugin that imports a sibling or does something fragile at import time fails
here too. The backend and the LLM server are the same real processes the end-to-end tests use.
"""

from __future__ import annotations

import types
import uuid
from pathlib import Path
from typing import Any

from tests.e2e.conftest import e2e_backend, llm  # noqa: F401  (session fixtures re-used here)

REPO_ROOT = Path(__file__).resolve().parents[2]


def load_plugin(relative_path: str) -> types.ModuleType:
    """exec() the file's source in a new module, as Open WebUI does (no package, no sibling imports)."""
    path = REPO_ROOT / relative_path
    module = types.ModuleType(f"plugin_{uuid.uuid4().hex}")
    module.__dict__["__file__"] = str(path)
    # dont_inherit: this conftest's `from __future__ import annotations` must not leak into the plugin.
    exec(compile(path.read_text(encoding="utf-8"), str(path), "exec", dont_inherit=True), module.__dict__)
    return module


class Events:
    """An ``__event_emitter__`` that records what the plugin sent."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    async def __call__(self, event: dict[str, Any]) -> None:
        self.events.append(event)

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e["data"] for e in self.events if e.get("type") == kind]
