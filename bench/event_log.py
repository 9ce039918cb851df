"""Event latency across processes (CPU): a job event appended to the store's event log by one process → parsed by
an SSE client of an API node that does not run the job (the cluster case: workers and API nodes are different
processes), on the embedded SQLite file and on a real PostgreSQL.

This process plays the worker: it inserts a running job into the same database as a real backend
(``python -m alch3mist.api.main``, tiny preset), opens ``/events`` on that backend, then appends ``progress``
events at random moments and timestamps each append; the client thread records when each one arrives.

Run: ``python -m bench.event_log [--events N]``. PostgreSQL comes from Debian's package
(scripts/install-system-deps.sh), started in a temp dir as the tests do (tests/servers/postgres.py).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import tempfile
import threading
import time
from pathlib import Path

import httpx
from alch3mist.jobs.store import JobRecord, JobStore, event_payload, new_job_id

from bench.api import KEY, _Server
from tests.servers.postgres import PostgresServer


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100, help="Events appended per database.")
    parser.add_argument("--cache-dir", type=Path, default=Path(".cache/alch3mist-tests"), help="Tiny models cache.")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        rows.append(("sqlite", _measure(Path(tmp) / "sqlite", None, args)))
        pg_root = Path(tempfile.mkdtemp(prefix="alch3mist-pg-"))
        postgres = PostgresServer(pg_root)
        postgres.start()
        try:
            rows.append(("postgresql", _measure(Path(tmp) / "pg", postgres.create_database("bench"), args)))
        finally:
            postgres.stop()
            shutil.rmtree(pg_root, ignore_errors=True)
    print("| database | events | p50 ms | p90 ms | p99 ms | max ms |")
    print("|---|---|---|---|---|---|")
    for name, latencies in rows:
        ms = sorted(1000 * value for value in latencies)
        p50, p90, p99 = (ms[min(len(ms) - 1, int(q * len(ms)))] for q in (0.5, 0.9, 0.99))
        print(f"| {name} | {len(ms)} | {p50:.0f} | {p90:.0f} | {p99:.0f} | {ms[-1]:.0f} |")


def _measure(root: Path, database_url: str | None, args: argparse.Namespace) -> list[float]:
    root.mkdir(parents=True)
    server = _Server(root / "data", args.cache_dir.resolve(), root / "backend.log")
    if database_url is not None:
        server.env["ALCH3MIST_DATABASE_URL"] = database_url
    server.start()
    store = JobStore(root / "data", database_url)
    try:
        record = store.insert(JobRecord(id=new_job_id(), status="running", key_name="bench", user=""))
        return _latencies(server.base_url, store, record, args.events)
    finally:
        store.close()
        server.stop()


def _latencies(base_url: str, store: JobStore, record: JobRecord, count: int) -> list[float]:
    appended: dict[int, float] = {}
    received: dict[int, float] = {}
    opened = threading.Event()

    def follow() -> None:
        headers = {"Authorization": f"Bearer {KEY}"}
        with httpx.stream("GET", f"{base_url}/v1/jobs/{record.id}/events", headers=headers, timeout=120) as response:
            for line in response.iter_lines():
                if line.startswith("data:"):
                    data = json.loads(line.removeprefix("data:"))
                    if data["type"] == "status":
                        opened.set()
                    elif data["type"] == "progress":
                        received[int(data["message"])] = time.time()
                    elif data["type"] == "done":
                        return

    client = threading.Thread(target=follow, daemon=True)
    client.start()
    opened.wait(60)
    for index in range(count):
        time.sleep(random.uniform(0.02, 0.3))  # off the poll's rhythm
        appended[index] = time.time()
        store.append_event(record.id, "progress", event_payload(record, message=str(index), at=appended[index]))
    record.status, record.finished_at = "succeeded", time.time()
    store.save(record)
    store.append_event(record.id, "done", event_payload(record, at=time.time()))
    client.join(60)
    return [received[index] - appended[index] for index in appended if index in received]


if __name__ == "__main__":
    main()
