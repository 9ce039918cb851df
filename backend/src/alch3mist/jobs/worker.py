"""The one-GPU queue: jobs run one at a time, first in first out, in a background thread.

Life of a job::

    submit() ──► queued ──► running ──► succeeded | failed | cancelled
                   │  (FIFO, live queue_position)   ▲
                   └── cancel() ──► cancelled ───────┘ (at once while queued; at the next step while running)

* ``chain.run`` never raises for a stage failure: its ``Manifest`` says which stage failed and the artifacts
  written before it stay on disk and in the job.
* Per-stage timeout: a watchdog sets the job's cancel event when one stage runs longer than
  ``Settings.stage_timeout_s``; the job ends ``failed`` with code ``stage_timeout`` naming the stage.
* Artifacts are kept in the artifact storage (``alch3mist.storage``) as each one is announced, before the job shows
  it; a file the chain wrote without an event (``manifest.json``) when the job ends. A file that cannot be kept
  fails the job with ``storage_error`` naming it (and stops the chain), never a job that silently lacks a file.
* Restart: jobs found ``running`` in the store were interrupted by a dead process; they end ``failed`` with
  ``RESTART_REASON`` (not retried: a job that killed the process — e.g. out of memory — would kill it again, and
  the caller can resubmit with the same seed). Jobs found ``queued`` run again, in their original order.

Updates go to the store and to subscribers (``subscribe``) as ``JobUpdate`` objects; the API turns them into
Server-Sent Events.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import functools
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..config import Settings
from ..domain import STAGES, GenerationChain
from ..errors import Alch3mistError, JobNotActive, JobNotFound
from ..storage import ArtifactStorage, LocalStorage
from .inputs import input_files, job_request
from .store import JobRecord, JobStore

__all__ = [
    "RESTART_REASON",
    "JobUpdate",
    "Subscription",
    "Worker",
]

logger = logging.getLogger(__name__)

RESTART_REASON = "backend restarted while this job was running"
STOP_REASON = "backend stopped while this job was running"
PROGRESS_INTERVAL_S = 0.25  # at most this often a progress tick is published / stored per job
STOP_GRACE_S = 30.0  # how long a timed-out / stopping stage gets to reach a step boundary

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
class Subscription:
    """A subscriber's queue, fed from the worker thread through its event loop."""

    job_id: str
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[JobUpdate] = field(default_factory=asyncio.Queue)

    async def get(self) -> JobUpdate:
        return await self.queue.get()


@dataclass
class _Running:
    record: JobRecord
    cancel: threading.Event = field(default_factory=threading.Event)
    stage_started: float = field(default_factory=time.monotonic)
    cancel_requested: bool = False
    timed_out_stage: str | None = None
    last_tick: float = 0.0
    storage_error: dict[str, Any] | None = None


