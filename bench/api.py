"""API benchmark (CPU, tiny preset): what the jobs API adds on top of the chain.

* POST → job start: from sending ``POST /v1/jobs`` on an empty queue to the job's first ``running`` event.
* POST answer: the ``POST /v1/jobs`` round trip alone (validation, image checks, SQLite insert).
* SSE event latency: server event time (``at``) → the client has parsed the event.
* Status polls: ``GET /v1/jobs/{id}`` from several client threads for a few seconds (requests/s, p50, p99).
* End-to-end through the API ÷ the same chain called in-process (target ≤ 1.05): the same request and seed,
  POST → ``done`` event against ``chain.run`` wall time, the two alternating run by run (never at the same time).

Run: ``python -m bench.api [--runs N]``. It starts its own backend (``python -m alch3mist.api.main``).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

JOB = {"request": "a cow with crocodile skin", "seed": 7, "steps": 2, "edit_steps": 2, "views": 2, "view_size": 64}
KEY = "bench-key-0123456789"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="Timed jobs through the API and in-process.")
    parser.add_argument("--poll-seconds", type=float, default=5.0, help="Duration of the status-poll test.")
    parser.add_argument("--poll-clients", type=int, default=4, help="Concurrent status-poll clients.")
    parser.add_argument("--cache-dir", type=Path, default=Path(".cache/alch3mist-tests"), help="Tiny models cache.")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        chain = _load_chain(Path(tmp), args.cache_dir)
        server = _Server(Path(tmp) / "data", args.cache_dir.resolve(), Path(tmp) / "backend.log")
        try:
            server.start()
            api, in_process = _measure(server.base_url, chain, Path(tmp), args)
        finally:
            server.stop()
    _print_table(api, in_process, args)


# ---------------------------------------------------------------------------------------------------- the server


class _Server:
    def __init__(self, data_dir: Path, cache_dir: Path, log_path: Path) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.env = {
            **os.environ,
            "ALCH3MIST_PRESET": "tiny",
            "ALCH3MIST_HOST": "127.0.0.1",
            "ALCH3MIST_PORT": str(self.port),
            "ALCH3MIST_API_KEYS": f"bench:{KEY}",
            "ALCH3MIST_DATA_DIR": str(data_dir),
            "ALCH3MIST_CACHE_DIR": str(cache_dir),
            "ALCH3MIST_ENGINE_3D": "preview",
            "ALCH3MIST_MAX_QUEUED_PER_USER": "0",
            # A benchmark is no tenant: no hourly quotas, and room for its 100-step "busy" job.
            "ALCH3MIST_KEY_JOBS_PER_HOUR": "0",
            "ALCH3MIST_USER_JOBS_PER_HOUR": "0",
            "ALCH3MIST_MAX_STEPS": "100",
        }
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "alch3mist.api.main"], env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"backend exited: {self.log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.base_url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.3)
        raise RuntimeError("backend did not start in 600 s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(60)


# ---------------------------------------------------------------------------------------------------- measurements


def _measure(base_url: str, chain: Any, tmp: Path, args: argparse.Namespace) -> tuple[dict[str, Any], list[float]]:
    """API and in-process runs alternate (API first on even runs), so a drifting machine load hits both alike;
    the server's worker sits idle on a condition variable while the in-process chain runs."""
    results: dict[str, Any] = {"start": [], "post": [], "sse": [], "e2e": []}
    in_process: list[float] = []
    with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {KEY}"}, timeout=120) as client:
        _run_job(client, results={"start": [], "post": [], "sse": [], "e2e": []})  # warm-up
        _run_in_process(chain, tmp / "warmup")
        for index in range(args.runs):
            for which in ("api", "direct") if index % 2 == 0 else ("direct", "api"):
                if which == "api":
                    _run_job(client, results)
                else:
                    in_process.append(_run_in_process(chain, tmp / f"run{index}"))
        job_id = client.get("/v1/jobs", params={"limit": 1}).json()["jobs"][0]["id"]
        results["poll_idle"] = _poll(base_url, job_id, args.poll_seconds, args.poll_clients)
        busy = client.post("/v1/jobs", json={**JOB, "steps": 100, "views": 0}).json()["id"]
        results["poll_busy"] = _poll(base_url, job_id, args.poll_seconds, args.poll_clients)
        client.delete(f"/v1/jobs/{busy}")
    return results, in_process


