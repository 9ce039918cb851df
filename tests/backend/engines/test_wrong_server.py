"""An engine URL that points at some other HTTP server: health says so, generate fails with a clear error."""

from __future__ import annotations

import http.server
import socketserver
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from alch3mist.engines.base import EngineParams
from alch3mist.engines.hunyuan3d import Hunyuan3DEngine
from alch3mist.engines.trellis import TrellisEngine
from alch3mist.errors import EngineError
from alch3mist.stages.progress import StageControl

from .servers import object_image


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        return None


@pytest.fixture(scope="module")
def plain_http_url() -> Iterator[str]:
    server = socketserver.TCPServer(("127.0.0.1", 0), _Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("make", [TrellisEngine, Hunyuan3DEngine])
def test_engine_pointed_at_another_server(make: type, plain_http_url: str, tmp_path: Path) -> None:
    engine = make(plain_http_url, timeout_s=5)
    health = engine.health()
    assert not health.available and health.detail.startswith("reachable, but not a")
    with pytest.raises(EngineError) as caught:
        engine.generate(object_image(128), EngineParams(), tmp_path / "x.glb", StageControl())
    assert plain_http_url in str(caught.value) and engine.name in str(caught.value)
