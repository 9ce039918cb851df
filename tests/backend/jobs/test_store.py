"""The job store on both databases (embedded SQLite and a real PostgreSQL server): round trips, FIFO order,
per-owner counts, restart recovery, the event log, atomic admission, and 503 while the database is down."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from alch3mist.errors import InvalidRequest, ServiceUnavailable
from alch3mist.jobs.store import JobRecord, JobStore, event_payload, new_job_id

from tests.servers.postgres import PostgresServer

StoreFactory = Callable[[], JobStore]


@pytest.fixture(params=["sqlite", "postgresql"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    """``make_store()`` opens a store on this test's database (a fresh one per test); call it again to reopen."""
    url = None
    if request.param == "postgresql":
        server: PostgresServer = request.getfixturevalue("postgres_server")
        url = server.create_database()
    opened: list[JobStore] = []

    def make() -> JobStore:
        opened.append(JobStore(tmp_path, url))
        return opened[-1]

    def close_all() -> None:
        for store in opened:
            store.close()

    request.addfinalizer(close_all)
    return make


def _record(user: str | None = None, **fields: object) -> JobRecord:
    return JobRecord(id=new_job_id(), user=user, **fields)  # type: ignore[arg-type]


def test_insert_get_round_trips_every_field(make_store: StoreFactory) -> None:
    store = make_store()
    record = _record(
        user="ana",
        key_name="webui",
        params={"request": "a cow", "lora": {"name": "x", "scale": 0.5}},
        artifacts=["base.png", "views/view_00.png"],
        warnings=["preview engine"],
        error={"code": "stage_failed", "stage": "mesh", "message": "boom"},
        manifest={"seed": 7},
        seed=4294967295,  # the largest seed the API accepts: above a 32-bit signed integer
    )
    store.insert(record)
    loaded = store.get(record.id)
    assert loaded is not None
    assert loaded == record
    assert loaded.seq is not None and loaded.seq >= 1
    bare = store.insert(_record())
    assert store.get(bare.id) == bare  # None fields come back None, empty lists empty


def test_queued_is_fifo_and_save_updates(make_store: StoreFactory) -> None:
    store = make_store()
    records = [store.insert(_record()) for _ in range(5)]
    records[1].status = "running"
    store.save(records[1])
    assert [r.id for r in store.queued()] == [records[i].id for i in (0, 2, 3, 4)]


def test_list_filters_by_owner_and_status_newest_first(make_store: StoreFactory) -> None:
    store = make_store()
    first, second = store.insert(_record("ana", key_name="webui")), store.insert(_record("ana", key_name="webui"))
    other, keyed = store.insert(_record("bo", key_name="webui")), store.insert(_record("ana", key_name="tool"))
    alone = store.insert(_record("", key_name="webui"))  # the key's own job (no end user)
    assert [r.id for r in store.list_jobs(key_name="webui", user="ana")] == [second.id, first.id]
    assert [r.id for r in store.list_jobs(key_name="webui", user="bo", status="queued")] == [other.id]
    assert [r.id for r in store.list_jobs(key_name="webui", user="")] == [alone.id]  # not a wildcard
    assert [r.id for r in store.list_jobs(key_name=None, user="ana")] == [keyed.id, second.id, first.id]
    assert store.list_jobs(key_name=None, user=None, status="succeeded") == []
    assert len(store.list_jobs(key_name=None, user=None, limit=2)) == 2


def test_counts_by_owner(make_store: StoreFactory) -> None:
    store = make_store()
    for status in ("queued", "running", "succeeded", "failed", "cancelled"):
        store.insert(_record("ana", key_name="webui", status=status, created_at=1000.0))
    store.insert(_record("bo", key_name="webui", status="queued", created_at=2000.0))
    store.insert(_record("ana", key_name="tool", status="queued", created_at=3000.0))
    assert store.count_active(key_name="webui", user="ana") == 2
    assert store.count_active(key_name="webui") == 3 and store.count_active(user="ana") == 3
    assert store.count_active() == 4 and store.count_active(key_name="webui", user="nobody") == 0
    assert store.count_created_since(1000.0, key_name="webui", user="ana") == 5  # any status counts
    assert store.count_created_since(1500.0, key_name="webui") == 1
    assert store.count_created_since(1500.0) == 2
    assert store.count_queued() == 3


