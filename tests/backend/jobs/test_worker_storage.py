"""The worker keeps each artifact in the artifact storage as it is announced (S3 here, moto's real S3 API), and a file
that cannot be kept fails the job naming it — on the real tiny chain."""

from __future__ import annotations

import time
from pathlib import Path

from alch3mist.jobs.store import JobRecord, JobStore, new_job_id
from alch3mist.jobs.worker import Worker
from alch3mist.storage import S3Location, S3Storage

from tests.backend.jobs.chains import tiny_settings
from tests.servers.s3_server import S3Server

FAST = {"request": "a cow with crocodile skin", "seed": 7, "steps": 2, "edit_steps": 2, "views": 1, "view_size": 64}


def _run(tmp_path: Path, storage: S3Storage) -> JobRecord:
    """One tiny job through the real worker (its chain in the worker process, artifacts kept by the parent)."""
    worker = Worker(JobStore(tmp_path / "data"), tiny_settings(tmp_path), storage=storage)
    worker.start()
    try:
        job = worker.submit(JobRecord(id=new_job_id(), params=dict(FAST)))
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            record, _ = worker.get(job.id)
            if record.finished:
                return record
            time.sleep(0.05)
        raise AssertionError(f"job {job.id} did not finish: {worker.get(job.id)[0]}")
    finally:
        worker.stop()


def test_every_artifact_of_a_job_is_in_the_bucket(s3_server: S3Server, s3_env: None, tmp_path: Path) -> None:
    bucket = s3_server.create_bucket("worker-artifacts")
    storage = S3Storage(S3Location(bucket, "jobs"), endpoint_url=s3_server.endpoint_url)

    record = _run(tmp_path, storage)

    assert record.status == "succeeded", record.error
    assert "manifest.json" in record.artifacts  # written without an event, kept when the job ends
    assert sorted(record.artifacts) == storage.names(record.id)
    local = tmp_path / "data" / "jobs" / record.id
    for name in record.artifacts:  # the object is the file the chain wrote (the last version of model.glb)
        assert storage.read_bytes(record.id, name) == (local / name).read_bytes(), name


def test_an_artifact_that_cannot_be_stored_fails_the_job_naming_it(
    s3_server: S3Server, s3_env: None, tmp_path: Path
) -> None:
    storage = S3Storage(S3Location("bucket-that-was-deleted", ""), endpoint_url=s3_server.endpoint_url)

    record = _run(tmp_path, storage)

    assert record.status == "failed" and record.error is not None
    assert record.error["code"] == "storage_error" and record.error["stage"] == "base_image"
    assert record.error["message"].startswith("artifact base.png could not be stored: S3 storage")
    assert "NoSuchBucket" in record.error["message"]
    assert "model.glb" not in record.artifacts  # the chain stopped at the first file it could not keep
