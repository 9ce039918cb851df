"""The one-GPU worker in-process, on the real tiny chain: order, cancellation, stage timeout, restart recovery."""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

import pytest
from alch3mist.config import Settings
from alch3mist.errors import JobNotActive, JobNotFound
from alch3mist.jobs.store import JobRecord, JobStore, new_job_id
from alch3mist.jobs.worker import RESTART_REASON, Worker

FAST = {"request": "a cow with crocodile skin", "seed": 7, "steps": 2, "edit_steps": 2, "views": 0}
SLOW = {**FAST, "steps": 100}  # ~0.2 s a step on a loaded 2-core CPU: long enough to act on while it runs


def _settings(tmp_path: Path, **fields: Any) -> Settings:
    return Settings(_env_file=None, data_dir=tmp_path, preset="tiny", **fields)  # type: ignore[call-arg]


def _job(params: dict[str, Any], user: str | None = None) -> JobRecord:
    return JobRecord(id=new_job_id(), params=dict(params), user=user)


def _wait(worker: Worker, job_id: str, statuses: tuple[str, ...], timeout: float = 120) -> JobRecord:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record, _ = worker.get(job_id)
        if record.status in statuses:
            return record
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} never reached {statuses}: {worker.get(job_id)[0]}")


def _wait_for_step(worker: Worker, job_id: str, stage: str = "base_image") -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        record, _ = worker.get(job_id)
        if record.stage == stage and record.stage_progress > 0:
            return
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} never started {stage}")


@pytest.fixture
def worker_factory(tiny_chain: Any, tmp_path: Path) -> Any:
    started: list[Worker] = []

    def make(**fields: Any) -> Worker:
        worker = Worker(JobStore(tmp_path / "data"), tiny_chain, _settings(tmp_path, **fields))
        started.append(worker)
        return worker

    yield make
    for worker in started:
        worker.stop()


def test_jobs_run_one_at_a_time_in_fifo_order_with_positions(worker_factory: Any) -> None:
    worker = worker_factory()
    jobs = [worker.submit(_job(FAST)) for _ in range(3)]
    assert [worker.get(job.id)[1] for job in jobs] == [1, 2, 3]
    worker.start()
    finished = [_wait(worker, job.id, ("succeeded", "failed")) for job in jobs]
    assert [job.status for job in finished] == ["succeeded"] * 3, [job.error for job in finished]
    for previous, following in itertools.pairwise(finished):
        assert following.started_at is not None and previous.finished_at is not None
        assert following.started_at >= previous.finished_at
    assert finished[0].artifacts[:2] == ["base.png", "textured.png"] and "model.glb" in finished[0].artifacts
    assert finished[0].prompt is not None and finished[0].seed == 7 and finished[0].progress == 1.0


def test_cancel_queued_at_once_and_running_at_the_next_step(worker_factory: Any) -> None:
    worker = worker_factory()
    worker.start()
    slow = worker.submit(_job(SLOW))
    queued = worker.submit(_job(FAST))
    _wait_for_step(worker, slow.id)

    record, _ = worker.cancel(queued.id)
    assert record.status == "cancelled"
    asked = time.monotonic()
    record, _ = worker.cancel(slow.id)
    assert record.status == "running" and "cancelling" in record.message
    stopped = _wait(worker, slow.id, ("cancelled", "failed", "succeeded"))
    assert stopped.status == "cancelled", stopped.error
    assert stopped.error is not None and stopped.error["stage"] == "base_image"
    assert time.monotonic() - asked < 15
    with pytest.raises(JobNotActive):
        worker.cancel(slow.id)
    with pytest.raises(JobNotFound):
        worker.cancel("nope")


def test_a_stage_over_its_timeout_fails_the_job_naming_the_stage(worker_factory: Any) -> None:
    worker = worker_factory(stage_timeout_s=1.0)
    worker.start()
    job = worker.submit(_job(SLOW))
    failed = _wait(worker, job.id, ("failed", "succeeded", "cancelled"), timeout=60)
    assert failed.status == "failed" and failed.error is not None
    assert failed.error["code"] == "stage_timeout" and failed.error["stage"] == "base_image"
    assert "base_image" in failed.error["message"] and "ALCH3MIST_STAGE_TIMEOUT_S" in failed.error["message"]


def test_restart_fails_interrupted_jobs_and_runs_queued_ones(worker_factory: Any, tmp_path: Path) -> None:
    store = JobStore(tmp_path / "data")
    interrupted = store.insert(JobRecord(id=new_job_id(), status="running", stage="material_edit", params=FAST))
    waiting = store.insert(_job(FAST))
    store.close()

    worker = worker_factory()
    worker.start()
    record, _ = worker.get(interrupted.id)
    assert record.status == "failed" and record.error is not None
    assert record.error["message"] == RESTART_REASON and record.error["stage"] == "material_edit"
    assert _wait(worker, waiting.id, ("succeeded", "failed")).status == "succeeded"