def test_fail_interrupted_marks_running_jobs_failed_and_ends_their_streams(make_store: StoreFactory) -> None:
    store = make_store()
    running = store.insert(_record(status="running", stage="mesh"))
    queued = store.insert(_record())
    assert store.fail_interrupted("backend restarted") == [running.id]
    failed = store.get(running.id)
    assert failed is not None and failed.status == "failed" and failed.finished_at is not None
    assert failed.error == {"code": "interrupted", "message": "backend restarted", "stage": "mesh"}
    assert store.get(queued.id).status == "queued"  # type: ignore[union-attr]
    (done,) = store.events_after(running.id, 0)
    assert done.type == "done" and done.record.status == "failed" and done.data["message"] == "backend restarted"
    assert store.events_after(queued.id, 0) == []


def test_survives_reopen(make_store: StoreFactory) -> None:
    store = make_store()
    record = store.insert(_record("ana"))
    event_id = store.append_event(record.id, "status", event_payload(record, at=1.0))
    store.close()
    reopened = make_store()
    assert reopened.get(record.id) == record
    assert [e.id for e in reopened.events_after(record.id, 0)] == [event_id]


def test_a_nul_character_matches_nothing_and_is_not_stored(make_store: StoreFactory) -> None:
    """PostgreSQL refuses NUL in text: a NUL in a looked-up id or owner matches nothing (404 at the API, as on
    SQLite), and a job that would store one is a clear InvalidRequest (422), never a database error (500)."""
    store = make_store()
    stored = store.insert(_record("ana", key_name="webui"))
    assert store.get(f"{stored.id}\x00") is None and store.events_after("a\x00", 0) == []
    assert store.list_jobs(key_name="webui", user="ana\x00") == [] and store.count_active(user="\x00") == 0
    assert store.count_created_since(0, key_name="web\x00ui") == 0 and store.last_event_id("\x00") == 0
    with pytest.raises(InvalidRequest, match="user: contains a NUL character"):
        store.insert(_record("ana\x00", key_name="webui"))
    assert len(store.list_jobs(key_name=None, user=None)) == 1
    in_json = store.insert(_record("ana", params={"request": "a\x00b"}))  # JSON escapes it: stored as given
    assert store.get(in_json.id) == in_json


def test_sqlite_uses_wal(tmp_path: Path) -> None:
    JobStore(tmp_path).close()
    with sqlite3.connect(tmp_path / "jobs.sqlite3") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_reads_a_database_written_by_the_sqlite3_store(tmp_path: Path) -> None:
    """Existing data files keep working: a row as the earlier raw-sqlite3 store wrote it (JSON as TEXT, NULLs)."""
    with sqlite3.connect(tmp_path / "jobs.sqlite3") as db:
        db.executescript(LEGACY_SCHEMA)
        db.execute(
            "INSERT INTO jobs (id, status, created_at, user, params, artifacts, warnings, error, prompt) "
            "VALUES ('old1', 'succeeded', 10.0, 'ana', '{\"seed\": 3}', '[\"base.png\"]', '[]', NULL, 'null')"
        )
    store = JobStore(tmp_path)
    old = store.get("old1")
    assert old is not None and old.seq == 1 and old.params == {"seed": 3} and old.artifacts == ["base.png"]
    assert old.error is None and old.prompt is None and old.manifest is None
    new = store.insert(_record("bo"))
    assert new.seq == 2 and store.append_event(new.id, "status", event_payload(new, at=1.0)) == 1
    store.close()


def test_finished_before_and_delete_with_its_events(make_store: StoreFactory) -> None:
    store = make_store()
    old = store.insert(_record(status="succeeded", finished_at=100.0))
    kept = store.insert(_record(status="failed", finished_at=500.0))
    store.insert(_record(status="queued"))
    store.append_event(old.id, "done", event_payload(old, at=100.0))
    store.append_event(kept.id, "done", event_payload(kept, at=500.0))
    assert store.finished_before(200.0) == [old.id]
    store.delete(old.id)
    assert store.get(old.id) is None
    assert store.events_after(old.id, 0) == [] and len(store.events_after(kept.id, 0)) == 1


def test_event_log_ids_grow_and_page_per_job(make_store: StoreFactory) -> None:
    store = make_store()
    first, second = store.insert(_record()), store.insert(_record())
    ids = []
    for index in range(5):
        first.progress = index / 4
        ids.append(store.append_event(first.id, "progress", event_payload(first, message=f"tick {index}", at=index)))
        store.append_event(second.id, "status", event_payload(second, at=index))
    assert ids == sorted(ids) and len(set(ids)) == 5
    assert store.last_event_id(first.id) == ids[-1] and store.last_event_id("nothing") == 0
    page = store.events_after(first.id, ids[1], limit=2)
    assert [e.id for e in page] == ids[2:4]
    assert [e.data["message"] for e in page] == ["tick 2", "tick 3"] and page[1].record.progress == 0.75
    assert all(e.job_id == first.id and e.type == "progress" for e in page)


