"""Dependencies of the routes, as ``Annotated`` aliases (``SettingsDep``, ``WorkerDep``, ``CallerDep``…).

Auth: ``Authorization: Bearer <key>`` is compared in constant time against every configured key (all of them,
always, so timing says nothing about which one almost matched). The caller (``jobs.policy.Caller``) is that key's
name and admin flag plus the end user the key vouches for (``X-Alch3mist-User``, or ``user`` in a job's body); every
job route checks ownership with ``jobs.policy.get_owned``. With no keys configured the API is open, which ``main``
allows only on a loopback address or with ``--insecure-no-auth``. Routes a browser loads accept a signed ``?token=``
(``signing.py``) instead of the key — see ``authorize_link``.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Header, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ..config import ApiKey, Settings
from ..domain import ChainCatalog
from ..jobs.policy import KEY_ALONE, Caller
from ..jobs.store import JobStore
from ..jobs.worker import Worker
from ..storage import ArtifactStorage
from .errors import ApiError
from .presenters import Links
from .signing import LinkSigner

__all__ = [
    "BearerDep",
    "CallerDep",
    "ChainDep",
    "LinksDep",
    "SettingsDep",
    "StorageDep",
    "StoreDep",
    "WorkerDep",
    "authorize_link",
    "vouched_user",
]

USER_HEADER = "X-Alch3mist-User"
MAX_USER_CHARS = 200
_bearer = HTTPBearer(auto_error=False, description="An API key from ALCH3MIST_API_KEYS.")


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_worker(request: Request) -> Worker:
    worker: Worker = request.app.state.worker
    return worker


def get_store(request: Request) -> JobStore:
    store: JobStore = request.app.state.store
    return store


def get_storage(request: Request) -> ArtifactStorage:
    storage: ArtifactStorage = request.app.state.storage
    return storage


def get_chain(request: Request) -> ChainCatalog:
    """The chain as the API process sees it: info and validation, no model (it runs in the worker process)."""
    chain: ChainCatalog = request.app.state.chain
    return chain


def get_links(request: Request) -> Links:
    settings = get_settings(request)
    base_url = settings.public_url or str(request.base_url).rstrip("/")
    signer: LinkSigner = request.app.state.signer
    return Links(base_url, signer, chat_ttl_s=settings.chat_link_ttl_s, page_ttl_s=settings.link_ttl_s)


SettingsDep = Annotated[Settings, Depends(get_settings)]
WorkerDep = Annotated[Worker, Depends(get_worker)]
StoreDep = Annotated[JobStore, Depends(get_store)]
StorageDep = Annotated[ArtifactStorage, Depends(get_storage)]
ChainDep = Annotated[ChainCatalog, Depends(get_chain)]
LinksDep = Annotated[Links, Depends(get_links)]


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, {"WWW-Authenticate": "Bearer"})


def match_key(keys: dict[str, ApiKey], presented: str) -> ApiKey | None:
    """The key equal to ``presented``, comparing against every key in constant time (bytes: any text is safe)."""
    matched = None
    presented_bytes = presented.encode("utf-8", "surrogateescape")
    for key in keys.values():
        if hmac.compare_digest(key.key.encode(), presented_bytes):
            matched = key
    return matched


def check_key(settings: Settings, credentials: HTTPAuthorizationCredentials | None) -> ApiKey | None:
    """The configured key the caller presented (None when no keys are configured); 401 otherwise."""
    keys = settings.parsed_api_keys()
    if not keys:
        return None
    if credentials is None:
        raise _unauthorized("missing API key: send 'Authorization: Bearer <key>'")
    key = match_key(keys, credentials.credentials)
    if key is None:
        raise _unauthorized("invalid API key")
    return key


BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
UserHeaderDep = Annotated[
    str | None,
    Header(
        alias=USER_HEADER,
        max_length=MAX_USER_CHARS,
        description="The end user this key vouches for (an opaque id, e.g. Open WebUI's user id). Jobs belong to "
        "(key, end user); without it, to the key alone.",
    ),
]


def require_caller(settings: SettingsDep, credentials: BearerDep, user: UserHeaderDep = None) -> Caller:
    return _caller(check_key(settings, credentials), user)


CallerDep = Annotated[Caller, Depends(require_caller)]


def _caller(key: ApiKey | None, user: str | None) -> Caller:
    return Caller(key_name=key.name if key else None, user=user or KEY_ALONE, admin=bool(key and key.admin))


def vouched_user(caller: Caller, user: str | None) -> Caller:
    """The caller vouching for ``user`` (a job's ``user`` field, or the list's ``?user=``) instead of the header's.

    For an admin listing jobs this is only a filter; both given and different is a 422, never a silent choice.
    """
    if not user:
        return caller
    if caller.user not in (KEY_ALONE, user):
        raise ApiError(422, "invalid_request", f"user: differs from the {USER_HEADER} header; send one of them")
    return Caller(key_name=caller.key_name, user=user, admin=caller.admin)


def authorize_link(
    request: Request,
    settings: Settings,
    credentials: HTTPAuthorizationCredentials | None,
    user_header: str | None,
    job_id: str,
    resource: str,
    token: str | None,
) -> Caller | None:
    """A browser route: a valid signed token for (job, resource) — a bearer link, returns None — or else the API
    key, returning the caller, whose ownership of the job the route then checks (``get_owned``)."""
    if token is None:
        return _caller(check_key(settings, credentials), user_header)
    signer: LinkSigner = request.app.state.signer
    verdict = signer.check(token, job_id, resource)
    if verdict == "expired":
        raise _unauthorized("this link has expired; ask the API for the job again to get fresh links")
    if verdict != "ok":
        raise _unauthorized("invalid link token (tampered with, or for another job or file)")
    return None
