"""The one-GPU queue: jobs run one at a time, first in first out, on a chain that lives in a child process.

Life of a job::

    submit() ──► queued ──► running ──► succeeded | failed | cancelled
                   │  (FIFO, live queue_position)   ▲
                   └── cancel() ──► cancelled ───────┘ (at once while queued; at the next step while running)

* The chain runs in a child process (``jobs/child.py``: spawned, it loads the models once and takes one job at a
  time); this process keeps the queue, the store and the subscribers, and turns the child's chain events into
  store writes and updates (``jobs/runner.py``). No model is loaded here: the API reads what the chain runs and
  validates requests through ``ChainView``.
* ``chain.run`` never raises for a stage failure: its manifest says which stage failed and the artifacts written
  before it stay on disk and in the job.
* Per-stage timeout: when one stage runs longer than ``Settings.stage_timeout_s`` the job's cancel is set and it
  ends ``failed`` with code ``stage_timeout`` naming the stage. A stage that does not stop within
  ``Settings.stage_kill_grace_s`` (nor a cancelled or stopping one) gets its process SIGKILLed; a new child is
  started — reloading the models — before the next job, so two jobs never share the GPU.
* A child that dies by itself (out of memory, a crash in native code) fails its job with code ``worker_died`` and
  is replaced the same way; the queue goes on.
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
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..config import Settings
from ..domain import ChainInfo
from ..errors import JobNotActive, JobNotFound, ModelLoadError, ServiceUnavailable
from ..storage import ArtifactStorage, LocalStorage
from .child import DEFAULT_CHAIN_FACTORY, ChainProcess, ChildDied, JobDone, JobEvent, Ready
from .runner import (
    INPUT_IMAGE,
    ChainOutcome,
    JobRun,
    JobUpdate,
    Stopped,
    generation_request,
    keep_artifact,
    keep_unannounced,
    log_update,
)
from .store import JobRecord, JobStore

if TYPE_CHECKING:
    from ..chain import ChainEvent, GenerationRequest

__all__ = [
    "INPUT_IMAGE",
    "RESTART_REASON",
    "STOP_REASON",
    "ChainView",
    "JobUpdate",
    "Subscription",
    "Worker",
    "generation_request",
]

logger = logging.getLogger(__name__)

RESTART_REASON = "backend restarted while this job was running"
STOP_REASON = "backend stopped while this job was running"
DATABASE_RETRY_S = 1.0  # how long the worker waits before trying an unreachable job database again
POLL_S = 0.2  # how often the generation thread looks at the clock, cancel and stop while a job runs
INFO_TIMEOUT_S = 15.0  # /v1/info asks the child (engine health checks); then the info reported at load is used
LORAS_TIMEOUT_S = 5.0  # validation asks the child for the LoRA names now; then the last known ones are used


@dataclass
class Subscription:
    """A subscriber's queue, fed from the worker thread through its event loop."""

    job_id: str
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[JobUpdate] = field(default_factory=asyncio.Queue)

    async def get(self) -> JobUpdate:
        return await self.queue.get()


class ChainView:
    """The chain in the child process, as the API process sees it (a ``ChainCatalog``): what it runs, and request
    validation in this process with the rules the child reported — no model loaded here."""

    def __init__(self, worker: Worker) -> None:
        self._worker = worker

    def info(self) -> ChainInfo:
        """Live from the child (engine health, LoRAs); what it reported at load when it does not answer in time."""
        child, ready = self._worker.chain_process()
        answer = child.query("info", INFO_TIMEOUT_S) if child is not None else None
        return answer if isinstance(answer, ChainInfo) else ready.info

    def validate(self, req: GenerationRequest) -> None:
        from ..chain import validate_request

        child, ready = self._worker.chain_process()
        answer = child.query("loras", LORAS_TIMEOUT_S) if child is not None else None
        validate_request(req, ready.rules, answer if isinstance(answer, list) else ready.loras)


