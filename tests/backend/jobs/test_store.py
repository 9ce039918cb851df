"""The SQLite job store: round trips, FIFO order, per-user counts, restart recovery, WAL on disk."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from alch3mist.jobs.store import JobRecord, JobStore, new_job_id


def _record(user: str | None = None, **fields: object) -> JobRecord:
    return JobRecord(id=new_job_id(), user=user, **fields)  # type: ignore[arg-type]


def test_insert_get_round_trips_every_field(tmp_path: Path) -> None:
    store = JobStore(tmp_path)
    record = _record(
        user="ana",
        key_name="webui",
        params={"request": "a cow", "lora": {"name": "x", "scale": 0.5}},
        artifacts=["base.png", "views/view_00.png"],
        warnings=["preview engine"],
        error={"code": "stage_failed", "stage": "mesh", "message": "boom"},
        manifest={"seed": 7},
        seed=7,
    )
    store.insert(record)
    loaded = store.get(record.id)
    assert loaded is not None
    assert loaded == record
    assert loaded.seq is not None and loaded.seq >= 1


def test_queued_is_fifo_and_save_updates(tmp_path: Path) -> None:
    store = JobStore(tmp_path)
    records = [store.insert(_record()) for _ in range(5)]
    records[1].status = "running"
    store.save(records[1])
    assert [r.id for r in store.queued()] == [records[i].id for i in (0, 2, 3, 4)]


def test_list_filters_by_owner_and_status_newest_first(tmp_path: Path) -> None:
    store = JobStore(tmp_path)
    first, second = store.insert(_record("ana", key_name="webui")), store.insert(_record("ana", key_name="webui"))
    other, keyed = store.insert(_record("bo", key_name="webui")), store.insert(_record("ana", key_name="tool"))
    alone = store.insert(_record("", key_name="webui"))  # the key's own job (no end user)
    assert [r.id for r in store.list_jobs(key_name="webui", user="ana")] == [second.id, first.id]
    assert [r.id for r in store.list_jobs(key_name="webui", user="bo", status="queued")] == [other.id]
    assert [r.id for r in store.list_jobs(key_name="webui", user="")] == [alone.id]  # not a wildcard
    assert [r.id for r in store.list_jobs(key_name=None, user="ana")] == [keyed.id, second.id, first.id]
    assert store.list_jobs(key_name=None, user=None, status="succeeded") == []
    assert len(store.list_jobs(key_name=None, user=None, limit=2)) == 2


def test_counts_by_owner(tmp_path: Path) -> None:
    store = JobStore(tmp_path)
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


def test_fail_interrupted_marks_running_jobs_failed_with_stage(tmp_path: Path) -> None:
    store = JobStore(tmp_path)
    running = store.insert(_record(status="running", stage="mesh"))
    queued = store.insert(_record())
    assert store.fail_interrupted("backend restarted") == [running.id]
    failed = store.get(running.id)
    assert failed is not None and failed.status == "failed" and failed.finished_at is not None
    assert failed.error == {"code": "interrupted", "message": "backend restarted", "stage": "mesh"}
    assert store.get(queued.id).status == "queued"  # type: ignore[union-attr]


def test_survives_reopen_and_uses_wal(tmp_path: Path) -> None:
    store = JobStore(tmp_path)
    record = store.insert(_record("ana"))
    store.close()
    reopened = JobStore(tmp_path)
    assert reopened.get(record.id) == record
    with sqlite3.connect(tmp_path / "jobs.sqlite3") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_finished_before_and_delete(tmp_path: Path) -> None:
    store = JobStore(tmp_path)
    old = store.insert(_record(status="succeeded", finished_at=100.0))
    store.insert(_record(status="failed", finished_at=500.0))
    store.insert(_record(status="queued"))
    assert store.finished_before(200.0) == [old.id]
    store.delete(old.id)
    assert store.get(old.id) is None
