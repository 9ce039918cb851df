"""Retention deletes finished jobs past their age (rows and folders), never active ones."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path

import pytest
from alch3mist.jobs.retention import purge_expired, retention_interval_s, retention_loop
from alch3mist.jobs.store import JobRecord, JobStore, event_payload, new_job_id
from alch3mist.storage import LocalStorage, S3Location, S3Storage

from tests.servers.s3_server import S3Server


def _job(store: JobStore, status: str, finished_days_ago: float | None) -> JobRecord:
    finished = time.time() - finished_days_ago * 86400 if finished_days_ago is not None else None
    record = store.insert(JobRecord(id=new_job_id(), status=status, finished_at=finished))
    store.job_dir(record.id).mkdir(parents=True)
    (store.job_dir(record.id) / "base.png").write_bytes(b"png")
    store.append_event(record.id, "status", event_payload(record, at=time.time()))
    return record


def test_purge_removes_only_old_finished_jobs(tmp_path: Path) -> None:
    store = JobStore(tmp_path)
    old = [_job(store, status, 40) for status in ("succeeded", "failed", "cancelled")]
    recent = _job(store, "succeeded", 1)
    active = [_job(store, "queued", None), _job(store, "running", None)]

    purged = purge_expired(store, LocalStorage(tmp_path / "jobs"), retention_days=30)

    assert sorted(purged) == sorted(r.id for r in old)
    for record in old:
        assert store.get(record.id) is None and not store.job_dir(record.id).exists()
        assert store.events_after(record.id, 0) == []  # the event log goes with the job
    for record in [recent, *active]:
        assert store.get(record.id) is not None and store.job_dir(record.id).is_dir()
        assert len(store.events_after(record.id, 0)) == 1


def test_zero_retention_keeps_everything(tmp_path: Path) -> None:
    store = JobStore(tmp_path)
    _job(store, "succeeded", 1000)
    assert purge_expired(store, LocalStorage(tmp_path / "jobs"), retention_days=0) == []


def test_interval_is_bounded() -> None:
    assert retention_interval_s(30) == 3600
    assert retention_interval_s(0.0001) == 60


def test_the_loop_survives_a_failing_pass_and_logs_it(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Issue 10 item 10: the first exception ended the loop silently (and stopping re-raised it)."""
    store = JobStore(tmp_path)
    store.close()  # every pass now fails: RuntimeError on a closed store

    async def run() -> bool:
        task = asyncio.create_task(
            retention_loop(store, LocalStorage(tmp_path / "jobs"), retention_days=1, interval_s=0.01)
        )
        await asyncio.sleep(0.2)
        alive = not task.done()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task  # stopping never re-raises an old failure
        return alive

    with caplog.at_level(logging.ERROR, logger="alch3mist.jobs.retention"):
        assert asyncio.run(run())
    failures = [r for r in caplog.records if r.getMessage().startswith("retention pass failed")]
    assert len(failures) >= 2 and all(r.exc_info for r in failures)  # retried, each with its traceback


def test_purge_deletes_the_objects_of_old_jobs_in_s3(tmp_path: Path, s3_server: S3Server, s3_env: None) -> None:
    storage = S3Storage(S3Location(s3_server.create_bucket("retention"), "a"), endpoint_url=s3_server.endpoint_url)
    store = JobStore(tmp_path)
    old, recent = _job(store, "succeeded", 40), _job(store, "succeeded", 1)
    for record in (old, recent):
        storage.put(record.id, "base.png", store.job_dir(record.id) / "base.png")

    assert purge_expired(store, storage, retention_days=30) == [old.id]

    assert storage.names(old.id) == [] and store.get(old.id) is None and not store.job_dir(old.id).exists()
    assert storage.names(recent.id) == ["base.png"] and store.get(recent.id) is not None


def test_a_job_whose_objects_cannot_be_deleted_keeps_its_row_for_the_next_pass(
    tmp_path: Path, s3_server: S3Server, s3_env: None, caplog: pytest.LogCaptureFixture
) -> None:
    storage = S3Storage(S3Location("bucket-gone", ""), endpoint_url=s3_server.endpoint_url)
    store = JobStore(tmp_path)
    old = _job(store, "failed", 40)

    with caplog.at_level(logging.ERROR, logger="alch3mist.jobs.retention"):
        assert purge_expired(store, storage, retention_days=30) == []

    assert store.get(old.id) is not None and store.job_dir(old.id).is_dir()
    assert "could not delete a job's artifacts" in caplog.text
