"""Submitting a job: everything ``POST /v1/jobs`` does between reading the body and answering 202.

The route decodes the upload (an API-edge concern); this module checks what can fail before any work (the key's
parameter ceilings included), resolves a ``parent`` of the same owner into its base image and seed, admits the job
against the quotas (``policy.admit``) and queues it.
"""

from __future__ import annotations

import io
import shutil
from dataclasses import dataclass
from typing import Any

from PIL import Image

from ..config import Settings
from ..domain import ChainCatalog
from ..errors import InvalidParent, InvalidRequest
from ..prompting.llm import rewrite_messages
from ..prompting.rewrite import clean_request
from ..prompting.schema import MaterialPrompt
from ..storage import ArtifactStorage
from .policy import Caller, admit, check_ceilings
from .queue import JobQueue
from .store import JobRecord, JobStore, new_job_id
from .worker import INPUT_IMAGE, generation_request

__all__ = ["JobSubmission", "rewrite_messages_for", "submit_job"]

TEXT_FIELDS = ("request", "base_prompt", "edit_prompt")


@dataclass
class JobSubmission:
    """A job as the caller asked for it: generation parameters (unset ones left out) and where it comes from."""

    params: dict[str, Any]
    image: Image.Image | None = None
    parent: str | None = None


def submit_job(
    submission: JobSubmission,
    caller: Caller,
    settings: Settings,
    store: JobStore,
    worker: JobQueue,
    chain: ChainCatalog,
) -> tuple[JobRecord, int | None]:
    """Validate, admit, store and queue; returns the queued job (owned by ``caller``) and its queue position.

    Raises ``InvalidRequest`` (and subclasses, ``OverLimit`` included) for what would fail anyway or is above the
    key's ceilings, ``QueueFull`` / ``RateLimited`` over a quota, ``ServiceBusy`` when the whole queue is full.
    """
    # 1. Check what can fail before any work
    params = dict(submission.params)
    limits = settings.limits_for(caller.key_name)
    check_ceilings(params, limits, caller.key_name)
    _check_texts(params, settings.max_request_chars)
    base_image = _input_image(submission, caller, store, worker.storage, params)
    chain.validate(generation_request(params, base_image))
    # 2. Store the job's input
    record = JobRecord(
        id=new_job_id(),
        user=caller.user,
        key_name=caller.key_name,
        parent=submission.parent,
        seed=params.get("seed"),
        engine_3d=params.get("engine_3d"),
        params=params,
    )
    job_dir = store.job_dir(record.id)
    job_dir.mkdir(parents=True)
    try:
        if base_image is not None:
            base_image.save(job_dir / INPUT_IMAGE)
            worker.storage.put(record.id, INPUT_IMAGE, job_dir / INPUT_IMAGE)  # for a worker on another machine
        # 3. Admit it (the queue, the key's and the end user's quotas) and queue it
        with store.admission():  # two requests never both take the last place in a quota, on any API node
            admit(store, caller, limits, settings)
            worker.submit(record)
    except BaseException:
        shutil.rmtree(job_dir, ignore_errors=True)
        raise
    return worker.get(record.id)


def rewrite_messages_for(
    request: str, parent_id: str | None, caller: Caller, settings: Settings, store: JobStore
) -> list[dict[str, str]]:
    """The chat messages a caller's own model answers to rewrite ``request`` (``POST /v1/rewrite``); a ``parent``
    of the caller's adds its prompts as context, inside the same data block."""
    text = clean_request(request, settings.max_request_chars)
    earlier = None
    if parent_id is not None:
        parent = store.get(parent_id)
        if parent is None or not caller.owns(parent):
            raise InvalidParent(f"parent: no job with id {parent_id!r}")
        earlier = MaterialPrompt.model_validate(parent.prompt) if parent.prompt else None
    return rewrite_messages(text, earlier)


def _check_texts(params: dict[str, Any], limit: int) -> None:
    if params.get("rewrite_reply") is not None and params.get("request") is None:
        raise InvalidRequest("rewrite_reply: give it with the request it answers (see POST /v1/rewrite)")
    for name in TEXT_FIELDS:
        text = params.get(name)
        if text is not None and len(text) > limit:
            raise InvalidRequest(f"{name}: {len(text)} characters; the limit is {limit} (ALCH3MIST_MAX_REQUEST_CHARS)")


def _input_image(
    submission: JobSubmission, caller: Caller, store: JobStore, storage: ArtifactStorage, params: dict[str, Any]
) -> Image.Image | None:
    """The image the edit starts from: the caller's upload, or the base image (and seed) of a parent job the caller
    owns — another owner's job is "no job with id", as for a missing one."""
    if submission.image is not None and submission.parent is not None:
        raise InvalidRequest("give either image or parent, not both")
    if submission.parent is None:
        return submission.image
    parent = store.get(submission.parent)
    if parent is None or not caller.owns(parent):
        raise InvalidParent(f"parent: no job with id {submission.parent!r}")
    if not storage.exists(parent.id, "base.png"):  # from the storage: the parent may have run on another machine
        raise InvalidParent(f"parent: job {parent.id} has no base image (status {parent.status})")
    if params.get("seed") is None:
        params["seed"] = parent.seed if parent.seed is not None else parent.params.get("seed")
    if parent.prompt:
        params["earlier"] = parent.prompt  # context for the rewrite, as data inside its delimiters
    with Image.open(io.BytesIO(storage.read_bytes(parent.id, "base.png"))) as image:
        image.load()
        return image.copy()
