"""Retention deletes finished jobs past their age (rows and folders), never active ones."""

from __future__ import annotations

import time
from pathlib import Path

from alch3mist.jobs.retention import purge_expired, retention_interval_s
from alch3mist.jobs.store import JobRecord, JobStore, new_job_id


def _job(store: JobStore, status: str, finished_days_ago: float | None) -> JobRecord:
    finished = time.time() - finished_days_ago * 86400 if finished_days_ago is not None else None
    record = store.insert(JobRecord(id=new_job_id(), status=status, finished_at=finished))
    store.job_dir(record.id).mkdir(parents=True)
    (store.job_dir(record.id) / "base.png").write_bytes(b"png")
    return record


def test_purge_removes_only_old_finished_jobs(tmp_path: Path) -> None:
    store = JobStore(tmp_path)
    old = [_job(store, status, 40) for status in ("succeeded", "failed", "cancelled")]
    recent = _job(store, "succeeded", 1)
    active = [_job(store, "queued", None), _job(store, "running", None)]

    purged = purge_expired(store, retention_days=30)

    assert sorted(purged) == sorted(r.id for r in old)
    for record in old:
        assert store.get(record.id) is None and not store.job_dir(record.id).exists()
    for record in [recent, *active]:
        assert store.get(record.id) is not None and store.job_dir(record.id).is_dir()


def test_zero_retention_keeps_everything(tmp_path: Path) -> None:
    store = JobStore(tmp_path)
    _job(store, "succeeded", 1000)
    assert purge_expired(store, retention_days=0) == []


def test_interval_is_bounded() -> None:
    assert retention_interval_s(30) == 3600
    assert retention_interval_s(0.0001) == 60
