"""``alch3mist worker [--gpu N]``: one Celery worker per GPU, taking one job at a time (the cluster mode).

Processes: the Celery main process (the consumer: it talks to Redis, imports no model stack) forks ONE pool process
(``--pool=prefork --concurrency=1``). ``CUDA_VISIBLE_DEVICES`` is set before anything could import torch; the pool
process builds the chain once (``worker_process_init``, the same factory as the embedded child:
``ALCH3MIST_CHAIN_FACTORY``), reports what it runs to the registry and runs every job of this worker.

A job (task ``run_job(job_id)``):

1. ``JobStore.claim`` takes it atomically: a ``queued`` job becomes ``running`` here. A message for a job that is
   already finished or cancelled does nothing (redelivery is harmless). A job found ``running`` whose worker has not
   beaten for ``LOST_AFTER_S`` (the watcher saves a heartbeat every 2 s) was lost mid-job (SIGKILL, out of memory, a
   crash: Celery requeues the message of a lost pool process at once, so the claim waits for the heartbeat to age) —
   it runs again from scratch, same parameters and seed, once (``MAX_ATTEMPTS``); lost again, it ends ``failed`` /
   ``worker_died``. One whose worker keeps beating is a duplicate message: dropped.
2. The job's input files (an image, a parent's base image, a mesh, a reference — kept by the API node) come from
   the artifact storage into a scratch folder ``<data_dir>/scratch/<id>``, removed when the job ends.
3. ``runner.run_job`` runs it: every update is saved to the store and appended to the event log (which every API
   node's event stream reads); every artifact is kept in the storage as it is announced.
4. A watcher thread polls the store for a cancel request (from any API node) and watches the stage clock
   (``ALCH3MIST_STAGE_TIMEOUT_S``): either sets the job's cancel; a stage that does not stop within
   ``ALCH3MIST_STAGE_KILL_GRACE_S`` gets the job's final record written (``stage_timeout``, or ``cancelled``) and
   this pool process SIGKILLed — Celery starts a new one, which reloads the models before the next job.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redis.exceptions import RedisError

from ..config import Settings
from ..domain import GenerationChain
from ..errors import Alch3mistError, ServiceUnavailable
from ..storage import ArtifactStorage, storage_from_settings
from .broker import QUEUE, REPORT_EVERY_S, TASK_NAME, WorkerRegistry, WorkerReport, celery_app
from .child import load_factory
from .inputs import input_files
from .runner import ChainOutcome, JobRun, JobUpdate, Stopped, log_update, run_job
from .store import Claim, JobRecord, JobStore

__all__ = ["LOST_REASON", "MAX_ATTEMPTS", "run_job_task", "run_worker"]

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 2  # a job whose worker is lost runs once more, then fails (a job that kills workers stops there)
LOST_REASON = "the worker running this job was lost (killed, out of memory or crashed)"
WATCH_S = 0.5  # how often the watcher looks at the clock and for a cancel request
HEARTBEAT_EVERY = 4  # watcher rounds between heartbeats (2 s)
LOST_AFTER_S = 10.0  # a running job whose worker has not beaten for this long is lost (its message came back)
BUSY_WAIT_S = 3 * LOST_AFTER_S  # a message for a job whose worker keeps beating is a duplicate: dropped after this
SAVE_RETRY_S = 1.0
FINAL_SAVE_TRIES = 120  # a job's final state waits this many retries for a database that is down


@dataclass
class _Loaded:
    """What the pool process holds: the chain, and its own connections to the store, storage and registry."""

    settings: Settings
    name: str
    chain: GenerationChain
    store: JobStore
    storage: ArtifactStorage
    registry: WorkerRegistry


_settings: Settings | None = None  # set by ``run_worker`` in the main process, inherited by the forked pool process
_name = "alch3mist"
_loaded: _Loaded | None = None


def run_worker(settings: Settings, gpu: int | None = None, name: str | None = None) -> int:
    """Run a Celery worker in the foreground until stopped (SIGTERM: warm shutdown, the running job finishes)."""
    global _settings, _name
    _check_no_cuda_yet()
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)  # read when CUDA initializes: only ever in the pool process
    _settings = settings
    _name = name or f"alch3mist{'' if gpu is None else f'-gpu{gpu}'}@{socket.gethostname()}"
    app = celery_app(settings)
    app.task(name=TASK_NAME, bind=True)(run_job_task)
    from celery import signals

    signals.worker_process_init.connect(_load_in_pool_process, weak=False)
    signals.worker_process_shutdown.connect(_withdraw, weak=False)
    argv = ["worker", "--pool=prefork", "--concurrency=1", "--prefetch-multiplier=1", "--loglevel=INFO"]
    argv += [f"--hostname={_name}", f"--queues={QUEUE}", "--without-gossip", "--without-mingle"]
    app.worker_main(argv)
    return 0


def _check_no_cuda_yet() -> None:
    """The CLI may have imported torch (as a library: harmless), but CUDA must not be initialized before the fork."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        raise RuntimeError("CUDA was initialized in the worker's main process: the pool process could not use it")


