"""Body limit (declared and streamed) and CORS only on browser routes."""

from __future__ import annotations

from collections.abc import Iterator

from alch3mist.api.errors import install_error_handlers
from alch3mist.api.middleware import BodyLimit, BrowserCors
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient


def _app() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)
    app.add_middleware(BrowserCors)
    app.add_middleware(BodyLimit, max_bytes=100)

    @app.post("/v1/jobs")
    async def create(request: Request) -> dict[str, int]:
        return {"size": len(await request.body())}

    @app.get("/v1/jobs/{job_id}/artifacts/{name:path}")
    def artifact(job_id: str, name: str) -> dict[str, str]:
        return {"name": name}

    return app


def test_declared_and_streamed_bodies_over_the_limit_are_413() -> None:
    client = TestClient(_app())
    assert client.post("/v1/jobs", content=b"x" * 100).json() == {"size": 100}
    declared = client.post("/v1/jobs", content=b"x" * 101)
    assert declared.status_code == 413 and declared.json()["error"]["code"] == "request_too_large"

    def chunks() -> Iterator[bytes]:
        yield b"x" * 60
        yield b"x" * 60

    streamed = client.post("/v1/jobs", content=chunks())  # chunked: no Content-Length
    assert streamed.status_code == 413 and "ALCH3MIST_MAX_UPLOAD_BYTES" in streamed.json()["error"]["message"]


def test_cors_only_on_browser_routes() -> None:
    client = TestClient(_app())
    assert client.get("/v1/jobs/x/artifacts/base.png").headers["access-control-allow-origin"] == "*"
    preflight = client.options("/v1/jobs/x/artifacts/base.png", headers={"Origin": "null"})
    assert preflight.status_code == 204 and "GET" in preflight.headers["access-control-allow-methods"]
    assert "access-control-allow-origin" not in client.post("/v1/jobs", content=b"{}").headers
