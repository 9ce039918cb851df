"""kill -9 during a job, restart on the same data dir: every job is accounted for; a viewer page's short-TTL links
expire while the page's own link renders fresh ones."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import httpx

from .conftest import BackendProcess, submit, wait_for


def test_kill9_during_a_job_then_restart_accounts_for_every_job(tmp_path: Path) -> None:
    first = BackendProcess(tmp_path / "data", tmp_path / "backend.log").start()
    try:
        with first.admin() as client:  # the admin key's ceilings allow 100 steps
            running = submit(client, request="a dragon of obsidian", steps=100)
            queued = [submit(client, request=f"a ring of silver {i}", views=1) for i in range(2)]
            _wait_until_running(client, running["id"])
            done_before = [j["id"] for j in client.get("/v1/jobs").json()["jobs"] if j["status"] == "succeeded"]
            assert done_before == []
    finally:
        assert first.process is not None
        orphans = _children(first.process.pid)  # the chain's worker process among them
        first.kill9()
    assert orphans and _all_gone(orphans, timeout_s=5), "the worker process outlived the killed API process"

    second = BackendProcess(tmp_path / "data", tmp_path / "backend.log", ALCH3MIST_LINK_TTL_S="3")
    second.start()
    try:
        with second.admin() as client:
            jobs = {j["id"]: j for j in client.get("/v1/jobs").json()["jobs"]}
            assert set(jobs) == {running["id"], *(j["id"] for j in queued)}, "no job lost, none invented"
            interrupted = jobs[running["id"]]
            assert interrupted["status"] == "failed"
            assert interrupted["error"]["code"] == "interrupted"
            assert "restarted while this job was running" in interrupted["error"]["message"]
            assert interrupted["error"]["stage"] == "base_image"
            finished = [wait_for(client, job["id"]) for job in queued]
            assert [job["status"] for job in finished] == ["succeeded", "succeeded"]

            viewer = client.get(f"/v1/jobs/{finished[0]['id']}").json()["artifacts"]["viewer"]
            fresh = _glb_link(httpx.get(viewer).text)
            assert httpx.get(fresh).status_code == 200
            time.sleep(4.5)
            expired = httpx.get(fresh)
            assert expired.status_code == 401 and "expired" in expired.json()["error"]["message"]
            renewed = _glb_link(httpx.get(viewer).text)  # the page's own link still works and signs anew
            assert httpx.get(renewed).status_code == 200

            # A graceful stop (SIGTERM) during a job: the job stops at a step and says why.
            last = submit(client, request="a crown of gold", steps=100)
            _wait_until_running(client, last["id"])
            assert second.process is not None
            children = _children(second.process.pid)
    finally:
        second.stop()
    assert _all_gone(children), "the worker process outlived a graceful stop"
    # uvicorn shuts down cleanly, then re-raises SIGTERM: the exit status is -15 after a complete shutdown
    assert second.process is not None and second.process.returncode in (0, -15), second.log_tail()
    assert "Application shutdown complete" in second.log_tail(200)
    with sqlite3.connect(tmp_path / "data" / "jobs.sqlite3") as db:
        status, error = db.execute("SELECT status, error FROM jobs WHERE id = ?", (last["id"],)).fetchone()
    assert status == "failed" and json.loads(error)["message"] == "backend stopped while this job was running"


def _children(pid: int) -> list[int]:
    """The processes ``pid`` started, from any of its threads."""
    tasks = Path(f"/proc/{pid}/task").glob("*/children")
    return [int(child) for task in tasks for child in task.read_text().split()]


def _all_gone(pids: list[int], timeout_s: float = 15) -> bool:
    """Whether every process in ``pids`` has exited (a zombie that its new parent has not reaped counts as exited)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if all(_exited(pid) for pid in pids):
            return True
        time.sleep(0.1)
    return False


def _exited(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def _glb_link(page: str) -> str:
    return next(p for p in page.split('"') if "/artifacts/model.glb?token=" in p).replace("&amp;", "&")


def _wait_until_running(client: httpx.Client, job_id: str) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["status"] == "running" and job["stage"] == "base_image" and job["stage_progress"] > 0:
            return
        time.sleep(0.1)
    raise AssertionError("the job never got into its base image")
