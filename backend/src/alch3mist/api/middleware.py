"""Two small ASGI middlewares (pure ASGI, so Server-Sent Events stream untouched).

* ``BrowserCors`` — CORS only on the routes a browser loads with a signed link (artifacts, viewer page, viewer
  bundle). The chat's sandboxed iframe has an opaque origin (``null``) and sends no cookies, so
  ``Access-Control-Allow-Origin: *`` without credentials is both sufficient and safe: those routes are
  authorised by the token in the URL, never by ambient credentials. Every other route gets no CORS headers.
* ``BodyLimit`` — refuses request bodies over ``Settings.max_body_bytes`` with 413, from ``Content-Length``
  up front, or while reading a body sent without one.
"""

from __future__ import annotations

import json
import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import ApiError

__all__ = ["BROWSER_PATH", "BodyLimit", "BrowserCors"]

BROWSER_PATH = re.compile(r"^/v1/jobs/[^/]+/(artifacts/.+|viewer|viewer/bundle\.js)$")
_CORS_HEADERS = [
    (b"access-control-allow-origin", b"*"),
    (b"access-control-allow-methods", b"GET, HEAD, OPTIONS"),
    (b"access-control-allow-headers", b"Range, Content-Type"),
    (b"access-control-expose-headers", b"Content-Length, Content-Range, Accept-Ranges"),
    (b"access-control-max-age", b"600"),
]


class BrowserCors:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not BROWSER_PATH.match(scope["path"]):
            await self.app(scope, receive, send)
            return
        if scope["method"] == "OPTIONS":
            await send({"type": "http.response.start", "status": 204, "headers": _CORS_HEADERS})
            await send({"type": "http.response.body", "body": b""})
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *_CORS_HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_cors)


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send)
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise ApiError(413, "request_too_large", self._message())
            return message

        await self.app(scope, counting_receive, send)

    def _message(self) -> str:
        return (
            f"request body is larger than {self.max_bytes} bytes "
            "(ALCH3MIST_MAX_UPLOAD_BYTES, plus ALCH3MIST_MESH_MAX_BYTES as base64)"
        )

    async def _refuse(self, send: Send) -> None:
        body = json.dumps({"error": {"code": "request_too_large", "message": self._message()}}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})
