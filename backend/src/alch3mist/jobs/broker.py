"""The cluster mode's broker side, shared by API nodes and workers: the Celery app and the worker registry.

* ``celery_app``: one task, ``run_job(job_id)``, on one queue. The broker message is only "job X may run now": the
  job itself (parameters, status, claims) is in the shared job store, which decides who runs it (``JobStore.claim``).
  Settings for GPU workers: late acks and a requeue when the pool process is lost (a SIGKILLed or crashed job comes
  back), one message reserved at a time, a visibility timeout longer than the longest job (Redis hands an unacked
  message to another worker only after it), no result backend (results are in the store).
* ``WorkerRegistry``: each worker's pool process reports what its loaded chain runs (``ChainInfo``, its validation
  rules and LoRA names) under a Redis key with a short TTL, refreshed while it lives; API nodes read it to answer
  ``/v1/info`` and to validate requests without loading a model.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from celery import Celery

from ..config import Settings
from ..domain import ChainInfo

if TYPE_CHECKING:
    import redis

    from ..chain import ChainRules

__all__ = ["QUEUE", "TASK_NAME", "WorkerRegistry", "WorkerReport", "celery_app"]

logger = logging.getLogger(__name__)

TASK_NAME = "alch3mist.run_job"
QUEUE = "alch3mist"
REGISTRY_PREFIX = "alch3mist:workers:"
REPORT_TTL_S = 30  # a worker that stops refreshing its report disappears from /v1/info after this
REPORT_EVERY_S = 10.0
BROKER_TIMEOUT_S = 3.0  # connect/read timeout towards Redis: an API node answers 503 soon when it is down
VISIBILITY_MARGIN_S = 600.0


def celery_app(settings: Settings) -> Celery:
    """The Celery app of the cluster (``ALCH3MIST_BROKER_URL``); tasks are registered by the worker role only."""
    broker = settings.broker_url_value()
    if not broker:
        raise ValueError("ALCH3MIST_BROKER_URL is not set: the cluster mode needs a broker (e.g. redis://host:6379/0)")
    app = Celery("alch3mist", broker=broker, set_as_current=False)
    app.conf.update(
        task_default_queue=QUEUE,
        task_acks_late=True,  # acked when the job ends: a worker lost mid-job leaves its message to redeliver
        task_reject_on_worker_lost=True,  # … and a pool process that dies requeues it at once
        worker_prefetch_multiplier=1,  # one job reserved per worker: the others wait in the broker for any worker
        task_ignore_result=True,
        task_time_limit=settings.job_time_limit_s,  # the whole-job backstop; stages have their own (the watcher)
        worker_proc_alive_timeout=settings.worker_load_timeout_s,  # the pool process loads the models first
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,  # a worker waits out a Redis outage
        broker_transport_options={
            "visibility_timeout": settings.job_time_limit_s + VISIBILITY_MARGIN_S,
            "socket_connect_timeout": BROKER_TIMEOUT_S,
            "socket_timeout": BROKER_TIMEOUT_S * 2,
        },
        # an API node publishing while Redis is down tries briefly, then answers 503
        task_publish_retry_policy={"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 1.0},
    )
    return app


@dataclass(frozen=True)
class WorkerReport:
    """What one worker's loaded chain runs, as it reported it."""

    name: str
    info: ChainInfo
    rules: ChainRules
    loras: list[str]
    at: float

    def to_json(self) -> str:
        return json.dumps(
            {
                "name": self.name,
                "info": self.info.model_dump(mode="json"),
                "rules": dataclasses.asdict(self.rules),
                "loras": self.loras,
                "at": self.at,
            }
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> WorkerReport:
        from ..chain import ChainRules  # a dataclass of names and numbers: no model stack behind it

        data: dict[str, Any] = json.loads(text)
        rules: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in data["rules"].items()}
        return cls(data["name"], ChainInfo.model_validate(data["info"]), ChainRules(**rules), data["loras"], data["at"])


class WorkerRegistry:
    """The live workers' reports in Redis (the broker's server)."""

    def __init__(self, settings: Settings) -> None:
        import redis

        url = settings.broker_url_value()
        if not url:
            raise ValueError("ALCH3MIST_BROKER_URL is not set")
        self._redis: redis.Redis = redis.Redis.from_url(
            url, socket_connect_timeout=BROKER_TIMEOUT_S, socket_timeout=BROKER_TIMEOUT_S
        )

    def report(self, report: WorkerReport) -> None:
        self._redis.set(REGISTRY_PREFIX + report.name, report.to_json(), ex=REPORT_TTL_S)

    def withdraw(self, name: str) -> None:
        self._redis.delete(REGISTRY_PREFIX + name)

    def reports(self) -> list[WorkerReport]:
        """The live workers' reports, newest first."""
        found = []
        for key in self._redis.scan_iter(match=REGISTRY_PREFIX + "*", count=100):
            text = self._redis.get(key)
            if text is not None:  # expired between scan and get
                found.append(WorkerReport.from_json(text))
        return sorted(found, key=lambda report: report.at, reverse=True)

    def ping(self) -> None:
        self._redis.ping()

    def close(self) -> None:
        self._redis.close()
