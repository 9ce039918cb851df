"""The SSE stream's log follower (``api/routes/jobs.py``) on a real store: paging, a job that finished without a
logged ``done``, a deleted job, and a database outage in the middle of a stream (PostgreSQL stopped and started)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from alch3mist.api.routes import jobs as routes
from alch3mist.jobs.store import JobRecord, JobStore, event_payload, new_job_id
from alch3mist.jobs.worker import JobUpdate, Subscription

from tests.servers.postgres import PostgresServer


async def _collect(store: JobStore, job_id: str, after: int, timeout: float = 10.0) -> list[tuple[int, JobUpdate]]:
    subscription = Subscription(job_id, asyncio.get_running_loop())
    seen: list[tuple[int, JobUpdate]] = []

    async def follow() -> None:
        async for item in routes._log_updates(job_id, after, store, subscription):
            seen.append(item)

    await asyncio.wait_for(follow(), timeout)
    return seen


def _running(store: JobStore) -> JobRecord:
    return store.insert(JobRecord(id=new_job_id(), status="running"))


def test_follows_every_event_in_order_across_pages_until_done(tmp_path: Path) -> None:
    store = JobStore(tmp_path)
    record = _running(store)
    ids = [store.append_event(record.id, "progress", event_payload(record, message=str(i), at=i)) for i in range(450)]
    record.status = "succeeded"
    ids.append(store.append_event(record.id, "done", event_payload(record, at=999.0)))
    seen = asyncio.run(_collect(store, record.id, after=ids[9]))
    assert [event_id for event_id, _ in seen] == ids[10:]  # 441 events: three pages of the log
    assert [update.message for _, update in seen[:2]] == ["10", "11"] and seen[-1][1].type == "done"
    assert seen[-1][1].job.status == "succeeded" and seen[0][1].at == 10.0


def test_a_job_finished_without_a_logged_done_ends_from_its_row(tmp_path: Path) -> None:
    store = JobStore(tmp_path)
    record = _running(store)
    last = store.append_event(record.id, "stage", event_payload(record, at=1.0))
    record.status, record.message = "failed", "the worker could not log its end"
    store.save(record)
    started = time.monotonic()
    seen = asyncio.run(_collect(store, record.id, after=0))
    assert [(event_id, update.type) for event_id, update in seen] == [(last, "stage"), (last, "done")]
    assert seen[-1][1].job.status == "failed" and seen[-1][1].message == "the worker could not log its end"
    assert time.monotonic() - started >= routes.DONE_GRACE_S  # a grace period for a done still being written


def test_a_deleted_job_ends_the_stream(tmp_path: Path) -> None:
    store = JobStore(tmp_path)
    record = _running(store)
    store.delete(record.id)
    assert asyncio.run(_collect(store, record.id, after=0)) == []


def test_a_database_outage_keeps_the_stream_open_and_it_catches_up(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    store = JobStore(tmp_path, postgres_server.create_database())
    record = _running(store)
    before = store.append_event(record.id, "stage", event_payload(record, at=1.0))

    async def scenario() -> list[tuple[int, JobUpdate]]:
        following = asyncio.create_task(_collect(store, record.id, after=0, timeout=60))
        await asyncio.sleep(0.3)
        await asyncio.to_thread(postgres_server.stop)
        await asyncio.sleep(1.5)  # several polls fail meanwhile
        assert not following.done()
        await asyncio.to_thread(postgres_server.start)
        record.status = "succeeded"
        await asyncio.to_thread(store.append_event, record.id, "done", event_payload(record, at=2.0))
        return await following

    try:
        seen = asyncio.run(scenario())
    finally:
        if not postgres_server.running:
            postgres_server.start()
    assert [update.type for _, update in seen] == ["stage", "done"] and seen[0][0] == before
