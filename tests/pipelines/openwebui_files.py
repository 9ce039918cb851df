"""A stand-in for the two parts of Open WebUI's file store the pipe reads an attached mesh through, so the standalone
tests can attach one (Open WebUI itself, with its real store, runs in tests/e2e/test_openwebui_mesh.py).

Faithful to open_webui 0.12.4:

- ``open_webui/models/files.py``: ``Files.get_file_by_id(id)`` is async and returns a ``FileModel`` (``id``,
  ``user_id``, ``filename``, ``path``, ``meta``…) or None for an unknown id;
- ``open_webui/storage/provider.py``: ``Storage.get_file(file_path)`` returns a local path to read (the local
  provider returns the path it was given; S3/GCS/Azure download to the upload folder first).
"""

from __future__ import annotations

import sys
import types
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest


@dataclass
class FileModel:
    id: str
    user_id: str
    filename: str
    path: str | None
    meta: dict[str, Any] = field(default_factory=dict)


class FileStore:
    """Files uploaded by users, kept in ``folder``; ``attach`` returns the ``__files__`` item the chat would send."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.files: dict[str, FileModel] = {}

    def attach(self, user_id: str, filename: str, data: bytes) -> dict[str, Any]:
        file_id = str(uuid.uuid4())
        path = self.folder / f"{file_id}_{filename}"
        path.write_bytes(data)
        meta = {"name": filename, "content_type": "application/octet-stream", "size": len(data)}
        self.files[file_id] = FileModel(file_id, user_id, filename, str(path), meta)
        item = {"id": file_id, "filename": filename, "meta": meta}
        return {"type": "file", "id": file_id, "name": filename, "url": f"/api/v1/files/{file_id}", "file": item}

    async def get_file_by_id(self, id: str, db: Any = None) -> FileModel | None:
        return self.files.get(id)

    @staticmethod
    def get_file(file_path: str) -> str:
        return file_path


def install(monkeypatch: pytest.MonkeyPatch, folder: Path) -> FileStore:
    """Make ``open_webui.models.files.Files`` and ``open_webui.storage.provider.Storage`` importable."""
    store = FileStore(folder)
    files_module = types.ModuleType("open_webui.models.files")
    files_module.Files = store  # type: ignore[attr-defined]
    provider_module = types.ModuleType("open_webui.storage.provider")
    provider_module.Storage = store  # type: ignore[attr-defined]
    for name in ("open_webui", "open_webui.models", "open_webui.storage"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "open_webui.models.files", files_module)
    monkeypatch.setitem(sys.modules, "open_webui.storage.provider", provider_module)
    return store
