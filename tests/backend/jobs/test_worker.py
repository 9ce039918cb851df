"""The one-GPU worker, its chain in a child process built by the real factory on the tiny preset: order,
cancellation, stage timeout, a stage that never returns (its process killed, the next job alone), a process killed
mid-job, restart recovery, and what the API process sees of the chain without loading it."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from alch3mist.errors import InvalidRequest, JobNotActive, JobNotFound, UnknownLora
from alch3mist.jobs.child import DEFAULT_CHAIN_FACTORY
from alch3mist.jobs.runner import generation_request
from alch3mist.jobs.store import JobRecord, JobStore, new_job_id
from alch3mist.jobs.worker import RESTART_REASON, STOP_REASON, Worker

from tests.backend.jobs import chains

REPO_ROOT = Path(__file__).resolve().parents[3]
HANGING_CHAIN = "tests.backend.jobs.chains:build_hanging_chain"
FAST = {"request": "a cow with crocodile skin", "seed": 7, "steps": 2, "edit_steps": 2, "views": 0}
SLOW = {**FAST, "steps": 100, "size": 256}  # the real stage, long enough on any CPU to be cancelled while it runs
HUNG = chains.HUNG


_settings = chains.tiny_settings


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
def worker_factory(tmp_path: Path) -> Any:
    started: list[Worker] = []

    def make(chain_factory: str = DEFAULT_CHAIN_FACTORY, **fields: Any) -> Worker:
        worker = Worker(JobStore(tmp_path / "data"), _settings(tmp_path, **fields), chain_factory)
        started.append(worker)
        return worker

    yield make
    for worker in started:
        worker.stop()


def _child_pid(worker: Worker) -> int:
    child, _ = worker.chain_process()
    assert child is not None and child.pid is not None
    return child.pid


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
    worker = worker_factory(HANGING_CHAIN, stage_timeout_s=2.0)
    worker.start()
    pid = _child_pid(worker)
    job = worker.submit(_job(chains.CRAWLING))  # 0.1 s steps until cancelled, on any machine
    failed = _wait(worker, job.id, ("failed", "succeeded", "cancelled"), timeout=60)
    assert failed.status == "failed" and failed.error is not None
    assert failed.error["code"] == "stage_timeout" and failed.error["stage"] == "base_image"
    assert "stage 'base_image' exceeded 2 s" in failed.error["message"]
    assert "ALCH3MIST_STAGE_TIMEOUT_S" in failed.error["message"] and "was stopped" in failed.error["message"]
    assert _child_pid(worker) == pid  # it stopped at a step boundary: its process (and models) stay


def test_a_stage_that_never_returns_is_killed_and_the_next_job_runs_alone(worker_factory: Any, tmp_path: Path) -> None:
    # The timeout leaves a fresh process's first (slow, warming up) base image stage room on a loaded 2-core CPU.
    worker = worker_factory(HANGING_CHAIN, stage_timeout_s=8.0, stage_kill_grace_s=1.0)
    worker.start()
    first_pid = _child_pid(worker)
    hung = worker.submit(_job(HUNG))
    after = worker.submit(_job(FAST))

    failed = _wait(worker, hung.id, ("failed", "succeeded", "cancelled"), timeout=60)
    assert failed.status == "failed" and failed.error is not None, failed
    assert failed.error["code"] == "stage_timeout" and failed.error["stage"] == "base_image"
    message = failed.error["message"]
    assert message.startswith("stage 'base_image' exceeded 8 s") and "killed and restarted" in message
    done = _wait(worker, after.id, ("failed", "succeeded", "cancelled"))
    assert done.status == "succeeded", done.error
    assert done.started_at is not None and failed.finished_at is not None and done.started_at >= failed.finished_at

    # The hung stage's process was gone before the next job's first model stage started, in a new process.
    assert chains.hung_pids(tmp_path) == [first_pid] and not chains.alive(first_pid)
    [run] = chains.runs(tmp_path)
    assert run["hung_alive"] == [] and run["pid"] == _child_pid(worker) != first_pid
    # The chain was built twice (the models reloaded), never in this (the API's) process.
    assert sorted(chains.builder_pids(tmp_path)) == sorted([first_pid, run["pid"]])
    assert os.getpid() not in (first_pid, run["pid"])
    assert worker.chain.info().preset == "tiny"  # the new process answers the API's questions


def test_a_worker_process_killed_mid_job_fails_that_job_and_the_queue_goes_on(
    worker_factory: Any, tmp_path: Path
) -> None:
    worker = worker_factory(HANGING_CHAIN)
    worker.start()
    hung = worker.submit(_job(HUNG))
    after = worker.submit(_job(FAST))
    deadline = time.monotonic() + 60
    while not chains.hung_pids(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.05)
    [pid] = chains.hung_pids(tmp_path)
    os.kill(pid, signal.SIGKILL)  # as the kernel's OOM killer would

    failed = _wait(worker, hung.id, ("failed", "succeeded", "cancelled"), timeout=30)
    assert failed.status == "failed" and failed.error is not None, failed
    assert failed.error["code"] == "worker_died" and failed.error["stage"] == "base_image"
    assert failed.error["message"].startswith("worker process died (exit code -9) during stage 'base_image'")
    done = _wait(worker, after.id, ("failed", "succeeded", "cancelled"))
    assert done.status == "succeeded", done.error
    [run] = chains.runs(tmp_path)
    assert run["pid"] != pid and run["hung_alive"] == []


def test_the_api_process_validates_and_reads_the_chain_without_loading_it(worker_factory: Any) -> None:
    worker = worker_factory(HANGING_CHAIN)
    worker.start()
    info = worker.chain.info()
    assert info.preset == "tiny" and [engine.name for engine in info.engines] == ["preview"]
    worker.chain.validate(generation_request(dict(FAST), None))
    with pytest.raises(InvalidRequest, match="unknown 3D engine 'nope'"):
        worker.chain.validate(generation_request({**FAST, "engine_3d": "nope"}, None))
    with pytest.raises(UnknownLora, match="unknown LoRA 'nope'"):
        worker.chain.validate(generation_request({**FAST, "lora": {"name": "nope"}}, None))
    with pytest.raises(InvalidRequest, match="nothing to make"):
        worker.chain.validate(generation_request({"seed": 1}, None))


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


def test_stopping_during_a_stage_that_never_returns_kills_it_and_fails_the_job(
    worker_factory: Any, tmp_path: Path
) -> None:
    worker = worker_factory(HANGING_CHAIN, stage_kill_grace_s=1.0)
    worker.start()
    hung = worker.submit(_job(HUNG))
    deadline = time.monotonic() + 60
    while not chains.hung_pids(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.05)
    [pid] = chains.hung_pids(tmp_path)

    worker.stop()
    assert not chains.alive(pid)
    record, _ = worker.get(hung.id)
    assert record.status == "failed" and record.error is not None
    assert record.error["code"] == "interrupted" and record.error["message"] == STOP_REASON


def test_a_worker_process_that_died_while_idle_is_replaced_before_the_next_job(worker_factory: Any) -> None:
    worker = worker_factory()
    worker.start()
    idle_pid = _child_pid(worker)
    child, _ = worker.chain_process()
    assert child is not None
    os.kill(idle_pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while child.alive and time.monotonic() < deadline:  # dead before the job comes: it died while idle
        time.sleep(0.05)
    job = worker.submit(_job(FAST))
    done = _wait(worker, job.id, ("failed", "succeeded", "cancelled"))
    assert done.status == "succeeded", done.error
    assert _child_pid(worker) != idle_pid


def test_a_hung_stage_does_not_outlive_a_killed_api_process(tmp_path: Path) -> None:
    """The API process is SIGKILLed while a stage hangs (no event, no step boundary): its worker process exits."""
    command = f"from tests.backend.jobs.chains import serve_a_hung_job; serve_a_hung_job({str(tmp_path)!r})"
    api = subprocess.Popen([sys.executable, "-c", command], cwd=REPO_ROOT, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not chains.hung_pids(tmp_path) and time.monotonic() < deadline:
            assert api.poll() is None, "the worker could not start"
            time.sleep(0.1)
        [pid] = chains.hung_pids(tmp_path)
    finally:
        api.kill()
        api.wait()
    deadline = time.monotonic() + 5
    while chains.alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    survived = chains.alive(pid)
    if survived:
        os.kill(pid, signal.SIGKILL)  # leave no stray process behind a failed test
    assert not survived, "the hung stage's process outlived the API process"
