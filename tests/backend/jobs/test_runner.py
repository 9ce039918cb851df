"""``run_job``: one job on a loaded chain in this process (what a distributed worker calls), on the tiny chain."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from alch3mist.jobs.runner import JobUpdate, run_job
from alch3mist.jobs.store import JobRecord, new_job_id
from alch3mist.storage import LocalStorage, S3Location, S3Storage

from tests.servers.s3_server import S3Server

FAST = {"request": "a cow with crocodile skin", "seed": 7, "steps": 2, "edit_steps": 2, "views": 0}


def _running(params: dict[str, Any]) -> JobRecord:
    return JobRecord(id=new_job_id(), status="running", params=dict(params))


def test_run_job_reports_every_step_and_finishes_the_record(tiny_chain: Any, tmp_path: Path) -> None:
    updates: list[JobUpdate] = []
    record = run_job(_running(FAST), tmp_path, tiny_chain, updates.append, threading.Event())

    assert record.status == "succeeded" and record.error is None and record.progress == 1.0
    assert record.seed == 7 and record.prompt is not None and record.manifest is not None
    assert record.artifacts[:2] == ["base.png", "textured.png"] and "manifest.json" in record.artifacts
    assert all((tmp_path / name).is_file() for name in record.artifacts)
    stages = [update.job.stage for update in updates if update.type == "stage"]
    assert stages[:4] == ["rewrite", "base_image", "material_edit", "mesh"]
    announced = [update.artifact for update in updates if update.type == "artifact"]
    assert set(announced) == set(record.artifacts)  # manifest.json too, announced after the run
    assert updates[-1].type == "done" and updates[-1].job.status == "succeeded"


def test_run_job_stops_at_the_next_step_when_cancelled(tiny_chain: Any, tmp_path: Path) -> None:
    cancel = threading.Event()

    def on_update(update: JobUpdate) -> None:
        if update.job.stage == "base_image":  # its stage event (never throttled, unlike progress ticks)
            cancel.set()

    record = run_job(_running({**FAST, "steps": 20}), tmp_path, tiny_chain, on_update, cancel)
    assert record.status == "cancelled" and record.error is not None
    assert record.error == {"code": "cancelled", "stage": "base_image", "message": "cancelled by request"}
    assert "textured.png" not in record.artifacts


def test_run_job_keeps_each_artifact_in_the_storage_before_announcing_it(tiny_chain: Any, tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "kept")
    job_dir = tmp_path / "scratch"
    job_dir.mkdir()
    kept_when_announced: list[bool] = []

    def on_update(update: JobUpdate) -> None:
        if update.type == "artifact" and update.artifact:
            kept_when_announced.append(storage.exists(update.job.id, update.artifact))

    record = run_job(_running(FAST), job_dir, tiny_chain, on_update, threading.Event(), storage)
    assert record.status == "succeeded", record.error
    assert kept_when_announced and all(kept_when_announced)
    assert sorted(record.artifacts) == storage.names(record.id)  # manifest.json too, kept at the end


def test_run_job_fails_naming_the_artifact_the_storage_refused(
    tiny_chain: Any, tmp_path: Path, s3_server: S3Server, s3_env: None
) -> None:
    storage = S3Storage(S3Location("bucket-that-was-deleted", ""), endpoint_url=s3_server.endpoint_url)
    record = run_job(_running(FAST), tmp_path, tiny_chain, lambda update: None, threading.Event(), storage)
    assert record.status == "failed" and record.error is not None
    assert record.error["code"] == "storage_error" and record.error["stage"] == "base_image"
    assert record.error["message"].startswith("artifact base.png could not be stored")
    assert "model.glb" not in record.artifacts  # the chain stopped at the first file it could not keep
