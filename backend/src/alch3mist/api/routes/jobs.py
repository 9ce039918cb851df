"""``/v1/jobs``: submit, read, list, cancel, and follow a job live (Server-Sent Events)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Response
from fastapi.concurrency import run_in_threadpool
from sse_starlette import EventSourceResponse, ServerSentEvent

from ...domain import JobStatus
from ...errors import ServiceUnavailable
from ...jobs.policy import get_owned
from ...jobs.queue import JobQueue
from ...jobs.service import JobSubmission, submit_job
from ...jobs.store import JobStore
from ...jobs.worker import JobUpdate, Subscription
from ..deps import MAX_USER_CHARS, CallerDep, ChainDep, LinksDep, SettingsDep, StoreDep, WorkerDep, vouched_user
from ..presenters import Links, to_public, to_sse, update_from_event
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
EVENT_POLL_S = 0.1  # how often a stream reads the event log for events of jobs running in other processes
EVENT_POLL_NOTIFIED_S = 0.5  # the same on PostgreSQL, whose NOTIFY wakes the stream at once: a fallback
EVENT_PAGE = 200
ROW_CHECK_S = 1.0  # how often a quiet stream checks the job's row (finished without a logged done, deleted)
DONE_GRACE_S = 1.0
DB_RETRY_S = 1.0


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
        204: {"description": "Resumed with Last-Event-ID after the job's last event: nothing more will come."},
        **_ERRORS,
        503: {"model": ErrorResponse, "description": "The job database is unreachable (see Retry-After)."},
    },
)
async def read_job_events(
    job_id: str,
    caller: CallerDep,
    store: StoreDep,
    worker: WorkerDep,
    links: LinksDep,
    last_event_id: Annotated[
        int | None,
        Header(ge=0, description="Resume: the id of the last event received; every later one follows, once."),
    ] = None,
) -> Response:
    """Server-Sent Events, each with ``id:`` = its place in the job's event log. Without ``Last-Event-ID``: the
    current state first (``status`` + one ``artifact`` per existing file), then ``stage`` / ``progress`` /
    ``artifact`` / ``warning`` / ``status`` events, ending with ``done``. With it: every event after that id, replayed
    from the log and then live, with no gap and no repeat (a finished job replays up to ``done`` and ends)."""
    record, _ = await run_in_threadpool(worker.get, job_id)
    get_owned(record, caller)  # 404 before the stream starts
    resumed_past_the_end = last_event_id is not None and record.finished
    if resumed_past_the_end and not await run_in_threadpool(store.events_after, job_id, last_event_id or 0, 1):
        return Response(status_code=204)  # tells an EventSource to stop reconnecting
    events = _job_events(job_id, last_event_id, store, worker, links)
    return EventSourceResponse(events, ping=SSE_PING_S)


async def _job_events(
    job_id: str, after: int | None, store: JobStore, worker: JobQueue, links: Links
) -> AsyncIterator[ServerSentEvent]:
    """The stream reads the job's event log by id, so it sees events of workers in any process; this process's
    subscription only wakes it early when the job runs here."""
    subscription = worker.subscribe(job_id)
    woken = asyncio.Event()
    loop = asyncio.get_running_loop()
    unwatch = store.watch(job_id, lambda: _set_from_thread(loop, woken))
    sent_artifacts: set[str] = set()
    try:
        if after is None:
            after = await run_in_threadpool(store.last_event_id, job_id)  # before the snapshot: no gap after it
            record, position = await run_in_threadpool(worker.get, job_id)
            yield to_sse(JobUpdate("status", record, queue_position=position), links, after)
            for name in record.artifacts:
                sent_artifacts.add(name)
                yield to_sse(JobUpdate("artifact", record, artifact=name), links, after)
            if record.finished:
                yield to_sse(JobUpdate("done", record), links, after)
                return
        async for event_id, update in _log_updates(job_id, after, store, subscription, woken):
            if update.type == "artifact" and update.artifact in sent_artifacts:
                continue  # already in the opening snapshot
            yield to_sse(update, links, event_id)
            if update.type == "done":
                return
    finally:
        unwatch()
        worker.unsubscribe(subscription)


async def _log_updates(
    job_id: str, after: int, store: JobStore, subscription: Subscription, woken: asyncio.Event | None = None
) -> AsyncIterator[tuple[int, JobUpdate]]:
    """(id, update) of every logged event after ``after``, as they are appended, until the job's ``done``.

    A job that finished without a logged ``done`` (its worker could not write it) gets one from its row after a
    grace period; a job deleted meanwhile ends the stream; a database outage is waited out, the stream kept open.
    """
    finished_since: float | None = None
    last_row_check = 0.0
    while True:
        try:
            events = await run_in_threadpool(store.events_after, job_id, after, EVENT_PAGE)
            for stored in events:
                after = stored.id
                yield stored.id, update_from_event(stored)
                if stored.type == "done":
                    return
            if len(events) == EVENT_PAGE:
                continue
            if time.monotonic() - last_row_check >= ROW_CHECK_S:
                last_row_check = time.monotonic()
                record = await run_in_threadpool(store.get, job_id)
                if record is None:
                    return
                if record.finished:
                    finished_since = finished_since or time.monotonic()
                    if time.monotonic() - finished_since >= DONE_GRACE_S:
                        yield after, JobUpdate("done", record, message=record.message)
                        return
        except ServiceUnavailable:
            await asyncio.sleep(DB_RETRY_S)
            continue
        await _wake_or_poll(
            subscription, woken or asyncio.Event(), EVENT_POLL_NOTIFIED_S if store.shared else EVENT_POLL_S
        )


async def _wake_or_poll(subscription: Subscription, woken: asyncio.Event, interval_s: float) -> None:
    """Wait until this process publishes something for the job, a NOTIFY says another process did (PostgreSQL), or
    ``interval_s`` passes (a notification missed during an outage; SQLite shared by processes)."""
    waits = {asyncio.ensure_future(subscription.get()), asyncio.ensure_future(woken.wait())}
    try:
        await asyncio.wait(waits, timeout=interval_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()
    woken.clear()
    while not subscription.queue.empty():  # the log has them all: these were only wake-ups
        subscription.queue.get_nowait()


def _set_from_thread(loop: asyncio.AbstractEventLoop, woken: asyncio.Event) -> None:
    with contextlib.suppress(RuntimeError):  # the stream's loop has closed: it is gone
        loop.call_soon_threadsafe(woken.set)
