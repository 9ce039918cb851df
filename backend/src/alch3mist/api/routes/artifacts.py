"""Routes a browser loads: artifacts, the viewer page and its bundle. They take ``?token=`` (a signed link)
instead of the API key, and they are the only routes with CORS (``middleware.BrowserCors``). With the key instead
of a token, only the job's owner gets through (``get_owned``), as on the jobs routes.

Artifacts come from the artifact storage (``alch3mist.storage``): a file the storage keeps on this machine (the local
job folder, the default) is served as it is — ``FileResponse``: sendfile, HTTP Range, ETag — and an object in S3 is
streamed through this route, with single byte ranges passed on to S3. Browsers never get a presigned S3 URL: one signer
and one lifetime policy cover both storages, chat links outlive SigV4's seven-day cap, and the bucket stays private
(docs/deploy.md, "Artifact storage").

The URL-mode viewer page is rendered on every load with fresh short-lived links for the GLB, poster and bundle, so
the page's own link — the one a chat keeps — works for as long as the job exists (docs/api.md, "Embeds")."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, Response, StreamingResponse

from ...config import Settings
from ...errors import ArtifactNotFound, JobNotFound
from ...jobs.policy import Caller, get_owned
from ...jobs.store import JobRecord, JobStore
from ...storage import ArtifactStorage, media_type, parse_range
from ...storage.base import MEDIA_TYPES
from ..deps import BearerDep, LinksDep, SettingsDep, StorageDep, StoreDep, UserHeaderDep, authorize_link
from ..errors import ApiError
from ..presenters import BUNDLE_RESOURCE, VIEWER_RESOURCE, Links

router = APIRouter(prefix="/v1/jobs", tags=["artifacts"])

TokenQuery = Annotated[str | None, Query(description="Signed link token (instead of the API key).")]
_JOB_ID = re.compile(r"^[0-9a-f]{32}$")


def _json_error(description: str) -> dict[str, Any]:
    """An error response documented as JSON even though the route's own answer is a file or HTML."""
    schema = {"$ref": "#/components/schemas/ErrorResponse"}  # registered by the jobs routes' ``model=``
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERRORS: dict[int | str, dict[str, Any]] = {
    401: _json_error("Missing/invalid API key, or an invalid or expired link token."),
    404: _json_error("No such job or file."),
    416: _json_error("The byte range starts past the end of the file."),
    422: _json_error("Invalid parameter."),
    503: _json_error("The viewer bundle is not installed on this server, or the artifact storage failed."),
}
_CACHE = {"Cache-Control": "private, max-age=3600"}
_PAGE_CACHE = {"Cache-Control": "no-store"}  # its links are fresh on each load: a cached copy would hold stale ones


@router.get(
    "/{job_id}/artifacts/{name:path}",
    response_class=FileResponse,
    responses={200: {"content": {t: {} for t in MEDIA_TYPES.values()}, "description": "The file."}, **_ERRORS},
)
def read_artifact(
    job_id: str,
    name: str,
    request: Request,
    settings: SettingsDep,
    store: StoreDep,
    storage: StorageDep,
    bearer: BearerDep,
    user: UserHeaderDep = None,
    token: TokenQuery = None,
) -> Response:
    """One file of a job (``base.png``, ``model.glb``, ``views/view_00.png``…); never anything outside its folder."""
    caller = authorize_link(request, settings, bearer, user, job_id, name, token)
    record = _job(store, job_id, caller)
    path = storage.local_path(record.id, name)
    if path is not None:
        return FileResponse(path, media_type=media_type(name), headers=_CACHE)
    return _streamed(storage, record.id, name, request.headers.get("range"))


@router.get("/{job_id}/viewer", response_class=HTMLResponse, responses=_ERRORS)
def read_viewer(
    job_id: str,
    request: Request,
    settings: SettingsDep,
    store: StoreDep,
    storage: StorageDep,
    links: LinksDep,
    bearer: BearerDep,
    user: UserHeaderDep = None,
    token: TokenQuery = None,
    inline: Annotated[bool, Query(description="Self-contained page (bundle + GLB inlined, ~1 MB+).")] = False,
) -> HTMLResponse:
    """The 3D viewer page: by default it loads the GLB, poster and bundle through fresh signed links (small);
    ``inline=1`` returns the self-contained page that needs no network."""
    caller = authorize_link(request, settings, bearer, user, job_id, VIEWER_RESOURCE, token)
    record = _job(store, job_id, caller)
    if not storage.exists(record.id, "model.glb"):
        raise ApiError(404, "artifact_not_found", f"job {job_id} has no 3D model (status {record.status})")
    try:
        html = _inline_page(storage, record, settings) if inline else _url_page(storage, record, links)
    except FileNotFoundError as exc:  # the vendored bundle is missing (only the inline page needs it here)
        raise ApiError(503, "viewer_unavailable", str(exc)) from exc
    return HTMLResponse(html, headers={"Content-Disposition": "inline", **_PAGE_CACHE})


