"""The cluster mode on this machine (CPU, tiny preset): throughput with 1 and 2 ``alch3mist worker`` processes (one
torch thread each), POST → running latency on an idle worker, and event latency from a worker process to an SSE
client of the API node (the update's time in the worker → parsed by the client).

Real parts, as in tests/integration/test_cluster.py: redis-server and PostgreSQL (Debian packages) in temp dirs, one
API node (``alch3mist serve`` with ``ALCH3MIST_BROKER_URL``), the workers; artifacts in a local folder all share.

Run: ``python -m bench.cluster [--jobs N] [--steps S]``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from tests.integration.conftest import TINY_CACHE_DIR, BackendProcess, WorkerProcess
from tests.servers.postgres import PostgresServer
from tests.servers.redis_server import RedisServer


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=12, help="Jobs per throughput run.")
    parser.add_argument("--steps", type=int, default=8, help="Denoising steps of each job (both FLUX stages).")
    args = parser.parse_args(argv)
    job = {"request": "a mossy stone", "views": 0, "steps": args.steps, "edit_steps": args.steps, "size": 64}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        redis_root = Path(tempfile.mkdtemp(prefix="alch3mist-redis-"))
        pg_root = Path(tempfile.mkdtemp(prefix="alch3mist-pg-"))
        redis, postgres = RedisServer(redis_root), PostgresServer(pg_root)
        redis.start()
        postgres.start()
        try:
            for workers in (1, 2):
                root = Path(tmp) / f"w{workers}"
                rows.append(_run(root, workers, redis, postgres.create_database("bench"), job, args.jobs))
        finally:
            redis.stop()
            postgres.stop()
            shutil.rmtree(redis_root, ignore_errors=True)
            shutil.rmtree(pg_root, ignore_errors=True)
    print("| workers | jobs | wall s | jobs/min | speed-up | POST→running p50 ms | event latency p50 / p90 ms |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        speedup = rows[0]["wall_s"] / row["wall_s"]
        print(
            f"| {row['workers']} | {row['jobs']} | {row['wall_s']:.1f} | {60 * row['jobs'] / row['wall_s']:.1f} "
            f"| {speedup:.2f}× | {row['start_ms']:.0f} | {row['event_p50']:.0f} / {row['event_p90']:.0f} |"
        )


def _run(root: Path, count: int, redis: RedisServer, url: str, job: dict[str, Any], jobs: int) -> dict[str, Any]:
    root.mkdir(parents=True)
    env = {"ALCH3MIST_DATABASE_URL": url, "ALCH3MIST_BROKER_URL": redis.url(), "ALCH3MIST_MAX_QUEUED_PER_USER": "0"}
    api = BackendProcess(root / "shared", root / "api.log", **env)
    worker_env = {**api.env, "ALCH3MIST_CACHE_DIR": str(TINY_CACHE_DIR)}
    workers = [WorkerProcess(f"bench{n}@{count}", root, worker_env) for n in range(count)]
    for worker in workers:
        worker.env["ALCH3MIST_DATA_DIR"] = str(root / "shared")  # one box: one local artifact folder
        worker.start()
    api.start()
    try:
        for worker in workers:
            worker.wait_ready()
        with api.client() as client:
            start_ms, events = _latencies(client, job)
            began = time.monotonic()
            ids = [_post(client, {**job, "seed": n}) for n in range(jobs)]
            for job_id in ids:
                _wait(client, job_id)
            wall_s = time.monotonic() - began
    finally:
        api.stop()
        for worker in workers:
            worker.stop()
    events.sort()
    return {
        "workers": count,
        "jobs": jobs,
        "wall_s": wall_s,
        "start_ms": start_ms,
        "event_p50": statistics.median(events),
        "event_p90": events[int(0.9 * (len(events) - 1))],
    }


def _latencies(client: httpx.Client, job: dict[str, Any]) -> tuple[float, list[float]]:
    """Five jobs one after another on idle workers: POST → started_at (median, ms) and every event's latency (ms)."""
    starts: list[float] = []
    events: list[float] = []
    for n in range(5):
        posted = time.time()
        job_id = _post(client, {**job, "seed": 100 + n})
        thread = threading.Thread(target=_follow, args=(client, job_id, events))
        thread.start()
        thread.join(300)
        started = client.get(f"/v1/jobs/{job_id}").json()["started_at"]
        starts.append(1000 * (datetime.fromisoformat(started.replace("Z", "+00:00")).timestamp() - posted))
    return statistics.median(starts), events


def _follow(client: httpx.Client, job_id: str, latencies: list[float]) -> None:
    """Every event the worker logged, received: now − its ``at`` (set in the worker). The opening snapshot (made by
    the API node, with the id of the log's last event at that moment) is not counted."""
    snapshot_id: str | None = None
    event_id = ""
    with client.stream("GET", f"/v1/jobs/{job_id}/events", timeout=300) as response:
        for line in response.iter_lines():
            if line.startswith("id:"):
                event_id = line.split(":", 1)[1].strip()
                snapshot_id = event_id if snapshot_id is None else snapshot_id
            if not line.startswith("data:"):
                continue
            data = json.loads(line.split(":", 1)[1])
            if event_id != snapshot_id:
                at = datetime.fromisoformat(data["at"].replace("Z", "+00:00")).timestamp()
                latencies.append(1000 * (time.time() - at))
            if data["type"] == "done":
                return


def _post(client: httpx.Client, body: dict[str, Any]) -> str:
    response = client.post("/v1/jobs", json=body)
    response.raise_for_status()
    return str(response.json()["id"])


def _wait(client: httpx.Client, job_id: str) -> None:
    while (job := client.get(f"/v1/jobs/{job_id}").json())["status"] not in ("succeeded", "failed", "cancelled"):
        time.sleep(0.1)
    if job["status"] != "succeeded":
        raise RuntimeError(f"job {job_id} {job['status']}: {job['error']}")


if __name__ == "__main__":
    main()
