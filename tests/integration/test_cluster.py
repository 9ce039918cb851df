"""The cluster mode for real: one API node (``alch3mist serve`` with ``ALCH3MIST_BROKER_URL``), two Celery workers
(``alch3mist worker``), a real redis-server, a real PostgreSQL and moto's S3 server, on the tiny preset.

The workers build the chain with ``tests.backend.jobs.chains:build_hanging_chain`` (``ALCH3MIST_CHAIN_FACTORY``):
the real tiny chain, except that a base prompt with ``HANG`` never returns from its base image stage.
"""

from __future__ import annotations

import base64
import io
import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import trimesh
from alch3mist.jobs.store import JobStore
from PIL import Image

from tests.backend.jobs.chains import HUNG
from tests.servers.postgres import PostgresServer
from tests.servers.redis_server import RedisServer
from tests.servers.s3_server import S3Server, running_s3_server

from .conftest import REPO_ROOT, TINY_CACHE_DIR, BackendProcess, WorkerProcess, wait_for

BUCKET = "alch3mist-cluster"
JOB: dict[str, Any] = {"request": "a mossy stone", "views": 0, "steps": 2, "edit_steps": 2, "size": 64}
LONG_JOB = {**JOB, "steps": 12, "edit_steps": 12, "size": 96}  # a few seconds: long enough to interrupt mid-job
STAGE_TIMEOUT_S = 20
KILL_GRACE_S = 2


@dataclass
class Cluster:
    api: BackendProcess
    workers: list[WorkerProcess]
    store: JobStore  # the test's own look at the shared database
    s3: S3Server


@pytest.fixture(scope="module")
def cluster(
    redis_server: RedisServer, postgres_server: PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("cluster")
    url = postgres_server.create_database("cluster")
    with running_s3_server(root / "moto.log") as s3:
        s3.create_bucket(BUCKET)
        shared = {
            **s3.env,
            "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
            "AWS_CONFIG_FILE": "/nonexistent",
            "ALCH3MIST_STORAGE_URL": f"s3://{BUCKET}/jobs",
            "ALCH3MIST_DATABASE_URL": url,
            "ALCH3MIST_BROKER_URL": redis_server.url(),
        }
        api = BackendProcess(root / "api" / "data", root / "api.log", **shared)
        worker_env = {
            **api.env,
            "PYTHONPATH": os.pathsep.join([os.environ.get("PYTHONPATH", ""), str(REPO_ROOT)]),
            "ALCH3MIST_CACHE_DIR": str(TINY_CACHE_DIR),
            "ALCH3MIST_CHAIN_FACTORY": "tests.backend.jobs.chains:build_hanging_chain",
            "ALCH3MIST_STAGE_TIMEOUT_S": str(STAGE_TIMEOUT_S),
            "ALCH3MIST_STAGE_KILL_GRACE_S": str(KILL_GRACE_S),
        }
        workers = [WorkerProcess(name, root, worker_env) for name in ("w1@test", "w2@test")]
        for worker in workers:
            worker.start()
        api.start()
        store = JobStore(root / "test-store", url)
        try:
            for worker in workers:
                worker.wait_ready()
            yield Cluster(api, workers, store, s3)
        finally:
            api.stop()
            for worker in workers:
                worker.stop()
            store.close()


def _submit(client: httpx.Client, body: dict[str, Any]) -> str:
    response = client.post("/v1/jobs", json=body)
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def _claims(cluster: Cluster, job_id: str) -> tuple[int, str]:
    claims = cluster.store.claims(job_id)
    assert claims is not None, job_id
    return claims.attempts, claims.worker


def _wait_running(client: httpx.Client, job_id: str, stage: str = "base_image") -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["status"] == "running" and job["stage"] == stage:
            return
        assert job["status"] in ("queued", "running"), job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} never reached {stage}")