def test_admission_is_atomic_across_stores(make_store: StoreFactory) -> None:
    """Two stores (as two API nodes) admit concurrently: count then insert under ``admission()`` never lets both
    take the last place. Without the lock both would count 0 during the sleep and insert."""
    stores = [make_store(), make_store()]
    admitted: list[str] = []
    limit = 3

    def submit(store: JobStore) -> None:
        for _ in range(limit):
            with store.admission():
                if store.count_active(key_name="webui") >= limit:
                    continue
                time.sleep(0.02)  # widen the window between the count and the insert
                admitted.append(store.insert(_record("ana", key_name="webui")).id)

    threads = [threading.Thread(target=submit, args=(store,)) for store in stores for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(admitted) == limit and stores[0].count_active(key_name="webui") == limit


def test_postgres_down_is_service_unavailable_then_recovers(postgres_server: PostgresServer, tmp_path: Path) -> None:
    """Database briefly down: every call raises ServiceUnavailable (a 503 at the API); once it is back the same store
    works again (stale pooled connections are replaced, no restart)."""
    store = JobStore(tmp_path, postgres_server.create_database())
    record = store.insert(_record("ana"))
    postgres_server.stop()
    try:
        for call in (lambda: store.get(record.id), store.count_queued, lambda: store.events_after(record.id, 0)):
            with pytest.raises(ServiceUnavailable, match=r"job database \(postgresql\) is unreachable") as caught:
                call()
            assert caught.value.http_status == 503 and caught.value.retry_after_s > 0
            assert "127.0.0.1" not in caught.value.message  # hosts and ports go to the log, not to callers
    finally:
        postgres_server.start()
    assert store.get(record.id) == record
    store.close()


def test_postgres_watch_wakes_on_another_stores_append_and_survives_a_restart(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    """LISTEN/NOTIFY: a store watching a job is called when another store (another process) appends one of its
    events, not for other jobs, not after unwatch; the listener reconnects after the database restarts."""
    url = postgres_server.create_database()
    watcher, writer = JobStore(tmp_path, url), JobStore(tmp_path, url)
    record, other = writer.insert(_record()), writer.insert(_record())
    woken = threading.Event()
    calls: list[float] = []

    def wake() -> None:
        calls.append(time.monotonic())
        woken.set()

    def append_and_wait(job: JobRecord, timeout: float = 5.0) -> bool:
        woken.clear()
        writer.append_event(job.id, "progress", event_payload(job, at=time.time()))
        return woken.wait(timeout)

    unwatch = watcher.watch(record.id, wake)
    try:
        deadline = time.monotonic() + 10
        while not append_and_wait(record) and time.monotonic() < deadline:
            pass  # the listener thread is still connecting: LISTEN is not in place before it is
        started = time.monotonic()
        assert append_and_wait(record) and calls[-1] - started < 0.5
        assert not append_and_wait(other, timeout=1.0)
        postgres_server.stop()
        postgres_server.start()
        deadline = time.monotonic() + 15
        while not append_and_wait(record):
            assert time.monotonic() < deadline, "the listener did not come back after the restart"
    finally:
        unwatch()
        if not postgres_server.running:
            postgres_server.start()
    assert not append_and_wait(record, timeout=1.0)  # unwatched
    watcher.close()
    writer.close()


LEGACY_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    id             TEXT NOT NULL UNIQUE,
    status         TEXT NOT NULL,
    stage          TEXT,
    progress       REAL NOT NULL DEFAULT 0,
    stage_progress REAL NOT NULL DEFAULT 0,
    message        TEXT NOT NULL DEFAULT '',
    created_at     REAL NOT NULL,
    started_at     REAL,
    finished_at    REAL,
    user           TEXT,
    key_name       TEXT,
    parent         TEXT,
    seed           INTEGER,
    engine_3d      TEXT,
    params         TEXT NOT NULL DEFAULT '{}',
    prompt         TEXT,
    lora           TEXT,
    artifacts      TEXT NOT NULL DEFAULT '[]',
    warnings       TEXT NOT NULL DEFAULT '[]',
    error          TEXT,
    manifest       TEXT
);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs(status);
"""
