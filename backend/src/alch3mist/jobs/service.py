"""Submitting a job: everything ``POST /v1/jobs`` does between reading the body and answering 202.

The route decodes the upload (an API-edge concern); this module checks what can fail before any work, resolves a
``parent`` into its base image and seed, stores the input and queues the job.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from typing import Any

from PIL import Image

from ..config import Settings
from ..domain import GenerationChain
from ..errors import InvalidParent, InvalidRequest
from .store import JobRecord, JobStore, new_job_id
from .worker import INPUT_IMAGE, Worker, generation_request

__all__ = ["JobSubmission", "submit_job"]

TEXT_FIELDS = ("request", "base_prompt", "edit_prompt")


@dataclass
class JobSubmission:
    """A job as the caller asked for it: generation parameters (unset ones left out) and where it comes from."""

    params: dict[str, Any]
    image: Image.Image | None = None
    parent: str | None = None
    user: str | None = None
    key_name: str | None = None


def submit_job(
    submission: JobSubmission, settings: Settings, store: JobStore, worker: Worker, chain: GenerationChain
) -> tuple[JobRecord, int | None]:
    """Validate, store and queue; returns the queued job and its queue position.

    Raises ``InvalidRequest`` (and subclasses) for what would fail anyway, ``QueueFull`` over a limit.
    """
    # 1. Check what can fail before any work
    params = dict(submission.params)
    _check_lengths(params, settings.max_request_chars)
    base_image = _input_image(submission, store, params)
    chain.validate(generation_request(params, base_image))
    # 2. Store the job and its input
    record = JobRecord(
        id=new_job_id(),
        user=submission.user,
        key_name=submission.key_name,
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
        # 3. Queue it
        worker.submit(record, settings.max_queued_per_user)
    except BaseException:
        shutil.rmtree(job_dir, ignore_errors=True)
        raise
    return worker.get(record.id)


def _check_lengths(params: dict[str, Any], limit: int) -> None:
    for name in TEXT_FIELDS:
        text = params.get(name)
        if text is not None and len(text) > limit:
            raise InvalidRequest(f"{name}: {len(text)} characters; the limit is {limit} (ALCH3MIST_MAX_REQUEST_CHARS)")


def _input_image(submission: JobSubmission, store: JobStore, params: dict[str, Any]) -> Image.Image | None:
    """The image the edit starts from: the caller's upload, or the parent job's base image (with its seed)."""
    if submission.image is not None and submission.parent is not None:
        raise InvalidRequest("give either image or parent, not both")
    if submission.parent is None:
        return submission.image
    parent = store.get(submission.parent)
    if parent is None:
        raise InvalidParent(f"parent: no job with id {submission.parent!r}")
    base = store.job_dir(parent.id) / "base.png"
    if not base.is_file():
        raise InvalidParent(f"parent: job {parent.id} has no base image (status {parent.status})")
    if params.get("seed") is None:
        params["seed"] = parent.seed if parent.seed is not None else parent.params.get("seed")
    with Image.open(base) as image:
        image.load()
        return image.copy()