def _load_in_pool_process(**_: Any) -> None:
    """Build the chain once in the pool process (a fork of the main one: its own database and Redis connections)."""
    global _loaded
    settings = _settings
    if settings is None:
        raise RuntimeError("run_worker sets the settings before the pool starts")
    chain = load_factory(settings.chain_factory)(settings)
    loaded = _Loaded(
        settings=settings,
        name=_name,
        chain=chain,
        store=JobStore(settings.data_dir, settings.database_url_value()),
        storage=storage_from_settings(settings),
        registry=WorkerRegistry(settings),
    )
    _loaded = loaded
    threading.Thread(target=_report_forever, args=(loaded,), name="alch3mist-report", daemon=True).start()
    logger.info("worker ready", extra={"worker": loaded.name, "pid": os.getpid(), "preset": chain.info().preset})


def _report_forever(loaded: _Loaded) -> None:
    """Tell the API nodes what this worker runs, again before the report expires (while this process lives)."""
    info, rules = loaded.chain.info(), loaded.chain.rules()
    while True:
        loras = [lora.name for lora in loaded.chain.loras()]
        try:
            loaded.registry.report(WorkerReport(loaded.name, info, rules, loras, time.time()))
        except (RedisError, OSError) as exc:  # Redis down: try again at the next beat
            logger.warning("worker report not sent", extra={"cause": type(exc).__name__})
        time.sleep(REPORT_EVERY_S)


def _withdraw(**_: Any) -> None:
    if _loaded is not None:
        try:
            _loaded.registry.withdraw(_loaded.name)
        except (RedisError, OSError) as exc:
            logger.info("worker report not withdrawn", extra={"cause": type(exc).__name__})


def run_job_task(task: Any, job_id: str) -> None:
    """The Celery task: claim the job in the store and run it here (see the module docstring)."""
    loaded = _loaded
    if loaded is None:
        raise RuntimeError("the chain is not loaded in this pool process")
    try:
        claim = _claim(loaded, job_id)
    except ServiceUnavailable as exc:  # the database is down: the message comes back later, the job stays queued
        raise task.retry(countdown=2, max_retries=None, exc=exc) from exc
    if claim.busy:
        logger.warning("job still running on a live worker: duplicate message dropped", extra={"job_id": job_id})
        return
    if claim.gave_up is not None:
        logger.error("job lost too often: failed", extra={"job_id": job_id, "worker": loaded.name})
        _log(loaded.store, JobUpdate("done", claim.gave_up, message=claim.gave_up.message))
    if claim.record is None:
        logger.info("job not run: not queued (finished, cancelled or taken)", extra={"job_id": job_id})
        return
    logger.info("job started", extra={"job_id": job_id, "worker": loaded.name, "attempt": claim.attempt})
    _run_claimed(loaded, claim.record)


def _claim(loaded: _Loaded, job_id: str) -> Claim:
    """Claim the job; a running one whose worker may just have been lost is asked again until its heartbeat is
    stale (a SIGKILLed pool process's message comes back at once, before its last heartbeat ages)."""
    deadline = time.monotonic() + BUSY_WAIT_S
    while True:
        claim = loaded.store.claim(job_id, loaded.name, MAX_ATTEMPTS, LOST_REASON, LOST_AFTER_S)
        if not claim.busy or time.monotonic() > deadline:
            return claim
        time.sleep(1.0)


def _run_claimed(loaded: _Loaded, record: JobRecord) -> None:
    job_dir = loaded.settings.data_dir / "scratch" / record.id
    shutil.rmtree(job_dir, ignore_errors=True)
    job_dir.mkdir(parents=True)
    run, cancel = JobRun(record), threading.Event()
    _log(loaded.store, JobUpdate("status", record, message=record.message))
    watcher = _Watcher(loaded, run, cancel, job_dir)
    try:
        _fetch_input(loaded, run, job_dir)
        if run.stopped is not None:
            _finish(loaded, run, ChainOutcome(), job_dir)
            return
        watcher.start()
        on_update = lambda update: _publish(loaded, update)  # noqa: E731
        done = run_job(record, job_dir, loaded.chain, on_update, cancel, loaded.storage, run)
        log = logger.info if done.status == "succeeded" else logger.warning
        log("job finished", extra={"job_id": done.id, "status": done.status, "error": done.error})
    finally:
        watcher.stop()
        shutil.rmtree(job_dir, ignore_errors=True)


