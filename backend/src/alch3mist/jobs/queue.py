"""What the API needs of the job queue, whichever runs the jobs: the embedded ``jobs.worker.Worker`` (one process
tree) or the cluster mode's ``jobs.cluster.ClusterQueue`` (Celery workers elsewhere)."""

from __future__ import annotations

from typing import Protocol

from ..domain import ChainCatalog
from ..storage import ArtifactStorage
from .store import JobRecord
from .worker import Subscription

__all__ = ["JobQueue"]


class JobQueue(Protocol):
    storage: ArtifactStorage

    @property
    def chain(self) -> ChainCatalog: ...

    def start(self) -> None: ...

    def stop(self, timeout: float | None = None) -> None: ...

    def submit(self, record: JobRecord) -> JobRecord: ...

    def get(self, job_id: str) -> tuple[JobRecord, int | None]: ...

    def cancel(self, job_id: str) -> tuple[JobRecord, int | None]: ...

    def queue_length(self) -> int: ...

    def running_id(self) -> str | None: ...

    def subscribe(self, job_id: str) -> Subscription: ...

    def unsubscribe(self, subscription: Subscription) -> None: ...