def _run_job(client: httpx.Client, results: dict[str, Any]) -> None:
    """POST one job and follow its events to ``done``; records start latency, SSE latencies and wall time."""
    sent = time.time()
    response = client.post("/v1/jobs", json=JOB)
    results["post"].append(time.time() - sent)
    response.raise_for_status()
    job_id = response.json()["id"]
    started: float | None = None
    with client.stream("GET", f"/v1/jobs/{job_id}/events", timeout=600) as stream:
        for event in _events(stream):
            received = time.time()
            if event.get("at"):
                results["sse"].append(received - datetime.fromisoformat(event["at"]).timestamp())
            if started is None and event["status"] == "running":
                started = received
                results["start"].append(started - sent)
            if event["type"] == "done":
                if event["status"] != "succeeded":
                    raise RuntimeError(f"benchmark job failed: {event['job']['error']}")
                results["e2e"].append(received - sent)
                return


def _events(stream: httpx.Response) -> Any:
    data: list[str] = []
    for line in stream.iter_lines():
        if line.startswith("data:"):
            data.append(line[5:].strip())
        elif not line and data:
            yield json.loads("\n".join(data))
            data = []


def _poll(base_url: str, job_id: str, seconds: float, clients: int) -> dict[str, float]:
    latencies: list[float] = []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def poller() -> None:
        mine = []
        with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {KEY}"}, timeout=30) as client:
            while time.monotonic() < deadline:
                sent = time.perf_counter()
                client.get(f"/v1/jobs/{job_id}").raise_for_status()
                mine.append(time.perf_counter() - sent)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=poller) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    latencies.sort()
    return {
        "rps": len(latencies) / seconds,
        "p50": latencies[len(latencies) // 2],
        "p99": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
    }


def _load_chain(tmp: Path, cache_dir: Path) -> Any:
    from alch3mist.chain import build_chain
    from alch3mist.config import Settings

    return build_chain(Settings(preset="tiny", cache_dir=cache_dir, data_dir=tmp / "in-process", engine_3d="preview"))


def _run_in_process(chain: Any, out_dir: Path) -> float:
    from alch3mist.chain import GenerationRequest

    started = time.perf_counter()
    manifest = chain.run(GenerationRequest(**JOB), out_dir, cancel=threading.Event())
    wall = time.perf_counter() - started
    if manifest.status != "succeeded":
        raise RuntimeError(f"in-process run failed: {manifest.error}")
    return wall


# ---------------------------------------------------------------------------------------------------- report


def _ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:9.1f} {max(values) * 1000:9.1f}"


def _print_table(api: dict[str, Any], in_process: list[float], args: argparse.Namespace) -> None:
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(f"API benchmark — tiny preset, preview engine, {args.runs} runs, {os.cpu_count()} CPU cores, load {load}")
    print(f"{'measure':<40}{'median ms':>10}{'max ms':>10}")
    print(f"{'POST /v1/jobs answer':<40}{_ms(api['post'])}")
    print(f"{'POST -> job running (empty queue)':<40}{_ms(api['start'])}")
    print(f"{'SSE event latency (server -> client)':<40}{_ms(api['sse'])}   ({len(api['sse'])} events)")
    for name in ("poll_idle", "poll_busy"):
        poll = api[name]
        label = f"status polls, {args.poll_clients} clients, {'idle' if name == 'poll_idle' else 'job running'}"
        print(f"{label:<40}{poll['rps']:>8.0f}/s   p50 {poll['p50'] * 1000:.1f} ms  p99 {poll['p99'] * 1000:.1f} ms")
    through_api, direct = statistics.median(api["e2e"]), statistics.median(in_process)
    print(f"{'end-to-end through the API':<40}{_ms(api['e2e'])}")
    print(f"{'same chain in-process':<40}{_ms(in_process)}")
    print(f"API ÷ in-process = {through_api / direct:.3f}  (target ≤ 1.05)")


if __name__ == "__main__":
    main()