def _fetch_input(loaded: _Loaded, run: JobRun, job_dir: Path) -> None:
    """The job's input files (an image, a parent's base image, a mesh, a reference picture), from the artifact
    storage, where the API node kept them."""
    job_id = run.record.id
    try:
        for name in sorted(input_files(set(loaded.storage.names(job_id)))):
            loaded.storage.fetch(job_id, name, job_dir / name)
    except Alch3mistError as exc:
        run.stopped = Stopped("storage_error", f"the job's input files could not be read: {exc.message}")


def _finish(loaded: _Loaded, run: JobRun, outcome: ChainOutcome, job_dir: Path) -> None:
    for update in run.finish(outcome, job_dir):
        _publish(loaded, update)


def _publish(loaded: _Loaded, update: JobUpdate) -> None:
    """Save the job's row (its final state retried while the database is down) and log the update."""
    tries = FINAL_SAVE_TRIES if update.type == "done" else 1
    for attempt in range(tries):
        try:
            loaded.store.save(update.job)
            break
        except ServiceUnavailable:
            logger.warning("job database unreachable: job state not saved", extra={"job_id": update.job.id})
            if attempt + 1 < tries:
                time.sleep(SAVE_RETRY_S)
    _log(loaded.store, update)


def _log(store: JobStore, update: JobUpdate) -> None:
    try:
        log_update(store, update)
    except ServiceUnavailable:  # streams catch up from the next event, or from the job's row
        logger.warning("event not logged: job database unreachable", extra={"job_id": update.job.id})


class _Watcher:
    """A thread beside the running job: cancel requests from any API node, the per-stage clock, the kill."""

    def __init__(self, loaded: _Loaded, run: JobRun, cancel: threading.Event, job_dir: Path) -> None:
        self.loaded, self.run, self.cancel, self.job_dir = loaded, run, cancel, job_dir
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="alch3mist-watcher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._done.set()
        if self._thread.is_alive():
            self._thread.join()

    def _watch(self) -> None:
        kill_at: float | None = None
        rounds = 0
        while not self._done.wait(WATCH_S):
            rounds += 1
            if rounds % HEARTBEAT_EVERY == 0:
                self._heartbeat()
            if kill_at is None:
                kill_at = self._stop_requested()
            elif time.monotonic() > kill_at:
                self._kill()

    def _stop_requested(self) -> float | None:
        run, settings = self.run, self.loaded.settings
        stage = run.record.stage or "starting"
        if self._cancel_requested():
            run.cancel_requested = True
        elif time.monotonic() - run.stage_started > settings.stage_timeout_s:
            logger.error("stage timed out", extra={"job_id": run.record.id, "stage": stage})
            run.stopped = Stopped("stage_timeout", f"{self._timeout_text(stage)} and was stopped")
        else:
            return None
        self.cancel.set()
        return time.monotonic() + settings.stage_kill_grace_s

    def _heartbeat(self) -> None:
        try:
            self.loaded.store.heartbeat(self.run.record.id)
        except ServiceUnavailable:
            logger.warning("heartbeat not saved: job database unreachable", extra={"job_id": self.run.record.id})

    def _cancel_requested(self) -> bool:
        try:
            claims = self.loaded.store.claims(self.run.record.id)
        except ServiceUnavailable:
            return False
        return bool(claims and claims.cancel_requested)

    def _kill(self) -> None:
        """The stage ignored its cancel past the grace period: write the job's end, then SIGKILL this pool process
        (Celery replaces it; its requeued message finds the job finished and does nothing)."""
        run, grace = self.run, self.loaded.settings.stage_kill_grace_s
        stage = run.record.stage or "starting"
        if run.stopped is not None and run.stopped.code == "stage_timeout":
            run.stopped.message = (
                f"{self._timeout_text(stage)} and did not stop within {grace:g} s (ALCH3MIST_STAGE_KILL_GRACE_S): "
                "its worker process was killed and restarted"
            )
        logger.error("stage did not stop within the grace period: killing this pool process", extra={"stage": stage})
        _finish(self.loaded, run, ChainOutcome(), self.job_dir)
        shutil.rmtree(self.job_dir, ignore_errors=True)
        os.kill(os.getpid(), signal.SIGKILL)

    def _timeout_text(self, stage: str) -> str:
        return f"stage '{stage}' exceeded {self.loaded.settings.stage_timeout_s:g} s (ALCH3MIST_STAGE_TIMEOUT_S)"
