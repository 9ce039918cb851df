"""Dependencies of the routes, as ``Annotated`` aliases (``SettingsDep``, ``WorkerDep``, ``CallerDep``…).

Auth: ``Authorization: Bearer <key>`` is compared in constant time against every configured key (all of them,
always, so timing says nothing about which one almost matched); the matching key's name is recorded on the job.
With no keys configured the API is open (``main`` logs a loud warning at startup). Routes a browser loads accept
a signed ``?token=`` (``signing.py``) instead of the key — see ``authorize_link``.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ..config import Settings
from ..domain import GenerationChain
from ..jobs.store import JobStore
from ..jobs.worker import Worker
from .errors import ApiError
from .presenters import Links
from .signing import LinkSigner

__all__ = [
    "Caller",
    "CallerDep",
    "ChainDep",
    "EndUserDep",
    "LinksDep",
    "SettingsDep",
    "StoreDep",
    "WorkerDep",
    "authorize_link",
]

USER_HEADER = "X-Alch3mist-User"
_bearer = HTTPBearer(auto_error=False, description="An API key from ALCH3MIST_API_KEYS.")


@dataclass(frozen=True)
class Caller:
    """Who called: the name of the API key that matched (None when the API is open)."""

    key_name: str | None


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_worker(request: Request) -> Worker:
    worker: Worker = request.app.state.worker
    return worker


def get_store(request: Request) -> JobStore:
    store: JobStore = request.app.state.store
    return store


def get_chain(request: Request) -> GenerationChain:
    chain: GenerationChain = request.app.state.chain
    return chain


def get_links(request: Request) -> Links:
    settings = get_settings(request)
    base_url = settings.public_url or str(request.base_url).rstrip("/")
    signer: LinkSigner = request.app.state.signer
    return Links(base_url, signer)


SettingsDep = Annotated[Settings, Depends(get_settings)]
WorkerDep = Annotated[Worker, Depends(get_worker)]
StoreDep = Annotated[JobStore, Depends(get_store)]
ChainDep = Annotated[GenerationChain, Depends(get_chain)]
LinksDep = Annotated[Links, Depends(get_links)]


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, {"WWW-Authenticate": "Bearer"})


def match_key(keys: dict[str, str], presented: str) -> str | None:
    """The name of the key equal to ``presented``, comparing against every key in constant time."""
    matched = None
    for name, key in keys.items():
        if hmac.compare_digest(key.encode(), presented.encode()):
            matched = name
    return matched


def check_key(settings: Settings, credentials: HTTPAuthorizationCredentials | None) -> Caller:
    keys = settings.parsed_api_keys()
    if not keys:
        return Caller(key_name=None)
    if credentials is None:
        raise _unauthorized("missing API key: send 'Authorization: Bearer <key>'")
    name = match_key(keys, credentials.credentials)
    if name is None:
        raise _unauthorized("invalid API key")
    return Caller(key_name=name)


def require_api_key(
    settings: SettingsDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Caller:
    return check_key(settings, credentials)


CallerDep = Annotated[Caller, Depends(require_api_key)]


def end_user(
    x_alch3mist_user: Annotated[
        str | None, Header(max_length=200, description="End-user id (e.g. the Open WebUI user), if not in the body.")
    ] = None,
) -> str | None:
    return x_alch3mist_user or None


EndUserDep = Annotated[str | None, Depends(end_user)]


def authorize_link(
    request: Request,
    settings: Settings,
    credentials: HTTPAuthorizationCredentials | None,
    job_id: str,
    resource: str,
    token: str | None,
) -> None:
    """A browser route: a valid signed token for (job, resource), or else the API key."""
    if token is None:
        check_key(settings, credentials)
        return
    signer: LinkSigner = request.app.state.signer
    verdict = signer.check(token, job_id, resource)
    if verdict == "expired":
        raise _unauthorized("this link has expired; ask the API for the job again to get fresh links")
    if verdict != "ok":
        raise _unauthorized("invalid link token (tampered with, or for another job or file)")


BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
