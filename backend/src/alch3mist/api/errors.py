"""The API edge: every error leaves as JSON ``{"error": {"code", "message"}}`` — never a traceback.

* ``Alch3mistError`` (the domain tree, ``alch3mist.errors``) → its ``http_status`` and ``code`` (and a
  ``Retry-After`` header for a ``RetryLater``: a full queue, an hourly quota, a database or broker down).
* ``ApiError`` — HTTP-only conditions (401, 404, 413, …) raised by the routes and dependencies.
* Request validation → 422 with one readable sentence per problem (``seed: must be at most 4294967295``).
* Anything else → logged with its traceback, answered 500 ``internal_error``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import Alch3mistError, RetryLater

__all__ = ["ApiError", "error_response", "install_error_handlers", "validation_message"]

logger = logging.getLogger(__name__)

_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "request_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "too_many_requests",
    503: "unavailable",
}


class ApiError(StarletteHTTPException):
    """An HTTP error with our code. Subclasses Starlette's so FastAPI passes it through body parsing untouched."""

    def __init__(self, status_code: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(status_code, message, dict(headers) if headers else None)
        self.code = code
        self.message = message


def error_response(status_code: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status_code, headers=headers)


def validation_message(errors: Sequence[Any]) -> str:
    """Pydantic/FastAPI validation errors as one line: ``where: what; where: what``."""
    parts = []
    for error in errors:
        location = [str(p) for p in error.get("loc", ()) if p not in ("body", "query", "path", "header")]
        where = ".".join(location) or "request body"
        kind = error.get("type", "")
        if kind == "json_invalid":
            parts.append(f"request body is not valid JSON ({error.get('ctx', {}).get('error', 'parse error')})")
        elif kind == "missing" and where == "request body":
            parts.append("request body is missing: send a JSON object")
        else:
            parts.append(f"{where}: {_reword(str(error.get('msg', 'invalid value')))}")
    return "; ".join(parts) or "invalid request"


def _reword(message: str) -> str:
    replacements = {
        "Input should be ": "must be ",
        "greater than or equal to": "at least",
        "less than or equal to": "at most",
        "Field required": "is required",
        "Extra inputs are not permitted": "is not a known field",
        "Value error, ": "",
    }
    for old, new in replacements.items():
        message = message.replace(old, new)
    return message


async def _on_domain_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Alch3mistError)
    if exc.http_status >= 500:
        logger.error("request failed", extra={"path": request.url.path, "code": exc.code, "error": exc.message})
    headers = {"Retry-After": str(exc.retry_after_s)} if isinstance(exc, RetryLater) else None
    return error_response(exc.http_status, exc.code, exc.message, headers)


async def _on_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = getattr(exc, "code", None) or _STATUS_CODES.get(exc.status_code, "error")
    message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    if exc.status_code == 404 and message == "Not Found":
        message = f"no such endpoint: {request.method} {request.url.path}"
    elif exc.status_code == 405:
        message = f"method {request.method} is not allowed on {request.url.path}"
    return error_response(exc.status_code, code, message, exc.headers)


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return error_response(422, "invalid_request", validation_message(exc.errors()))


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unhandled error", extra={"path": request.url.path, "method": request.method})
    return error_response(500, "internal_error", "internal server error; the details are in the backend log")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(Alch3mistError, _on_domain_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(Exception, _on_unexpected)
