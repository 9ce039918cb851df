"""Jobs in SQLite (the embedded default): one ``jobs`` table, structured fields as JSON columns, WAL journal.

The store is the source of truth across restarts; the worker keeps a job's live state in memory and writes it
here on every status/stage change, artifact and (throttled) progress tick. Artifacts themselves live on disk
under ``<data_dir>/jobs/<id>/`` — see ``job_dir``.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

__all__ = ["ACTIVE", "TERMINAL", "JobRecord", "JobStore", "new_job_id"]

ACTIVE = ("queued", "running")
TERMINAL = ("succeeded", "failed", "cancelled")
_JSON_FIELDS = ("params", "prompt", "lora", "artifacts", "warnings", "error", "manifest")

_SCHEMA = """
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
CREATE INDEX IF NOT EXISTS jobs_user ON jobs(user);
CREATE INDEX IF NOT EXISTS jobs_owner ON jobs(key_name, user, status);
CREATE INDEX IF NOT EXISTS jobs_owner_created ON jobs(key_name, user, created_at);
"""


def new_job_id() -> str:
    return uuid.uuid4().hex


@dataclass
class JobRecord:
    """One job as stored. Times are Unix seconds; ``artifacts`` are paths relative to the job folder."""

    id: str
    status: str = "queued"
    stage: str | None = None
    progress: float = 0.0
    stage_progress: float = 0.0
    message: str = ""
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    user: str | None = None
    key_name: str | None = None
    parent: str | None = None
    seed: int | None = None
    engine_3d: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    prompt: dict[str, Any] | None = None
    lora: dict[str, Any] | None = None
    artifacts: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    error: dict[str, Any] | None = None
    manifest: dict[str, Any] | None = None
    seq: int | None = None

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL


_COLUMNS = [f.name for f in fields(JobRecord) if f.name != "seq"]


class JobStore:
    """Thread-safe access to the jobs table (one connection, one lock: every statement is short)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        (data_dir / "jobs").mkdir(exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(data_dir / "jobs.sqlite3", check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def job_dir(self, job_id: str) -> Path:
        return self.data_dir / "jobs" / job_id

    # --- writes ---

    def insert(self, record: JobRecord) -> JobRecord:
        values = _to_row(record)
        placeholders = ", ".join("?" for _ in _COLUMNS)
        with self._locked() as db:
            cursor = db.execute(f"INSERT INTO jobs ({', '.join(_COLUMNS)}) VALUES ({placeholders})", values)  # noqa: S608
            record.seq = cursor.lastrowid
        return record

    def save(self, record: JobRecord) -> None:
        assignments = ", ".join(f"{name} = ?" for name in _COLUMNS)
        with self._locked() as db:
            db.execute(f"UPDATE jobs SET {assignments} WHERE id = ?", [*_to_row(record), record.id])  # noqa: S608

    def delete(self, job_id: str) -> None:
        with self._locked() as db:
            db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))

    def fail_interrupted(self, reason: str) -> list[str]:
        """Jobs left ``running`` by a process that died: mark them failed, naming the stage they were in."""
        interrupted = self._select("status = 'running'", ())
        for record in interrupted:
            record.status = "failed"
            record.finished_at = time.time()
            record.message = reason
            record.error = {"code": "interrupted", "message": reason, "stage": record.stage}
            self.save(record)
        return [r.id for r in interrupted]

    # --- reads ---

    def get(self, job_id: str) -> JobRecord | None:
        found = self._select("id = ?", (job_id,))
        return found[0] if found else None

    def queued(self) -> list[JobRecord]:
        """Queued jobs, oldest first (FIFO)."""
        return self._select("status = 'queued'", (), order="seq ASC")

    # Owner queries: ``key_name`` / ``user`` None = any (an admin's view); a string = exactly that one.

    def list_jobs(
        self, *, key_name: str | None, user: str | None, status: str | None = None, limit: int = 50
    ) -> list[JobRecord]:
        """Newest first: one owner's jobs (or any key's / any user's where None), optionally of one status."""
        where, params = _owner_where(key_name, user)
        if status is not None:
            where.append("status = ?")
            params.append(status)
        return self._select(" AND ".join(where), tuple(params), order="seq DESC", limit=limit)

    def count_active(self, *, key_name: str | None = None, user: str | None = None) -> int:
        """Queued + running jobs of that key / end user."""
        where, params = _owner_where(key_name, user)
        return self._count([*where, "status IN ('queued', 'running')"], params)

    def count_created_since(self, since: float, *, key_name: str | None = None, user: str | None = None) -> int:
        """Jobs of that key / end user created at or after ``since`` (any status: a cancelled job still counts)."""
        where, params = _owner_where(key_name, user)
        return self._count([*where, "created_at >= ?"], [*params, since])

    def count_queued(self) -> int:
        """Queued jobs of everyone (the length of the whole queue)."""
        return self._count(["status = 'queued'"], [])

    def finished_before(self, cutoff: float) -> list[str]:
        with self._locked() as db:
            rows = db.execute(
                "SELECT id FROM jobs WHERE status IN ('succeeded', 'failed', 'cancelled') AND finished_at < ?",
                (cutoff,),
            ).fetchall()
        return [row[0] for row in rows]

    def _select(self, where: str, params: tuple[Any, ...], order: str = "seq ASC", limit: int = -1) -> list[JobRecord]:
        sql = f"SELECT seq, {', '.join(_COLUMNS)} FROM jobs WHERE {where} ORDER BY {order} LIMIT ?"  # noqa: S608
        with self._locked() as db:
            rows = db.execute(sql, (*params, limit)).fetchall()
        return [_from_row(row) for row in rows]

    def _count(self, where: list[str], params: list[Any]) -> int:
        with self._locked() as db:
            row = db.execute(f"SELECT COUNT(*) FROM jobs WHERE {' AND '.join(where)}", params)  # noqa: S608
            return int(row.fetchone()[0])

    @contextmanager
    def _locked(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            yield self._db


def _owner_where(key_name: str | None, user: str | None) -> tuple[list[str], list[Any]]:
    where: list[str] = ["1 = 1"]
    params: list[Any] = []
    for column, value in (("key_name", key_name), ("user", user)):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    return where, params


def _to_row(record: JobRecord) -> list[Any]:
    data = asdict(record)
    return [json.dumps(data[name]) if name in _JSON_FIELDS else data[name] for name in _COLUMNS]


def _from_row(row: sqlite3.Row) -> JobRecord:
    data = {name: row[name] for name in _COLUMNS}
    for name in _JSON_FIELDS:
        data[name] = json.loads(data[name]) if data[name] is not None else None
    data["artifacts"] = data["artifacts"] or []
    data["warnings"] = data["warnings"] or []
    data["params"] = data["params"] or {}
    return JobRecord(seq=row["seq"], **data)