class Worker:
    """Owns the FIFO queue and the single generation thread."""

    def __init__(
        self, store: JobStore, chain: GenerationChain, settings: Settings, storage: ArtifactStorage | None = None
    ) -> None:
        self.store = store
        self.chain = chain
        self.settings = settings
        self.storage = storage or LocalStorage(store.data_dir / "jobs")
        self._lock = threading.Lock()
        self._wakeup = threading.Condition(self._lock)
        self._queue: deque[str] = deque()
        self._running: _Running | None = None
        self._subscribers: dict[str, list[Subscription]] = {}
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="alch3mist-worker", daemon=True)

    # --- lifecycle ---

    def start(self) -> None:
        """Recover from the last run (see module docstring), then start taking jobs."""
        interrupted = self.store.fail_interrupted(RESTART_REASON)
        if interrupted:
            logger.warning("jobs interrupted by a restart marked failed", extra={"job_ids": interrupted})
        with self._lock:
            self._queue.extend(record.id for record in self.store.queued())
            logger.info("worker starting", extra={"queued": len(self._queue)})
        self._thread.start()

    def stop(self, timeout: float = STOP_GRACE_S) -> None:
        """Stop taking jobs; a running job is cancelled and ends failed with ``STOP_REASON``."""
        with self._lock:
            self._stopping = True
            if self._running is not None:
                self._running.cancel.set()
            self._wakeup.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)

    # --- API-facing operations ---

    def submit(self, record: JobRecord) -> JobRecord:
        """Store and enqueue (admission — quotas and limits — is ``jobs.policy``'s, before this)."""
        with self._lock:
            record.created_at = time.time()  # under the lock: creation order = queue order (FIFO)
            self.store.insert(record)
            self._queue.append(record.id)
            self._wakeup.notify_all()
        logger.info("job queued", extra={"job_id": record.id, "key": record.key_name})  # no end-user id in logs
        return record

    def get(self, job_id: str) -> tuple[JobRecord, int | None]:
        """The job's current state (live while running) and its queue position (1 = next)."""
        with self._lock:
            if self._running is not None and self._running.record.id == job_id:
                return copy.deepcopy(self._running.record), None
            position = self._position(job_id)
        record = self.store.get(job_id)
        if record is None:
            raise JobNotFound(f"no job with id {job_id!r}")
        return record, position if record.status == "queued" else None

    def cancel(self, job_id: str) -> tuple[JobRecord, int | None]:
        """Cancel a queued job at once, or ask a running one to stop at its next step boundary."""
        snapshot: JobRecord | None
        with self._lock:
            running = self._running
            if running is not None and running.record.id == job_id and not running.record.finished:
                running.cancel_requested = True
                running.cancel.set()
                running.record.message = "cancelling: stopping at the next step"
                snapshot = copy.deepcopy(running.record)
            elif job_id in self._queue:
                self._queue.remove(job_id)
                snapshot = self._finish_queued(job_id)
            else:
                snapshot = None
        if snapshot is None:
            record = self.store.get(job_id)
            if record is None:
                raise JobNotFound(f"no job with id {job_id!r}")
            raise JobNotActive(f"job {job_id} already {record.status}; only queued or running jobs can be cancelled")
        logger.info("job cancel requested", extra={"job_id": job_id, "status": snapshot.status})
        self._publish(JobUpdate("done" if snapshot.finished else "status", snapshot, message=snapshot.message))
        if snapshot.finished:
            self._publish_positions()
        return snapshot, None

    def queue_length(self) -> int:
        with self._lock:
            return len(self._queue)

    def running_id(self) -> str | None:
        with self._lock:
            return self._running.record.id if self._running else None

    def subscribe(self, job_id: str) -> Subscription:
        subscription = Subscription(job_id, asyncio.get_running_loop())
        with self._lock:
            self._subscribers.setdefault(job_id, []).append(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        with self._lock:
            subscribers = self._subscribers.get(subscription.job_id, [])
            if subscription in subscribers:
                subscribers.remove(subscription)
            if not subscribers:
                self._subscribers.pop(subscription.job_id, None)

    # --- the generation thread ---

    def _loop(self) -> None:
        while True:
            with self._lock:
                while not self._queue and not self._stopping:
                    self._wakeup.wait()
                if self._stopping:
                    return
                running = self._start_next()
            self._publish_positions()
            if running is not None:
                self._run_job(running)

    def _start_next(self) -> _Running | None:
        """Lock held: pop the oldest queued job and make it the running one (no gap where it is neither)."""
        record = self.store.get(self._queue.popleft())
        if record is None or record.status != "queued":
            return None
        record.status, record.started_at, record.message = "running", time.time(), "starting"
        self._running = _Running(record)
        return self._running

    def _run_job(self, running: _Running) -> None:
        record = running.record
        self.store.save(copy.deepcopy(record))
        self._publish(JobUpdate("status", copy.deepcopy(record), message="starting"))
        logger.info("job started", extra={"job_id": record.id})
        try:
            manifest, crash = self._run_chain(running)
            self._finish(running, manifest, crash)
        finally:
            with self._lock:
                self._running = None

    def _run_chain(self, running: _Running) -> tuple[Any, str | None]:
        """Run the chain in its own thread and watch it for stage timeouts; returns (manifest, crash message)."""
        outcome: dict[str, Any] = {}
        job_dir = self.store.job_dir(running.record.id)

        def target() -> None:
            try:
                request = job_request(running.record.params, job_dir, self.settings)
                on_event = functools.partial(self._on_event, running)
                outcome["manifest"] = self.chain.run(request, job_dir, on_event, running.cancel)
            except Alch3mistError as exc:
                outcome["crash"] = f"{exc.code}: {exc.message}"
            except Exception as exc:
                logger.exception("chain raised instead of returning a manifest", extra={"job_id": running.record.id})
                outcome["crash"] = f"internal error: {type(exc).__name__}: {exc}"

        thread = threading.Thread(target=target, name=f"alch3mist-job-{running.record.id[:8]}", daemon=True)
        thread.start()
        self._watch(running, thread)
        return outcome.get("manifest"), outcome.get("crash")

    def _watch(self, running: _Running, thread: threading.Thread) -> None:
        stop_deadline: float | None = None
        while thread.is_alive():
            thread.join(0.2)
            now = time.monotonic()
            if stop_deadline is None and running.cancel.is_set():
                stop_deadline = now + STOP_GRACE_S
            elif stop_deadline is None and now - running.stage_started > self.settings.stage_timeout_s:
                running.timed_out_stage = running.record.stage or "starting"
                logger.error("stage timed out", extra={"job_id": running.record.id, "stage": running.timed_out_stage})
                running.cancel.set()
            elif stop_deadline is not None and now > stop_deadline:
                logger.error(
                    "stage did not stop at a step boundary; moving on while it finishes in the background",
                    extra={"job_id": running.record.id, "stage": running.record.stage},
                )
                return

    def _on_event(self, running: _Running, event: Any) -> None:
        """A ``ChainEvent`` from the chain thread: update the live record, store it, publish it."""
        record = running.record
        kind = str(getattr(event, "type", ""))
        if kind == "artifact" and getattr(event, "artifact", None):
            self._keep(running, str(event.artifact))  # stored before the job shows it
        stage = getattr(event, "stage", None) or record.stage
        message = str(getattr(event, "message", "") or "")
        with self._lock:
            if stage != record.stage:
                record.stage, record.stage_progress = stage, 0.0
                running.stage_started = time.monotonic()
            if kind == "progress":  # other events carry no stage progress of their own
                record.stage_progress = float(getattr(event, "stage_progress", 0.0) or 0.0)
            record.progress = max(record.progress, round(float(getattr(event, "progress", 0.0) or 0.0), 4))
            record.message = message or record.message
            artifact = getattr(event, "artifact", None) if kind == "artifact" else None
            if artifact and artifact not in record.artifacts:
                record.artifacts.append(str(artifact))
            if kind == "warning" and message:
                record.warnings.append(message)
            if kind == "progress" and time.monotonic() - running.last_tick < PROGRESS_INTERVAL_S:
                return
            running.last_tick = time.monotonic()
            snapshot = copy.deepcopy(record)
        self.store.save(snapshot)
        self._publish(JobUpdate(_update_type(kind), snapshot, artifact=artifact, message=message))

    def _finish(self, running: _Running, manifest: Any, crash: str | None) -> None:
        with self._lock:
            kept = set(running.record.artifacts)
        for name in _artifacts_on_disk(self.store.job_dir(running.record.id), []):
            if name not in kept:  # written without an event (manifest.json, at the very end)
                self._keep(running, name)
        with self._lock:
            record = running.record
            _apply_manifest(record, manifest)
            announced = list(record.artifacts)
            record.artifacts = _artifacts_on_disk(self.store.job_dir(record.id), announced)
            record.finished_at = time.time()
            record.status, record.error = self._final_status(running, manifest, crash)
            if running.storage_error is not None:
                record.status, record.error = "failed", running.storage_error
            record.message = record.error["message"] if record.error else "done"
            if record.status == "succeeded":
                record.progress = record.stage_progress = 1.0
            snapshot = copy.deepcopy(record)
        self.store.save(snapshot)
        for name in snapshot.artifacts:  # files the chain wrote without an event (manifest.json, at the very end)
            if name not in announced:
                self._publish(JobUpdate("artifact", snapshot, artifact=name))
        log = logger.info if snapshot.status == "succeeded" else logger.warning
        log("job finished", extra={"job_id": snapshot.id, "status": snapshot.status, "error": snapshot.error})
        self._publish(JobUpdate("done", snapshot, message=snapshot.message))

    def _keep(self, running: _Running, name: str) -> None:
        """Store one finished artifact; if it cannot be, the job stops and fails naming it (first failure wins)."""
        job_id = running.record.id
        try:
            self.storage.put(job_id, name, self.store.job_dir(job_id) / name)
        except Alch3mistError as exc:  # StorageError; ArtifactNotFound for a name no storage may hold
            logger.error("artifact not stored", extra={"job_id": job_id, "artifact": name, "error": exc.message})
            if running.storage_error is None:
                stage = _stage_or_none(running.record.stage)
                message = f"artifact {name} could not be stored: {exc.message}"
                running.storage_error = {"code": "storage_error", "stage": stage, "message": message}
            running.cancel.set()

    def _final_status(self, running: _Running, manifest: Any, crash: str | None) -> tuple[str, dict[str, Any] | None]:
        stage = running.record.stage
        if running.timed_out_stage is not None:
            return "failed", {
                "code": "stage_timeout",
                "stage": _stage_or_none(running.timed_out_stage),
                "message": f"stage '{running.timed_out_stage}' ran longer than {self.settings.stage_timeout_s:g} s "
                "(ALCH3MIST_STAGE_TIMEOUT_S) and was stopped",
            }
        if self._stopping and not running.cancel_requested:
            return "failed", {"code": "interrupted", "stage": _stage_or_none(stage), "message": STOP_REASON}
        if crash is not None or manifest is None:
            message = crash or "the chain stopped without a result"
            return "failed", {"code": "internal_error", "stage": _stage_or_none(stage), "message": message}
        status = str(getattr(manifest, "status", "failed"))
        if status == "cancelled" or (running.cancel_requested and status != "succeeded"):
            return "cancelled", {"code": "cancelled", "stage": _stage_or_none(stage), "message": "cancelled by request"}
        if status == "succeeded":
            return "succeeded", None
        return "failed", _manifest_error(manifest, stage)

    # --- helpers (call with the lock held where noted) ---

    def _position(self, job_id: str) -> int | None:
        """Lock held."""
        try:
            return self._queue.index(job_id) + 1
        except ValueError:
            return None

    def _finish_queued(self, job_id: str) -> JobRecord | None:
        """Lock held: a queued job cancelled before it started."""
        record = self.store.get(job_id)
        if record is None:
            return None
        record.status, record.finished_at, record.message = "cancelled", time.time(), "cancelled while queued"
        record.error = {"code": "cancelled", "stage": None, "message": "cancelled while queued"}
        self.store.save(record)
        return record

    def _publish_positions(self) -> None:
        """Tell subscribers of queued jobs their new place in the line."""
        with self._lock:
            watched = [(job_id, index + 1) for index, job_id in enumerate(self._queue) if job_id in self._subscribers]
        for job_id, position in watched:
            record = self.store.get(job_id)
            if record is not None:
                self._publish(JobUpdate("status", record, queue_position=position, message=f"queued ({position})"))

    def _publish(self, update: JobUpdate) -> None:
        with self._lock:
            subscribers = list(self._subscribers.get(update.job.id, []))
        for subscription in subscribers:
            with contextlib.suppress(RuntimeError):  # the subscriber's loop has closed: it is gone
                subscription.loop.call_soon_threadsafe(subscription.queue.put_nowait, update)


def _update_type(kind: str) -> UpdateType:
    return kind if kind in ("stage", "progress", "artifact", "warning") else "status"  # type: ignore[return-value]


def _stage_or_none(stage: str | None) -> str | None:
    return stage if stage in STAGES else None


def _as_dict(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if hasattr(value, "model_dump"):
        return dict(value.model_dump(mode="json"))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return dict(value) if isinstance(value, dict) else None


def _apply_manifest(record: JobRecord, manifest: Any) -> None:
    data = _as_dict(manifest)
    if not data:
        return
    record.manifest = data
    record.prompt = _as_dict(data.get("prompt")) or record.prompt
    record.seed = data.get("seed", record.seed)
    record.engine_3d = data.get("engine_3d") or data.get("engine") or record.engine_3d
    record.lora = _as_dict(data.get("lora"))  # what ran: None when no LoRA was used, whatever was asked
    for warning in data.get("warnings") or []:
        if warning not in record.warnings:
            record.warnings.append(str(warning))


def _manifest_error(manifest: Any, stage: str | None) -> dict[str, Any]:
    error = _as_dict(getattr(manifest, "error", None)) or {}
    failed_stage = error.get("stage") or stage
    return {
        "code": str(error.get("code") or "stage_failed"),
        "stage": _stage_or_none(failed_stage),
        "message": str(error.get("message") or f"stage '{failed_stage}' failed"),
    }


def _artifacts_on_disk(job_dir: Path, announced: list[str]) -> list[str]:
    """The announced artifacts that exist, in announcement order, then any others the chain wrote."""
    if not job_dir.is_dir():
        return []
    present = {p.relative_to(job_dir).as_posix() for p in job_dir.rglob("*") if p.is_file()}
    present -= input_files(present)
    ordered = [name for name in announced if name in present]
    return ordered + sorted(present - set(ordered))
