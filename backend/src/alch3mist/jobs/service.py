"""Submitting a job: everything ``POST /v1/jobs`` does between reading the body and answering 202.

The route decodes the uploads (an API-edge concern); this module checks what can fail before any work (the key's
parameter ceilings included, and the mesh, read by the same ``load_mesh`` the job runs), resolves a ``parent`` of the
same owner into its base image — or, for a mesh job, its mesh — and seed, stores the inputs in the job folder
(``jobs/inputs.py``), admits the job against the quotas (``policy.admit``) and queues it.
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
from .inputs import JobInputs, MeshUpload, generation_request, input_mesh_name, load_upload, save_inputs
from .policy import Caller, admit, check_ceilings
from .queue import JobQueue
from .store import JobRecord, JobStore, new_job_id

__all__ = ["JobSubmission", "rewrite_messages_for", "submit_job"]

TEXT_FIELDS = ("request", "base_prompt", "edit_prompt")


@dataclass
class JobSubmission:
    """A job as the caller asked for it: generation parameters (unset ones left out) and where it comes from."""

    params: dict[str, Any]
    image: Image.Image | None = None
    mesh: bytes | None = None
    reference_image: Image.Image | None = None
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
    check_ceilings(params.get("texture") or {}, limits, caller.key_name, prefix="texture.")  # its views cost the same
    _check_texts(params, settings.max_request_chars)
    inputs = _inputs(submission, caller, settings, store, worker.storage, params)
    if inputs.mesh is not None:
        params.pop("engine_3d", None)  # the retexture flow runs no 3D engine: the job does not name one
        params["mesh_max_faces"] = settings.mesh_max_faces  # the limit it was accepted with, for when it runs
    chain.validate(generation_request(params, inputs))
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
        for name in save_inputs(job_dir, inputs):
            worker.storage.put(record.id, name, job_dir / name)  # for a worker on another machine, and for refining
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


def _inputs(
    submission: JobSubmission,
    caller: Caller,
    settings: Settings,
    store: JobStore,
    storage: ArtifactStorage,
    params: dict[str, Any],
) -> JobInputs:
    """What the job starts from: the caller's uploads, or what a parent job the caller owns started from (its base
    image, or its mesh) and its seed — another owner's job is "no job with id", as for a missing one. A parent's
    files come from the storage: it may have run on another machine."""
    if submission.parent is not None and (submission.image is not None or submission.mesh is not None):
        raise InvalidRequest(f"give either {'image' if submission.image is not None else 'mesh'} or parent, not both")
    if submission.parent is None:
        mesh = None if submission.mesh is None else load_upload(_upload(submission.mesh, params), settings)
        if mesh is None and any(option in params for option in ("mesh_filename", "decimate")):
            given = " and ".join(option for option in ("mesh_filename", "decimate") if option in params)
            raise InvalidRequest(f"{given}: give them with a mesh")
        return JobInputs(submission.image, mesh, submission.mesh, submission.reference_image)
    parent = store.get(submission.parent)
    if parent is None or not caller.owns(parent):
        raise InvalidParent(f"parent: no job with id {submission.parent!r}")
    if params.get("seed") is None:
        params["seed"] = parent.seed if parent.seed is not None else parent.params.get("seed")
    if parent.prompt:
        params["earlier"] = parent.prompt  # context for the rewrite, as data inside its delimiters
    parent_mesh = input_mesh_name(storage.names(parent.id))
    if parent_mesh is not None:  # refine the material of the same mesh
        for option in ("mesh_filename", "decimate"):
            if option in parent.params:
                params.setdefault(option, parent.params[option])
        data = storage.read_bytes(parent.id, parent_mesh)
        return JobInputs(None, load_upload(_upload(data, params), settings), data, submission.reference_image)
    if not storage.exists(parent.id, "base.png"):
        raise InvalidParent(f"parent: job {parent.id} has no base image (status {parent.status})")
    with Image.open(io.BytesIO(storage.read_bytes(parent.id, "base.png"))) as image:
        image.load()
        return JobInputs(image.copy(), reference_image=submission.reference_image)


def _upload(data: bytes, params: dict[str, Any]) -> MeshUpload:
    return MeshUpload(data, params.get("mesh_filename"), bool(params.get("decimate")))