def test_twenty_jobs_from_five_clients_run_once_each_across_both_workers(cluster: Cluster) -> None:
    ids: list[str] = []
    lock = threading.Lock()

    def client_submits(number: int) -> None:
        with cluster.api.client(user=f"client-{number}") as client:
            for _ in range(4):
                job_id = _submit(client, {**JOB, "seed": number})
                with lock:
                    ids.append(job_id)

    threads = [threading.Thread(target=client_submits, args=(n,)) for n in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(ids) == 20
    with cluster.api.admin() as admin:
        jobs = [wait_for(admin, job_id, timeout=300) for job_id in ids]
    assert [job["status"] for job in jobs] == ["succeeded"] * 20, [job["error"] for job in jobs]
    claims = [_claims(cluster, job_id) for job_id in ids]
    assert [attempts for attempts, _ in claims] == [1] * 20  # each ran exactly once
    assert {worker for _, worker in claims} == {"w1@test", "w2@test"}  # both workers took jobs
    # FIFO: jobs start in the order they were queued. Two workers claim side by side, so a job may start a moment
    # before the one queued just ahead of it — never after one queued two or more places behind it.
    records = sorted((cluster.store.get(job_id) for job_id in ids), key=lambda record: record.seq or 0)  # type: ignore[union-attr, return-value]
    started = sorted(range(20), key=lambda index: records[index].started_at or 0)
    assert all(abs(rank - index) <= 2 for rank, index in enumerate(started)), started


def test_a_job_whose_worker_is_sigkilled_runs_again_and_no_job_is_lost(cluster: Cluster) -> None:
    with cluster.api.client(user="killer") as client:
        victim = _submit(client, {**LONG_JOB, "seed": 11})
        others = [_submit(client, {**JOB, "seed": 12 + n}) for n in range(3)]
        _wait_running(client, victim, "material_edit")
        _, holder = _claims(cluster, victim)
        worker = next(w for w in cluster.workers if w.name == holder)
        readies = worker.log().count("worker ready")
        os.kill(worker.pool_pid(), signal.SIGKILL)
        victim_job = wait_for(client, victim, timeout=240)
        other_jobs = [wait_for(client, job_id, timeout=240) for job_id in others]
    assert victim_job["status"] == "succeeded", victim_job["error"]
    assert _claims(cluster, victim)[0] == 2  # retried once, from scratch, same seed
    assert [job["status"] for job in other_jobs] == ["succeeded"] * 3
    assert [_claims(cluster, job_id)[0] for job_id in others] == [1, 1, 1]
    worker.wait_ready(after=readies)  # Celery replaced the pool process, which loaded the chain again


def test_a_hung_stage_is_killed_the_job_fails_and_that_worker_runs_the_next(cluster: Cluster) -> None:
    with cluster.api.client(user="hang") as client:
        hung = _submit(client, HUNG)
        _wait_running(client, hung, "base_image")
        _, holder = _claims(cluster, hung)
        worker = next(w for w in cluster.workers if w.name == holder)
        readies = worker.log().count("worker ready")
        job = wait_for(client, hung, timeout=STAGE_TIMEOUT_S + 60)
        assert job["status"] == "failed"
        assert job["error"]["code"] == "stage_timeout" and job["error"]["stage"] == "base_image"
        assert "killed" in job["error"]["message"]
        worker.wait_ready(after=readies)  # its pool process was killed and replaced, and loaded the chain again
        after = [_submit(client, {**JOB, "seed": 40 + n}) for n in range(4)]
        finished = [wait_for(client, job_id, timeout=240) for job_id in after]
    assert [j["status"] for j in finished] == ["succeeded"] * 4
    assert holder in {_claims(cluster, job_id)[1] for job_id in after}  # its new pool process took jobs again
    assert _claims(cluster, hung)[0] == 1  # the requeued message found the job finished: not run again


def test_cancel_reaches_the_worker_running_the_job_and_a_queued_job_never_runs(cluster: Cluster) -> None:
    with cluster.api.client(user="cancel") as client:
        running = _submit(client, {**LONG_JOB, "steps": 40, "seed": 50})
        _wait_running(client, running, "base_image")
        blockers = [_submit(client, {**LONG_JOB, "seed": 51})]  # keeps the other worker busy
        queued = _submit(client, {**JOB, "seed": 52})
        assert client.get(f"/v1/jobs/{queued}").json()["queue_position"] >= 1
        answer = client.delete(f"/v1/jobs/{queued}")
        assert answer.status_code == 200 and answer.json()["status"] == "cancelled"
        answer = client.delete(f"/v1/jobs/{running}")
        assert answer.status_code == 202, answer.text
        job = wait_for(client, running, timeout=60)
        assert job["status"] == "cancelled" and job["error"]["code"] == "cancelled", job
        assert job["error"]["stage"] == "base_image"
        assert client.delete(f"/v1/jobs/{running}").status_code == 409
        assert all(wait_for(client, b)["status"] == "succeeded" for b in blockers)
        time.sleep(1)
        assert client.get(f"/v1/jobs/{queued}").json()["status"] == "cancelled"
    assert cluster.store.claims(queued) is None  # its message came and found it cancelled: never claimed


def _events(response: httpx.Response, until_done: bool, limit: int | None = None) -> list[tuple[int, str]]:
    events: list[tuple[int, str]] = []
    event_id, name = 0, "message"
    for line in response.iter_lines():
        if line.startswith("id:"):
            event_id = int(line.split(":", 1)[1])
        elif line.startswith("event:"):
            name = line.split(":", 1)[1].strip()
        elif not line and event_id:
            events.append((event_id, name))
            if (until_done and name == "done") or (limit and len(events) >= limit):
                break
            event_id = 0
    return events


def test_an_api_restart_loses_no_job_and_streams_resume_with_last_event_id(cluster: Cluster) -> None:
    with cluster.api.client(user="restart") as client:
        ids = [_submit(client, {**LONG_JOB, "seed": 60 + n}) for n in range(3)]
        _wait_running(client, ids[0], "base_image")
        with client.stream("GET", f"/v1/jobs/{ids[0]}/events", timeout=60) as response:
            first = _events(response, until_done=False, limit=2)
    cluster.api.kill9()
    cluster.api.start()  # the same port and database
    last_seen = first[-1][0]
    with cluster.api.client(user="restart") as client:
        headers = {"Last-Event-ID": str(last_seen)}
        with client.stream("GET", f"/v1/jobs/{ids[0]}/events", headers=headers, timeout=120) as response:
            assert response.status_code == 200
            rest = _events(response, until_done=True)
        jobs = [wait_for(client, job_id, timeout=240) for job_id in ids]
    assert [job["status"] for job in jobs] == ["succeeded"] * 3
    logged = [(event.id, event.type) for event in cluster.store.events_after(ids[0], last_seen, 1000)]
    assert rest == logged  # every later event, once, in order, up to done
    assert rest[-1][1] == "done"


def test_artifacts_from_a_worker_are_in_s3_and_signed_links_work_without_the_key(cluster: Cluster) -> None:
    with cluster.api.client(user="s3") as client:
        job = wait_for(client, _submit(client, {**JOB, "seed": 80}), timeout=240)
    assert job["status"] == "succeeded", job["error"]
    listed = cluster.s3.client().list_objects_v2(Bucket=BUCKET, Prefix=f"jobs/{job['id']}/")
    in_bucket = {item["Key"].split("/", 2)[2] for item in listed.get("Contents", [])}
    assert {"base.png", "model.glb", "manifest.json"} <= in_bucket
    url = job["artifacts"]["glb"]
    base, token = url.split("?token=")
    body = cluster.s3.client().get_object(Bucket=BUCKET, Key=f"jobs/{job['id']}/model.glb")["Body"].read()
    with httpx.Client(timeout=30) as browser:  # no Authorization header: only the signed token
        answer = browser.get(url)
        assert answer.status_code == 200 and answer.content == body
        tampered = browser.get(f"{base}?token={token[:-4]}{'AAAA' if not token.endswith('AAAA') else 'BBBB'}")
        assert tampered.status_code == 401


def test_a_workers_inputs_come_from_the_bucket_a_parents_image_and_a_mesh(cluster: Cluster) -> None:
    mesh = bytes(trimesh.creation.box(extents=(1.0, 0.5, 0.4)).export(file_type="glb"))
    with cluster.api.client(user="inputs") as client:
        parent = wait_for(client, _submit(client, {**JOB, "seed": 85}), timeout=120)
        child = wait_for(client, _submit(client, {"parent": parent["id"], "edit_prompt": "Alch3mist: gold", **JOB}))
        body = {"mesh": base64.b64encode(mesh).decode(), "request": "make it oak", "views": 0, "texture_size": 256}
        body |= {"edit_steps": 2}  # small: the texture stage must stay far below the test's 20 s stage limit
        painted = wait_for(client, _submit(client, {**body, "texture": {"views": 2, "view_size": 64}}), timeout=180)
    assert child["status"] == "succeeded", child["error"]
    bucket = cluster.s3.client()
    base = {
        job: bucket.get_object(Bucket=BUCKET, Key=f"jobs/{job}/base.png")["Body"].read()
        for job in (parent["id"], child["id"])
    }
    assert Image.open(io.BytesIO(base[child["id"]])).tobytes() == Image.open(io.BytesIO(base[parent["id"]])).tobytes()
    assert painted["status"] == "succeeded", painted["error"]
    assert painted["manifest"]["flow"] == "retexture"


def test_redis_briefly_down_is_a_clear_503_and_the_workers_reconnect(
    cluster: Cluster, redis_server: RedisServer
) -> None:
    redis_server.stop()
    try:
        with cluster.api.client(user="outage") as client:
            refused = client.post("/v1/jobs", json={**JOB, "seed": 90})
        assert refused.status_code == 503, refused.text
        assert "Redis" in refused.json()["error"]["message"] and refused.headers["Retry-After"]
    finally:
        redis_server.start()  # the same port, empty: nothing was queued while it was down
    deadline = time.monotonic() + 60
    with cluster.api.client(user="outage") as client:
        while (response := client.post("/v1/jobs", json={**JOB, "seed": 91})).status_code == 503:
            assert time.monotonic() < deadline, response.text  # until a worker has reported again (≤ 10 s)
            time.sleep(0.5)
        assert response.status_code == 202, response.text
        job = wait_for(client, response.json()["id"], timeout=120)
    assert job["status"] == "succeeded", job["error"]
    assert cluster.store.list_jobs(key_name=None, user=None, status="queued") == []  # none left behind


def test_postgresql_briefly_down_mid_job_is_a_503_and_the_job_still_finishes(
    cluster: Cluster, postgres_server: PostgresServer
) -> None:
    with cluster.api.client(user="pg-outage") as client:
        job_id = _submit(client, {**LONG_JOB, "steps": 30, "seed": 95})
        _wait_running(client, job_id, "base_image")
        postgres_server.stop()
        try:
            refused = client.get(f"/v1/jobs/{job_id}")
            assert refused.status_code == 503 and refused.json()["error"]["code"] == "service_unavailable"
            time.sleep(2)
        finally:
            postgres_server.start()
        job = wait_for(client, job_id, timeout=180)  # the worker's final state waited for the database
        assert job["status"] == "succeeded", job["error"]
        after = wait_for(client, _submit(client, {**JOB, "seed": 96}), timeout=120)  # workers use it again
    assert after["status"] == "succeeded", after["error"]
    assert _claims(cluster, job_id)[0] == 1
