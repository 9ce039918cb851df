"""Retention: finished jobs older than ``Settings.retention_days`` are deleted with their artifacts.

Artifacts go through the artifact storage (the job folder, or the job's objects in S3), then the local job folder (a
worker's scratch copy, if any) and the row. A job whose artifacts cannot be deleted keeps its row, so the next pass
tries it again, and the pass goes on with the other jobs.

Runs once at startup and then periodically (``retention_loop``). Queued and running jobs are never touched;
age counts from when a job finished. A pass that fails (the disk, the database) is logged with its traceback and the
loop goes on: the next pass retries, and stopping the service never re-raises an old failure.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time

from ..errors import StorageError
from ..storage import ArtifactStorage
from .store import JobStore

__all__ = ["purge_expired", "retention_interval_s", "retention_loop"]

logger = logging.getLogger(__name__)


def purge_expired(
    store: JobStore, storage: ArtifactStorage, retention_days: float, now: float | None = None
) -> list[str]:
    """Delete finished jobs older than ``retention_days`` (artifacts, folders, rows); returns the ids deleted."""
    if retention_days <= 0:
        return []
    cutoff = (time.time() if now is None else now) - retention_days * 86400
    purged: list[str] = []
    for job_id in store.finished_before(cutoff):
        try:
            storage.delete_job(job_id)
        except StorageError as exc:
            logger.error("retention could not delete a job's artifacts", extra={"job_id": job_id, "error": exc.message})
            continue
        shutil.rmtree(store.job_dir(job_id), ignore_errors=True)
        store.delete(job_id)
        purged.append(job_id)
    if purged:
        logger.info("retention purged finished jobs", extra={"count": len(purged), "retention_days": retention_days})
    return purged


def retention_interval_s(retention_days: float) -> float:
    """Check ten times per retention period, at most hourly, at least every minute."""
    return min(3600.0, max(60.0, retention_days * 86400 / 10))


async def retention_loop(
    store: JobStore, storage: ArtifactStorage, retention_days: float, interval_s: float | None = None
) -> None:
    """Purge forever, every ``interval_s`` (default ``retention_interval_s``); cancel the task to stop."""
    interval = retention_interval_s(retention_days) if interval_s is None else interval_s
    while True:
        await asyncio.sleep(interval)
        try:
            await asyncio.to_thread(purge_expired, store, storage, retention_days)
        except Exception:  # the loop must outlive a bad pass: log it, retry at the next interval
            logger.exception("retention pass failed; retrying in %.0f s", interval)