@router.get(
    "/{job_id}/viewer/bundle.js",
    response_class=FileResponse,
    responses={200: {"content": {"text/javascript": {}}, "description": "The <model-viewer> bundle."}, **_ERRORS},
)
def read_viewer_bundle(
    job_id: str,
    request: Request,
    settings: SettingsDep,
    store: StoreDep,
    bearer: BearerDep,
    user: UserHeaderDep = None,
    token: TokenQuery = None,
) -> FileResponse:
    """The vendored ``<model-viewer>`` bundle the URL-mode viewer page loads."""
    caller = authorize_link(request, settings, bearer, user, job_id, BUNDLE_RESOURCE, token)
    _job(store, job_id, caller)
    from ...viewer import page

    try:
        bundle = page.bundle_path(settings.model_viewer_bundle)
    except FileNotFoundError as exc:
        raise ApiError(503, "viewer_unavailable", str(exc)) from exc
    return FileResponse(bundle, media_type=MEDIA_TYPES[".js"], headers={"Cache-Control": "private, max-age=86400"})


def _streamed(storage: ArtifactStorage, job_id: str, name: str, range_header: str | None) -> Response:
    """An artifact the storage keeps elsewhere (S3), streamed: 200, or 206 for one satisfiable byte range."""
    try:
        body = storage.open(job_id, name, parse_range(range_header))
    except ArtifactNotFound as exc:
        raise ApiError(404, "artifact_not_found", f"job {job_id} has no file {name!r}") from exc
    if body.unsatisfiable:
        raise ApiError(
            416, "range_not_satisfiable", f"{name} has {body.size} bytes", {"Content-Range": f"bytes */{body.size}"}
        )
    headers = {**_CACHE, "Accept-Ranges": "bytes", "Content-Length": str(body.length)}
    if body.partial:
        headers["Content-Range"] = f"bytes {body.start}-{body.end}/{body.size}"
    status = 206 if body.partial else 200
    return StreamingResponse(body.chunks, status_code=status, media_type=body.media_type, headers=headers)


def _inline_page(storage: ArtifactStorage, record: JobRecord, settings: Settings) -> str:
    """The page the chain wrote (``viewer.html``), or one rendered now for a job that stopped before it."""
    if storage.exists(record.id, "viewer.html"):
        return storage.read_bytes(record.id, "viewer.html").decode("utf-8")
    from ...viewer import page  # the viewer template module; only needed here

    title, caption = _titles(record)
    poster = _poster(storage, record)
    return page.render_inline_page(
        title=title,
        glb_bytes=storage.read_bytes(record.id, "model.glb"),
        poster_png=storage.read_bytes(record.id, poster) if poster else None,
        download_name=f"{_slug(title)}.glb",
        caption=caption,
        bundle=settings.model_viewer_bundle,
    )


def _url_page(storage: ArtifactStorage, record: JobRecord, links: Links) -> str:
    from ...viewer import page

    title, caption = _titles(record)
    poster = _poster(storage, record)
    return page.render_url_page(
        title=title,
        glb_url=links.artifact(record.id, "model.glb", fresh=True),
        poster_url=links.artifact(record.id, poster, fresh=True) if poster else None,
        bundle_url=links.bundle(record.id),
        download_name=f"{_slug(title)}.glb",
        caption=caption,
    )


def _job(store: JobStore, job_id: str, caller: Caller | None) -> JobRecord:
    """The job (a token was checked: ``caller`` None), or the caller's own job; else 404 ``job_not_found``."""
    record = store.get(job_id) if _JOB_ID.fullmatch(job_id) else None
    if record is None:
        raise JobNotFound(f"no job with id {job_id!r}")
    return record if caller is None else get_owned(record, caller)


def _poster(storage: ArtifactStorage, record: JobRecord) -> str | None:
    return next((name for name in ("textured.png", "base.png") if storage.exists(record.id, name)), None)


def _titles(record: JobRecord) -> tuple[str, str]:
    title = str((record.prompt or {}).get("title") or record.params.get("title") or "Alch3mist model")
    engine = record.engine_3d or "?"
    preview = " · preview mesh (built-in CPU engine)" if engine == "preview" else ""
    seed = f" · seed {record.seed}" if record.seed is not None else ""
    return title, f"{title} — {engine}{seed}{preview}"


def _slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:60] or "model"
