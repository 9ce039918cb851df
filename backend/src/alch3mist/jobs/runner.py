"""Running ONE job on a loaded chain, wherever the chain lives — the embedded worker's child process
(``jobs/child.py``) or, later, a task on a distributed worker.

Two halves, because the chain and the job's record may live in different processes:

* ``execute`` runs next to the chain: the job's stored parameters + its folder → ``chain.run`` → a ``ChainOutcome``
  (the manifest as JSON data, or why the chain raised). Its events go to ``on_event`` as they happen.
* ``JobRun`` runs next to the record: it turns each ``ChainEvent`` into the record's live state and a ``JobUpdate``
  (``apply``), and the outcome — or an outside stop (``Stopped``: stage timeout, shutdown, a dead process) — into
  the record's final status, error, artifacts and manifest (``finish``).

``run_job`` is both halves in one process, for a caller that has the chain and the record side by side.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from PIL import Image

from ..domain import STAGES, GenerationChain
from ..errors import Alch3mistError
from .inputs import INPUT_IMAGE, input_files, job_request
from .store import JobRecord, JobStore, event_payload

if TYPE_CHECKING:
    from ..chain import ChainEvent, GenerationRequest
    from ..storage import ArtifactStorage

__all__ = [
    "INPUT_IMAGE",
    "PROGRESS_INTERVAL_S",
    "ChainOutcome",
    "JobRun",
    "JobUpdate",
    "Stopped",
    "UpdateType",
    "execute",
    "generation_request",
    "keep_artifact",
    "log_update",
    "run_job",
]

logger = logging.getLogger(__name__)

PROGRESS_INTERVAL_S = 0.25  # at most this often a progress tick is published / stored per job

UpdateType = Literal["status", "stage", "progress", "artifact", "warning", "done"]


@dataclass
class JobUpdate:
    """Something happened to a job; ``job`` is a snapshot taken at that moment."""

    type: UpdateType
    job: JobRecord
    queue_position: int | None = None
    artifact: str | None = None
    message: str = ""
    at: float = field(default_factory=time.time)


@dataclass
class ChainOutcome:
    """What one ``chain.run`` left: its manifest (JSON data), or why it raised instead of returning one."""

    manifest: dict[str, Any] | None = None
    crash: str | None = None


@dataclass
class Stopped:
    """The job was stopped from outside the chain; ``code`` and ``message`` become its error."""

    code: Literal["stage_timeout", "interrupted", "worker_died", "worker_unavailable", "storage_error"]
    message: str
    stage: str | None = None  # the stage it happened in, when the chain may have moved on since (storage_error)


def generation_request(params: dict[str, Any], base_image: Image.Image | None) -> GenerationRequest:
    """The chain's ``GenerationRequest`` for a job's stored parameters (+ its input or parent image)."""
    from .inputs import JobInputs
    from .inputs import generation_request as with_inputs

    request: GenerationRequest = with_inputs(params, JobInputs(base_image=base_image))
    return request


def execute(
    params: dict[str, Any],
    job_dir: Path,
    chain: GenerationChain,
    on_event: Callable[[ChainEvent], None],
    cancel: threading.Event,
) -> ChainOutcome:
    """Run the chain for one job (its stored ``params``, its folder) and return the outcome; never raises."""
    try:
        request = job_request(params, job_dir)
        manifest = chain.run(request, job_dir, on_event, cancel)
        return ChainOutcome(manifest=manifest.model_dump(mode="json"))
    except Alch3mistError as exc:
        return ChainOutcome(crash=f"{exc.code}: {exc.message}")
    except Exception as exc:
        logger.exception("chain raised instead of returning a manifest", extra={"job_dir": job_dir.name})
        return ChainOutcome(crash=f"internal error: {type(exc).__name__}: {exc}")


@dataclass
class JobRun:
    """The record side of one running job: its live state, and how it ends."""

    record: JobRecord
    stage_started: float = field(default_factory=time.monotonic)
    cancel_requested: bool = False
    stopped: Stopped | None = None
    last_tick: float = 0.0

    def apply(self, event: ChainEvent) -> JobUpdate | None:
        """Fold a chain event into the record; the update to store and publish, or None for a throttled tick."""
        record = self.record
        stage = event.stage or record.stage
        if stage != record.stage:
            record.stage, record.stage_progress = stage, 0.0
            self.stage_started = time.monotonic()
        if event.type == "progress":  # other events carry no stage progress of their own
            record.stage_progress = float(event.stage_progress)
        record.progress = max(record.progress, round(float(event.progress), 4))
        record.message = event.message or record.message
        artifact = event.artifact if event.type == "artifact" else None
        if artifact and artifact not in record.artifacts:
            record.artifacts.append(artifact)
        if event.type == "warning" and event.message:
            record.warnings.append(event.message)
        if event.type == "progress" and time.monotonic() - self.last_tick < PROGRESS_INTERVAL_S:
            return None
        self.last_tick = time.monotonic()
        return JobUpdate(event.type, copy.deepcopy(record), artifact=artifact, message=event.message)

    def finish(self, outcome: ChainOutcome, job_dir: Path) -> list[JobUpdate]:
        """Set the final status, error, artifacts and manifest; the updates that tell it (late artifacts, done)."""
        record = self.record
        _apply_manifest(record, outcome.manifest)
        announced = list(record.artifacts)
        record.artifacts = artifacts_on_disk(job_dir, announced)
        record.finished_at = time.time()
        record.status, record.error = self._final_status(outcome)
        record.message = record.error["message"] if record.error else "done"
        if record.status == "succeeded":
            record.progress = record.stage_progress = 1.0
        snapshot = copy.deepcopy(record)
        # files the chain wrote without an event (manifest.json, at the very end)
        updates = [
            JobUpdate("artifact", snapshot, artifact=name) for name in snapshot.artifacts if name not in announced
        ]
        return [*updates, JobUpdate("done", snapshot, message=snapshot.message)]

    def _final_status(self, outcome: ChainOutcome) -> tuple[str, dict[str, Any] | None]:
        stage, stopped, manifest = _stage_or_none(self.record.stage), self.stopped, outcome.manifest
        status = str(manifest.get("status", "failed")) if manifest else None
        if stopped is not None and stopped.code != "interrupted":  # a timeout or a dead process says what happened
            return "failed", {"code": stopped.code, "stage": stopped.stage or stage, "message": stopped.message}
        cancelled = {"code": "cancelled", "stage": stage, "message": "cancelled by request"}
        if self.cancel_requested and status != "succeeded":
            return "cancelled", cancelled
        if stopped is not None:  # the backend stopped while the job ran
            return "failed", {"code": stopped.code, "stage": stage, "message": stopped.message}
        if manifest is None:
            message = outcome.crash or "the chain stopped without a result"
            return "failed", {"code": "internal_error", "stage": stage, "message": message}
        if status == "cancelled":
            return "cancelled", cancelled
        if status == "succeeded":
            return "succeeded", None
        return "failed", _manifest_error(manifest, self.record.stage)


def run_job(
    record: JobRecord,
    job_dir: Path,
    chain: GenerationChain,
    on_update: Callable[[JobUpdate], None],
    cancel: threading.Event,
    storage: ArtifactStorage | None = None,
    run: JobRun | None = None,
) -> JobRecord:
    """Both halves in one process: run a ``running`` record's job on ``chain``; returns the finished record.

    ``on_update`` gets every update (store it, publish it); the caller watches the clock and sets ``cancel`` (and may
    pass its own ``run`` to read the live stage from another thread). With a ``storage`` each artifact is kept there
    as it is announced — before the job shows it — and the unannounced ones (``manifest.json``) at the end."""
    run = run or JobRun(record)

    def on_event(event: ChainEvent) -> None:
        announced = event.artifact if event.type == "artifact" else None
        if storage is not None and announced and not keep_artifact(storage, run, job_dir, str(announced)):
            cancel.set()
        update = run.apply(event)
        if update is not None:
            on_update(update)

    outcome = execute(run.record.params, job_dir, chain, on_event, cancel)
    if storage is not None:
        keep_unannounced(storage, run, job_dir)
    run.cancel_requested = run.cancel_requested or cancel.is_set()
    for update in run.finish(outcome, job_dir):
        on_update(update)
    return run.record


def keep_artifact(storage: ArtifactStorage, run: JobRun, job_dir: Path, name: str) -> bool:
    """Keep one finished artifact in the storage. False when it cannot be: the job's ``stopped`` then says which
    (``storage_error``, the first failure wins) and the caller stops the chain — never a job that silently lacks a
    file."""
    job_id = run.record.id
    try:
        storage.put(job_id, name, job_dir / name)
        return True
    except Alch3mistError as exc:  # StorageError; ArtifactNotFound for a name no storage may hold
        logger.error("artifact not stored", extra={"job_id": job_id, "artifact": name, "error": exc.message})
        if run.stopped is None:
            message = f"artifact {name} could not be stored: {exc.message}"
            run.stopped = Stopped("storage_error", message, stage=run.record.stage)
        return False


def keep_unannounced(storage: ArtifactStorage, run: JobRun, job_dir: Path) -> None:
    """Keep the files the chain wrote without an artifact event (``manifest.json``, at the very end)."""
    announced = set(run.record.artifacts)
    for name in artifacts_on_disk(job_dir, []):
        if name not in announced:
            keep_artifact(storage, run, job_dir, name)


def log_update(store: JobStore, update: JobUpdate) -> None:
    """Append the update to the job's durable event log, which every API node's event stream reads."""
    payload = event_payload(
        update.job, queue_position=update.queue_position, artifact=update.artifact, message=update.message, at=update.at
    )
    store.append_event(update.job.id, update.type, payload)


def _stage_or_none(stage: str | None) -> str | None:
    return stage if stage in STAGES else None


def _apply_manifest(record: JobRecord, data: dict[str, Any] | None) -> None:
    if not data:
        return
    record.manifest = data
    record.prompt = data.get("prompt") or record.prompt
    record.seed = data.get("seed", record.seed)
    record.engine_3d = data.get("engine_3d") or data.get("engine") or record.engine_3d
    record.lora = data.get("lora")  # what ran: None when no LoRA was used, whatever was asked
    for warning in data.get("warnings") or []:
        if warning not in record.warnings:
            record.warnings.append(str(warning))


def _manifest_error(manifest: dict[str, Any], stage: str | None) -> dict[str, Any]:
    error = manifest.get("error") or {}
    failed_stage = error.get("stage") or stage
    return {
        "code": str(error.get("code") or "stage_failed"),
        "stage": _stage_or_none(failed_stage),
        "message": str(error.get("message") or f"stage '{failed_stage}' failed"),
    }


def artifacts_on_disk(job_dir: Path, announced: list[str]) -> list[str]:
    """The announced artifacts that exist, in announcement order, then any others the chain wrote."""
    if not job_dir.is_dir():
        return []
    present = {p.relative_to(job_dir).as_posix() for p in job_dir.rglob("*") if p.is_file()}
    present -= input_files(present)
    ordered = [name for name in announced if name in present]
    return ordered + sorted(present - set(ordered))