class Worker:
    """Owns the FIFO queue, the generation thread and the chain process (``chain_factory``: ``module:function``
    building the chain from the ``Settings``, called in the child)."""

    def __init__(
        self,
        store: JobStore,
        settings: Settings,
        chain_factory: str = DEFAULT_CHAIN_FACTORY,
        storage: ArtifactStorage | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.storage = storage or LocalStorage(store.data_dir / "jobs")
        self.chain_factory = chain_factory
        self.chain = ChainView(self)
        self._lock = threading.Lock()
        self._wakeup = threading.Condition(self._lock)
        self._queue: deque[str] = deque()
        self._running: JobRun | None = None
        self._subscribers: dict[str, list[Subscription]] = {}
        self._stopping = False
        self._child: ChainProcess | None = None
        self._ready: Ready | None = None  # what the last child reported when it had loaded the chain
        self._thread = threading.Thread(target=self._loop, name="alch3mist-worker", daemon=True)

    # --- lifecycle ---

    def start(self) -> None:
        """Recover from the last run (see module docstring), load the chain in its process, start taking jobs.

        Blocks until the models are loaded; raises ``ModelLoadError`` when they cannot be."""
        interrupted = self.store.fail_interrupted(RESTART_REASON)
        if interrupted:
            logger.warning("jobs interrupted by a restart marked failed", extra={"job_ids": interrupted})
        try:
            self._start_child()
        except ChildDied as died:
            raise ModelLoadError(
                f"the worker process died while loading the models (exit code {died.exitcode})"
            ) from died
        with self._lock:
            self._queue.extend(record.id for record in self.store.queued())
            logger.info("worker starting", extra={"queued": len(self._queue)})
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Stop taking jobs; a running job is cancelled (its process killed after the grace period) and ends failed
        with ``STOP_REASON``; then the chain process exits."""
        with self._lock:
            self._stopping = True
            self._wakeup.notify_all()
        if self._thread.is_alive():
            self._thread.join(self.settings.stage_kill_grace_s + 15 if timeout is None else timeout)
        child, self._child = self._child, None
        if child is not None:
            child.stop(timeout=10)

    def chain_process(self) -> tuple[ChainProcess | None, Ready]:
        """The chain process now (None while one is being started) and what the last one reported when ready."""
        if self._ready is None:
            raise RuntimeError("the worker has not loaded the chain yet: call start() first")
        return self._child, self._ready

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
                if self._child is not None:  # else the generation thread sets it when it hands the job over
                    self._child.cancel.set()
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
            try:
                with self._lock:
                    while not self._queue and not self._stopping:
                        self._wakeup.wait()
                    if self._stopping:
                        return
                    running = self._start_next()
                self._publish_positions()
            except ServiceUnavailable:  # the job database is down: the job stays first in line; try again soon
                logger.warning("job database unreachable: waiting before the next job")
                time.sleep(DATABASE_RETRY_S)
                continue
            if running is not None:
                self._run_job(running)

    def _start_next(self) -> JobRun | None:
        """Lock held: pop the oldest queued job and make it the running one (no gap where it is neither)."""
        record = self.store.get(self._queue[0])  # may raise ServiceUnavailable: then the job stays queued
        self._queue.popleft()
        if record is None or record.status != "queued":
            return None
        record.status, record.started_at, record.message = "running", time.time(), "starting"
        self._running = JobRun(record)
        return self._running

    def _run_job(self, run: JobRun) -> None:
        record = run.record
        self._save(copy.deepcopy(record))
        self._publish(JobUpdate("status", copy.deepcopy(record), message="starting"))
        logger.info("job started", extra={"job_id": record.id})
        try:
            self._finish(run, self._drive(run))
        finally:
            with self._lock:
                self._running = None
        if self._child is None and not self._stopping:
            self._replace_child()  # before the next job starts: it never meets a stage of this one

    def _drive(self, run: JobRun) -> ChainOutcome:
        """Hand the job to the chain process and follow it to its end (or kill the process); the chain's outcome."""
        if self._child is not None and not self._child.alive:  # it died between jobs: this one has not started yet
            logger.error("worker process died while idle", extra={"exit_code": self._child.process.exitcode})
            self._child.kill()
            self._child = None
        child = self._child or self._replace_child()
        if child is None:
            unavailable = "the worker process could not load the models (see the backend log)"
            run.stopped = (
                Stopped("interrupted", STOP_REASON) if self._stopping else Stopped("worker_unavailable", unavailable)
            )
            return ChainOutcome()
        try:
            child.run(run.record.id, run.record.params, self.store.job_dir(run.record.id))
            run.stage_started = time.monotonic()
            kill_at: float | None = None
            while True:
                message = child.receive(POLL_S)
                if isinstance(message, JobEvent):
                    self._on_event(run, message.event)
                elif isinstance(message, JobDone):
                    return message.outcome
                kill_at = kill_at or self._stop_requested(run, child)
                if kill_at is not None and time.monotonic() > kill_at:
                    self._kill(run, child)
                    return ChainOutcome()
        except ChildDied as died:
            self._child_died(run, died)
            return ChainOutcome()

    def _stop_requested(self, run: JobRun, child: ChainProcess) -> float | None:
        """Whether the job must stop (cancel, shutdown, stage timeout): then its cancel is set and the time when its
        process is killed if the stage has not stopped by then is returned."""
        stage = run.record.stage or "starting"
        if run.cancel_requested:
            pass
        elif self._stopping:
            run.stopped = Stopped("interrupted", STOP_REASON)
        elif time.monotonic() - run.stage_started > self.settings.stage_timeout_s:
            logger.error("stage timed out", extra={"job_id": run.record.id, "stage": stage})
            run.stopped = Stopped("stage_timeout", f"{self._timeout_text(stage)} and was stopped")
        else:
            return None
        child.cancel.set()
        return time.monotonic() + self.settings.stage_kill_grace_s

    def _kill(self, run: JobRun, child: ChainProcess) -> None:
        """The stage ignored its cancel past the grace period: kill its process (a new one is started next)."""
        stage = run.record.stage or "starting"
        logger.error(
            "stage did not stop within the grace period: killing its worker process",
            extra={"job_id": run.record.id, "stage": stage, "pid": child.pid},
        )
        child.kill()
        self._child = None
        if run.stopped is not None and run.stopped.code == "stage_timeout":
            run.stopped.message = (
                f"{self._timeout_text(stage)} and did not stop within {self.settings.stage_kill_grace_s:g} s "
                "(ALCH3MIST_STAGE_KILL_GRACE_S): its worker process was killed and restarted"
            )

    def _child_died(self, run: JobRun, died: ChildDied) -> None:
        stage = run.record.stage or "starting"
        logger.error(
            "worker process died during a job",
            extra={"job_id": run.record.id, "stage": stage, "exit_code": died.exitcode},
        )
        self._child = None
        if run.stopped is None or run.stopped.code == "interrupted":
            run.stopped = Stopped(
                "worker_died",
                f"worker process died (exit code {died.exitcode}) during stage '{stage}' — out of memory, a crash in "
                "native code, or killed; a new one is started for the next job",
            )

    def _timeout_text(self, stage: str) -> str:
        return f"stage '{stage}' exceeded {self.settings.stage_timeout_s:g} s (ALCH3MIST_STAGE_TIMEOUT_S)"

    def _start_child(self) -> ChainProcess:
        """Start a chain process and wait until its models are loaded (blocks for as long as that takes)."""
        child = ChainProcess(self.chain_factory, self.settings)
        ready = child.wait_ready(give_up=lambda: self._stopping)
        self._child, self._ready = child, ready
        logger.info("worker process ready", extra={"pid": ready.pid, "preset": ready.info.preset})
        return child

    def _replace_child(self) -> ChainProcess | None:
        """A new chain process after one was killed or died; None (logged) when it cannot load the chain."""
        try:
            return self._start_child()
        except (ModelLoadError, ChildDied) as exc:
            if not self._stopping:
                logger.error("worker process could not be started", extra={"error": str(exc)})
            return None

    def _on_event(self, run: JobRun, event: ChainEvent) -> None:
        """A ``ChainEvent`` from the chain process: update the live record, store it, publish it."""
        if event.type == "artifact" and event.artifact:
            self._keep(run, str(event.artifact))  # stored before the job shows it
        with self._lock:
            update = run.apply(event)
        if update is None:
            return
        self._save(update.job)
        self._publish(update)

    def _finish(self, run: JobRun, outcome: ChainOutcome) -> None:
        job_dir = self.store.job_dir(run.record.id)
        keep_unannounced(self.storage, run, job_dir)  # the chain has ended: nothing left to stop on a failure
        with self._lock:
            updates = run.finish(outcome, job_dir)
        done = updates[-1].job
        self._save(done, until_saved=True)
        for update in updates[:-1]:
            self._publish(update)
        log = logger.info if done.status == "succeeded" else logger.warning
        log("job finished", extra={"job_id": done.id, "status": done.status, "error": done.error})
        self._publish(updates[-1])

    def _keep(self, run: JobRun, name: str) -> None:
        """Store one finished artifact; if it cannot be, the job stops and fails naming it (first failure wins)."""
        kept = keep_artifact(self.storage, run, self.store.job_dir(run.record.id), name)
        if not kept and self._child is not None:
            self._child.cancel.set()

    # --- helpers (call with the lock held where noted) ---

    def _save(self, record: JobRecord, until_saved: bool = False) -> None:
        """Write the job's row; while the database is down a running job goes on (its next write catches up), and
        its final state is retried until it is written (or the backend stops)."""
        while True:
            try:
                self.store.save(record)
                return
            except ServiceUnavailable:
                logger.warning("job database unreachable: job state not saved", extra={"job_id": record.id})
                if not until_saved or self._stopping:
                    return
                time.sleep(DATABASE_RETRY_S)

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
        """Append the update to the job's durable event log (what every API node's stream reads), then hand it to
        this process's subscribers."""
        try:
            log_update(self.store, update)
        except ServiceUnavailable:  # the job goes on; streams catch up from the next event (or the job's row)
            logger.warning("event not logged: job database unreachable", extra={"job_id": update.job.id})
        with self._lock:
            subscribers = list(self._subscribers.get(update.job.id, []))
        for subscription in subscribers:
            with contextlib.suppress(RuntimeError):  # the subscriber's loop has closed: it is gone
                subscription.loop.call_soon_threadsafe(subscription.queue.put_nowait, update)
