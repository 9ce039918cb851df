"""The cluster mode on an API node (``ALCH3MIST_BROKER_URL`` set): jobs go to Celery workers, nothing runs here.

* ``submit`` inserts the job in the shared store, then sends the ``run_job`` task; a broker that cannot take it
  (Redis down) removes the job again and answers 503 — the caller retries, nothing is half queued.
* ``get`` reads the store; the queue position is the number of queued jobs created before this one (FIFO across
  every worker: the store, not the broker, is the line).
* ``cancel``: a queued job is cancelled in the store at once (its task later finds it not queued and does nothing);
  a running one gets a cancel request in the store, which the worker running it polls (``jobs.cluster_worker``).
* ``chain`` answers ``/v1/info`` and validates requests with what the live workers reported (``WorkerRegistry``).
* Start does not touch running jobs: workers own them, so an API node restart loses none.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from typing import TYPE_CHECKING

from redis.exceptions import RedisError

from ..config import MAX_SEED, Settings
from ..domain import ChainInfo
from ..errors import JobNotActive, JobNotFound, ServiceUnavailable
from ..storage import ArtifactStorage
from .broker import TASK_NAME, WorkerRegistry, WorkerReport, celery_app
from .runner import JobUpdate, log_update
from .store import JobRecord, JobStore
from .worker import Subscription

if TYPE_CHECKING:
    from ..chain import GenerationRequest

__all__ = ["ClusterChainView", "ClusterQueue"]

logger = logging.getLogger(__name__)

BROKER_RETRY_AFTER_S = 5
CANCEL_MESSAGE = "cancelling: stopping at the next step"


def _broker_down() -> ServiceUnavailable:
    return ServiceUnavailable(
        "the job broker (Redis) is unreachable or restarting; the job was not queued — retry in a few seconds",
        retry_after_s=BROKER_RETRY_AFTER_S,
    )


class ClusterChainView:
    """The chain as the live workers reported it (the newest report): info and request validation, no model."""

    def __init__(self, registry: WorkerRegistry) -> None:
        self._registry = registry

    def report(self) -> WorkerReport:
        try:
            reports = self._registry.reports()
        except Exception as exc:  # redis.RedisError, OSError: Redis down
            logger.warning("worker registry unreachable", extra={"cause": type(exc).__name__})
            raise _broker_down() from exc
        if not reports:
            raise ServiceUnavailable(
                "no worker is running: start one with `alch3mist worker` (it reports once its models are loaded)",
                retry_after_s=BROKER_RETRY_AFTER_S,
            )
        return reports[0]

    def info(self) -> ChainInfo:
        return self.report().info

    def validate(self, req: GenerationRequest) -> None:
        from ..chain import validate_request

        report = self.report()
        validate_request(req, report.rules, report.loras)


class ClusterQueue:
    """The ``JobQueue`` of an API node in the cluster mode."""

    def __init__(self, store: JobStore, settings: Settings, storage: ArtifactStorage) -> None:
        self.store = store
        self.settings = settings
        self.storage = storage
        self._app = celery_app(settings)
        self._registry = WorkerRegistry(settings)
        self._chain = ClusterChainView(self._registry)

    @property
    def chain(self) -> ClusterChainView:
        return self._chain

    def start(self) -> None:
        """Nothing to load; running jobs are left to their workers (no ``fail_interrupted`` here)."""
        try:
            self._registry.ping()
        except (RedisError, OSError) as exc:  # the API still starts: it answers 503 until the broker is back
            logger.warning("job broker unreachable at start", extra={"cause": type(exc).__name__})
        logger.info("cluster mode: jobs run on `alch3mist worker` processes", extra={"queued": self.queue_length()})

    def stop(self, timeout: float | None = None) -> None:
        self._registry.close()
        self._app.close()

    def submit(self, record: JobRecord) -> JobRecord:
        if record.params.get("seed") is None:  # chosen now, so a run again after a lost worker gives the same files
            record.params["seed"] = record.seed = secrets.randbelow(MAX_SEED + 1)
        record.created_at = time.time()
        self.store.insert(record)
        try:
            self._app.send_task(TASK_NAME, args=[record.id])
        except Exception as exc:  # kombu OperationalError / redis errors: the broker cannot take it now
            logger.warning("job not queued: broker unreachable", extra={"job_id": record.id, "cause": repr(exc)})
            self.store.delete(record.id)
            raise _broker_down() from exc
        logger.info("job queued", extra={"job_id": record.id, "key": record.key_name})
        return record

    def get(self, job_id: str) -> tuple[JobRecord, int | None]:
        record = self.store.get(job_id)
        if record is None:
            raise JobNotFound(f"no job with id {job_id!r}")
        return record, self.store.queue_position(record)

    def cancel(self, job_id: str) -> tuple[JobRecord, int | None]:
        cancelled = self.store.cancel_queued(job_id, "cancelled while queued")
        if cancelled is not None:
            self._log(JobUpdate("done", cancelled, message=cancelled.message))
            return cancelled, None
        record = self.store.get(job_id)
        if record is None:
            raise JobNotFound(f"no job with id {job_id!r}")
        if record.status == "running" and self.store.request_cancel(job_id):
            record.message = CANCEL_MESSAGE
            self._log(JobUpdate("status", record, message=CANCEL_MESSAGE))
            logger.info("job cancel requested", extra={"job_id": job_id})
            return record, None
        raise JobNotActive(f"job {job_id} already {record.status}; only queued or running jobs can be cancelled")

    def queue_length(self) -> int:
        return self.store.count_queued()

    def running_id(self) -> str | None:
        return None  # several run at once, on other machines: see GET /v1/jobs?status=running

    def subscribe(self, job_id: str) -> Subscription:
        """Never fed: every update comes from a worker through the event log (PostgreSQL NOTIFY wakes the stream)."""
        return Subscription(job_id, asyncio.get_running_loop())

    def unsubscribe(self, subscription: Subscription) -> None:
        return None

    def _log(self, update: JobUpdate) -> None:
        try:
            log_update(self.store, update)
        except ServiceUnavailable:
            logger.warning("event not logged: job database unreachable", extra={"job_id": update.job.id})
