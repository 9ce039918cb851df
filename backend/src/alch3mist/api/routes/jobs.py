"""``/v1/jobs``: submit, read, list, cancel, and follow a job live (Server-Sent Events)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from sse_starlette import EventSourceResponse, ServerSentEvent

from ...domain import JobStatus
from ...jobs.policy import get_owned
from ...jobs.service import JobSubmission, submit_job
from ...jobs.worker import JobUpdate, Worker
from ..deps import MAX_USER_CHARS, CallerDep, ChainDep, LinksDep, SettingsDep, StoreDep, WorkerDep, vouched_user
from ..presenters import Links, to_event, to_public
from ..schemas import ErrorResponse, JobCreate, JobList, JobPublic
from ..uploads import decode_image, decode_mesh

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "Missing or invalid API key."},
    404: {"model": ErrorResponse, "description": "No such job (or another owner's: the same answer)."},
    422: {"model": ErrorResponse, "description": "Invalid request."},
}
_NOT_GENERATION = {"image", "user", "parent", "mesh", "reference_image"}
SSE_PING_S = 15


@router.post(
    "",
    status_code=202,
    response_model=JobPublic,
    responses={
        **_ERRORS,
        400: {"model": ErrorResponse, "description": "The request body could not be read (e.g. not UTF-8)."},
        413: {"model": ErrorResponse, "description": "Request body, or the mesh file or its face count, too large."},
        429: {"model": ErrorResponse, "description": "Over the key's or the end user's quota (see Retry-After)."},
        503: {"model": ErrorResponse, "description": "The whole queue is full (see Retry-After)."},
    },
)
def create_job(
    body: JobCreate,
    response: Response,
    caller: CallerDep,
    settings: SettingsDep,
    store: StoreDep,
    worker: WorkerDep,
    chain: ChainDep,
    links: LinksDep,
) -> JobPublic:
    """Queue a generation owned by (this key, ``user``). Answers 202 with the job (``Location`` points at it);
    follow it with ``/events``."""
    owner = vouched_user(caller, body.user)
    submission = JobSubmission(
        params=body.model_dump(mode="json", exclude=_NOT_GENERATION, exclude_none=True),
        image=decode_image(body.image) if body.image is not None else None,
        mesh=decode_mesh(body.mesh, settings.mesh_max_bytes) if body.mesh is not None else None,
        reference_image=decode_image(body.reference_image, "reference_image") if body.reference_image else None,
        parent=body.parent,
    )
    record, position = submit_job(submission, owner, settings, store, worker, chain)
    response.headers["Location"] = links.job(record.id)
    return to_public(record, position, links)


@router.get("", response_model=JobList, responses={401: _ERRORS[401], 422: _ERRORS[422]})
def read_jobs(
    caller: CallerDep,
    store: StoreDep,
    worker: WorkerDep,
    links: LinksDep,
    user: Annotated[
        str | None,
        Query(max_length=MAX_USER_CHARS, description="The end user (as X-Alch3mist-User); for an admin key a filter."),
    ] = None,
    status: Annotated[JobStatus | None, Query(description="Only jobs with this status.")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> JobList:
    """The caller's jobs, newest first (an admin key: everyone's, or one end user's with ``user``)."""
    owner = vouched_user(caller, user)
    if owner.admin:
        records = store.list_jobs(key_name=None, user=user or None, status=status, limit=limit)
    else:
        records = store.list_jobs(key_name=owner.key_name, user=owner.user, status=status, limit=limit)
    jobs = []
    for record in records:
        current, position = worker.get(record.id)
        jobs.append(to_public(current, position, links))
    return JobList(jobs=jobs)


@router.get("/{job_id}", response_model=JobPublic, responses=_ERRORS)
def read_job(job_id: str, caller: CallerDep, worker: WorkerDep, links: LinksDep) -> JobPublic:
    """A job's status, progress, queue position and (signed) artifact links."""
    record, position = worker.get(job_id)
    return to_public(get_owned(record, caller), position, links)


@router.delete(
    "/{job_id}",
    response_model=JobPublic,
    responses={
        **_ERRORS,
        202: {"model": JobPublic, "description": "Running: it stops at the next step boundary."},
        409: {"model": ErrorResponse, "description": "The job already finished."},
    },
)
def delete_job(job_id: str, response: Response, caller: CallerDep, worker: WorkerDep, links: LinksDep) -> JobPublic:
    """Cancel: a queued job is cancelled at once (200); a running one stops at its next step (202)."""
    get_owned(worker.get(job_id)[0], caller)
    record, position = worker.cancel(job_id)
    if not record.finished:
        response.status_code = 202
    return to_public(record, position, links)


@router.get(
    "/{job_id}/events",
    response_class=EventSourceResponse,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "JobEvent objects as Server-Sent Events."},
        **_ERRORS,
    },
)
async def read_job_events(
    job_id: str, request: Request, caller: CallerDep, worker: WorkerDep, links: LinksDep
) -> EventSourceResponse:
    """Server-Sent Events: the current state first (``status`` + one ``artifact`` per existing file), then live
    ``stage`` / ``progress`` / ``artifact`` / ``warning`` / ``status`` events, ending with ``done``."""
    get_owned(worker.get(job_id)[0], caller)  # 404 before the stream starts
    return EventSourceResponse(_job_events(job_id, worker, links), ping=SSE_PING_S)


async def _job_events(job_id: str, worker: Worker, links: Links) -> AsyncIterator[ServerSentEvent]:
    subscription = worker.subscribe(job_id)  # subscribe first, so nothing falls between replay and live
    sent_artifacts: set[str] = set()
    try:
        record, position = worker.get(job_id)
        yield _sse(JobUpdate("status", record, queue_position=position), links)
        for name in record.artifacts:
            sent_artifacts.add(name)
            yield _sse(JobUpdate("artifact", record, artifact=name), links)
        if record.finished:
            yield _sse(JobUpdate("done", record), links)
            return
        while True:
            update = await subscription.get()
            if update.type == "artifact" and update.artifact in sent_artifacts:
                continue
            if update.artifact:
                sent_artifacts.add(update.artifact)
            yield _sse(update, links)
            if update.type == "done":
                return
    finally:
        worker.unsubscribe(subscription)


def _sse(update: JobUpdate, links: Links) -> ServerSentEvent:
    return ServerSentEvent(data=to_event(update, links).model_dump_json(), event=update.type)
