"""hunyuan3d-local through the real API: a backend started with the engine enabled lists it in /v1/info and runs a
job on it (tiny preset: the tiny Hunyuan3D-2 model through hy3dgen's own loader, in the backend's worker)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from .conftest import BackendProcess, submit, wait_for


@pytest.fixture(scope="module")
def shape_backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackendProcess]:
    root = tmp_path_factory.mktemp("shape-backend")
    server = BackendProcess(root / "data", root / "backend.log", ALCH3MIST_HUNYUAN3D_LOCAL="true")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_info_lists_the_engine_and_a_job_runs_on_it(shape_backend: BackendProcess) -> None:
    with shape_backend.client() as client:
        engines = {engine["name"]: engine for engine in client.get("/v1/info").json()["engines"]}
        assert engines["hunyuan3d-local"]["available"] and not engines["hunyuan3d-local"]["is_preview"]
        assert "Community Licence" in engines["hunyuan3d-local"]["detail"]
        job = wait_for(client, submit(client, request="a vase of jade", engine_3d="hunyuan3d-local", views=1)["id"])
    assert job["status"] == "succeeded", job["error"]
    assert job["engine_3d"] == "hunyuan3d-local"
    assert any("single-view projection" in warning for warning in job["warnings"])
    mesh = job["manifest"]["mesh"]
    assert mesh["engine"]["details"]["closed"] and mesh["engine"]["details"]["preset"] == "tiny"
    # its projection is a placeholder: the chain's texture step repainted the mesh (retexture="auto")
    assert mesh["engine"]["texture"] == "placeholder" and job["manifest"]["texture"]["engine"] == "alch3mist"
    with httpx.Client(timeout=60) as browser:
        glb = browser.get(job["artifacts"]["glb"])
    assert glb.status_code == 200 and glb.content[:4] == b"glTF"
