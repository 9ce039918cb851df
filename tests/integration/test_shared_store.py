"""The real backend on a real PostgreSQL (``ALCH3MIST_DATABASE_URL``) and on its embedded SQLite: event ids and
``Last-Event-ID`` resume; on PostgreSQL also a second API node that follows a job it did not run, and the database
going down (503) and coming back."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.servers.postgres import PostgresServer

from .conftest import BackendProcess, submit, wait_for

JOB = {
    "request": "a mossy stone",
    "views": 0,
    "steps": 4,
}  # long enough to drop the stream mid-job, no multiview renders


@dataclass
class Event:
    id: int
    type: str
    data: dict[str, Any]


@dataclass
class Nodes:
    runner: BackendProcess  # the node whose worker runs the jobs submitted to it
    watcher: BackendProcess  # a second API node on the same database: nothing is submitted to it


@pytest.fixture(scope="module")
def nodes(postgres_server: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nodes]:
    url = postgres_server.create_database("integration")
    root = tmp_path_factory.mktemp("shared-store")
    runner = BackendProcess(root / "a" / "data", root / "a.log", ALCH3MIST_DATABASE_URL=url)
    watcher = BackendProcess(root / "b" / "data", root / "b.log", ALCH3MIST_DATABASE_URL=url)
    runner.start()
    watcher.start()  # before any job exists: its own worker finds nothing queued, so it never runs one
    try:
        yield Nodes(runner, watcher)
    finally:
        runner.stop()
        watcher.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def node(request: pytest.FixtureRequest) -> BackendProcess:
    """The embedded backend (SQLite, the suite's shared one) or the PostgreSQL runner node."""
    if request.param == "sqlite":
        backend: BackendProcess = request.getfixturevalue("backend")
        return backend
    nodes: Nodes = request.getfixturevalue("nodes")
    return nodes.runner


def stream(client: httpx.Client, job_id: str, last_event_id: int | None = None) -> Iterator[Event]:
    """Parse ``/events`` as an EventSource does (``id:``, ``event:``, ``data:`` lines, a blank line ends one)."""
    headers = {"Last-Event-ID": str(last_event_id)} if last_event_id is not None else {}
    with client.stream("GET", f"/v1/jobs/{job_id}/events", headers=headers, timeout=120) as response:
        assert response.status_code == 200, response.read()
        fields: dict[str, str] = {}
        for line in response.iter_lines():
            if line and not line.startswith(":"):
                name, _, value = line.partition(":")
                fields[name] = value.removeprefix(" ")
            elif not line and "data" in fields:
                yield Event(int(fields["id"]), fields["event"], json.loads(fields["data"]))
                fields = {}


def read_to_done(client: httpx.Client, job_id: str, last_event_id: int | None = None) -> list[Event]:
    events = []
    for event in stream(client, job_id, last_event_id):
        events.append(event)
        if event.type == "done":
            break
    return events


def test_events_carry_log_ids_and_resume_after_a_dropped_connection(node: BackendProcess) -> None:
    with node.client() as client:
        job = submit(client, **JOB)
        first: list[Event] = []
        for event in stream(client, job["id"]):
            first.append(event)
            if event.type in ("stage", "progress") and event.data["status"] == "running":
                break  # the connection drops mid-job
        assert first[-1].type != "done", "the job ended before the stream could be dropped"
        resumed = read_to_done(client, job["id"], last_event_id=first[-1].id)
        everything = read_to_done(client, job["id"], last_event_id=0)  # the whole log, replayed
    assert resumed[-1].type == "done" and resumed[-1].data["job"]["status"] == "succeeded"
    logged_after = [e.id for e in everything if e.id > first[-1].id]
    assert [e.id for e in resumed] == logged_after  # every later event, in order, once
    assert len(set(logged_after)) == len(logged_after)
    opening = first[0].id  # the snapshot's id: the log's last id when the stream opened
    assert [e.id for e in first[1:] if e.id > opening] == [e.id for e in everything if opening < e.id <= first[-1].id]
    replayed = [(e.type, e.data["message"], e.data["progress"]) for e in everything if e.id > first[-1].id]
    assert [(e.type, e.data["message"], e.data["progress"]) for e in resumed] == replayed


def test_resuming_a_finished_job_replays_to_done_then_says_no_more(node: BackendProcess) -> None:
    with node.client() as client:
        job = wait_for(client, submit(client, **JOB)["id"])
        everything = read_to_done(client, job["id"], last_event_id=0)
        assert everything[-1].type == "done"
        tail = read_to_done(client, job["id"], last_event_id=everything[-3].id)
        assert [e.id for e in tail] == [e.id for e in everything[-2:]]
        past_the_end = client.get(f"/v1/jobs/{job['id']}/events", headers={"Last-Event-ID": str(everything[-1].id)})
        assert past_the_end.status_code == 204
        bad = client.get(f"/v1/jobs/{job['id']}/events", headers={"Last-Event-ID": "yesterday"})
        assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_request"


def test_a_node_that_did_not_run_the_job_streams_it_live(nodes: Nodes) -> None:
    with nodes.runner.client() as runner, nodes.watcher.client() as watcher:
        job = submit(runner, **JOB)
        seen = read_to_done(watcher, job["id"])
        assert seen[-1].data["job"]["status"] == "succeeded"
        assert any(e.type == "progress" for e in seen)  # live events, not only the final state
        logged = read_to_done(runner, job["id"], last_event_id=0)
    assert [e.id for e in seen[1:] if e.id > seen[0].id] == [e.id for e in logged if e.id > seen[0].id]


def test_database_down_answers_503_then_works_again_without_losing_a_job(
    nodes: Nodes, postgres_server: PostgresServer
) -> None:
    with nodes.runner.client() as client:
        before = wait_for(client, submit(client, **JOB)["id"])
        known = {job["id"] for job in client.get("/v1/jobs", params={"limit": 200}).json()["jobs"]}
        postgres_server.stop()
        try:
            answers = [
                client.get(f"/v1/jobs/{before['id']}"),
                client.get("/v1/jobs"),
                client.post("/v1/jobs", json=JOB),
                client.get(f"/v1/jobs/{before['id']}/events"),
            ]
        finally:
            postgres_server.start()
        for answer in answers:
            assert answer.status_code == 503, answer.text
            error = answer.json()["error"]
            assert error["code"] == "service_unavailable"
            assert "job database" in error["message"] and "retry" in error["message"]
            assert int(answer.headers["Retry-After"]) > 0
        assert client.get(f"/v1/jobs/{before['id']}").json()["status"] == "succeeded"  # no restart needed
        after = wait_for(client, submit(client, **JOB)["id"])
        assert after["status"] == "succeeded"
        listed = {job["id"] for job in client.get("/v1/jobs", params={"limit": 200}).json()["jobs"]}
    assert known | {after["id"]} <= listed  # no job lost
    log = Path(nodes.runner.log_path).read_text(errors="replace")
    assert "job database unreachable" in log and "Traceback" not in log  # the cause logged, no traceback anywhere
