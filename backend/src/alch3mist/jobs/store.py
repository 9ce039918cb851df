"""Jobs and their event log in one SQL database, through SQLAlchemy Core: SQLite by default, PostgreSQL when shared.

* **Embedded** (``ALCH3MIST_DATABASE_URL`` unset): ``<data_dir>/jobs.sqlite3``, WAL journal — the file earlier
  versions wrote keeps working (same ``jobs`` table and columns; the new ``job_events`` table is added beside it).
* **Shared** (``ALCH3MIST_DATABASE_URL=postgresql+psycopg://user:pass@host/db``): every API node and worker reads
  and writes the same rows; connections are checked before use (``pool_pre_ping``), so a database that was
  restarted is used again without restarting us. While it is unreachable every call raises ``ServiceUnavailable``.

Tables are created at start (``metadata.create_all``); schema migrations are out of scope (docs/deploy.md).

The store is the source of truth across restarts; the worker keeps a job's live state in memory and writes it
here on every status/stage change, artifact and (throttled) progress tick, and appends each update it publishes to
``job_events`` (``append_event``), which the API's event stream reads by id (``events_after``) — also on API nodes
that did not run the job. Artifacts live under ``<data_dir>/jobs/<id>/`` — see ``job_dir``.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from ..errors import InvalidRequest, ServiceUnavailable

__all__ = [
    "ACTIVE",
    "TERMINAL",
    "Claim",
    "JobClaims",
    "JobRecord",
    "JobStore",
    "StoredEvent",
    "event_payload",
    "new_job_id",
]

logger = logging.getLogger(__name__)

ACTIVE = ("queued", "running")
TERMINAL = ("succeeded", "failed", "cancelled")
RETRY_AFTER_S = 5  # what a 503 tells the caller while the database is unreachable
CONNECT_TIMEOUT_S = 5
NOTIFY_WAIT_S = 1.0  # how often the listener thread looks up from waiting (to stop)
ADMISSION_LOCK_KEY = 0x616C6368  # pg_advisory_xact_lock key of queue admission ("alch")
EVENTS_CHANNEL = "alch3mist_job_events"  # NOTIFY channel; the payload is the job id

metadata = sa.MetaData()
_Json = sa.JSON(none_as_null=True)  # None stays SQL NULL (as earlier versions stored it), not the JSON text 'null'

jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("id", sa.String, nullable=False, unique=True),
    sa.Column("status", sa.String, nullable=False),
    sa.Column("stage", sa.String),
    sa.Column("progress", sa.Float, nullable=False, server_default="0"),
    sa.Column("stage_progress", sa.Float, nullable=False, server_default="0"),
    sa.Column("message", sa.String, nullable=False, server_default=""),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("started_at", sa.Float),
    sa.Column("finished_at", sa.Float),
    sa.Column("user", sa.String),
    sa.Column("key_name", sa.String),
    sa.Column("parent", sa.String),
    sa.Column("seed", sa.BigInteger().with_variant(sa.Integer, "sqlite")),
    sa.Column("engine_3d", sa.String),
    sa.Column("params", _Json, nullable=False),
    sa.Column("prompt", _Json),
    sa.Column("lora", _Json),
    sa.Column("artifacts", _Json, nullable=False),
    sa.Column("warnings", _Json, nullable=False),
    sa.Column("error", _Json),
    sa.Column("manifest", _Json),
    sa.Index("jobs_status", "status"),
    sa.Index("jobs_user", "user"),
    sa.Index("jobs_owner", "key_name", "user", "status"),
    sa.Index("jobs_owner_created", "key_name", "user", "created_at"),
    sqlite_autoincrement=True,
)

job_events = sa.Table(
    "job_events",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("job_id", sa.String, nullable=False),
    sa.Column("type", sa.String, nullable=False),
    sa.Column("data", _Json, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Index("job_events_job", "job_id", "id"),
    sqlite_autoincrement=True,
)


# Cluster mode (jobs/cluster_worker.py): which worker holds a running job, how many times it was started, and whether
# an API node asked it to stop. A table of its own, so job databases of earlier versions gain it at start.
job_runs = sa.Table(
    "job_runs",
    metadata,
    sa.Column("job_id", sa.String, primary_key=True),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("worker", sa.String, nullable=False),
    sa.Column("claimed_at", sa.Float, nullable=False),
    sa.Column("heartbeat_at", sa.Float, nullable=False),  # the worker running it says it is alive (every few s)
    sa.Column("cancel_requested", sa.Boolean, nullable=False, server_default=sa.false()),
)


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
_TEXT_COLUMNS = ("id", "status", "stage", "message", "user", "key_name", "parent", "engine_3d")


@dataclass(frozen=True)
class StoredEvent:
    """One row of the event log: ``id`` grows with every append (the SSE ``id:``); ``data`` is ``event_payload``'s."""

    id: int
    job_id: str
    type: str
    data: dict[str, Any]
    created_at: float

    @property
    def record(self) -> JobRecord:
        """The job as it was when the event happened."""
        return _record_from(self.data["job"])


def event_payload(
    record: JobRecord, *, queue_position: int | None = None, artifact: str | None = None, message: str = "", at: float
) -> dict[str, Any]:
    """What the log keeps of an update: the job's snapshot and the update's own fields."""
    job = asdict(record)
    job.pop("seq", None)
    return {"job": job, "queue_position": queue_position, "artifact": artifact, "message": message, "at": at}


@dataclass(frozen=True)
class Claim:
    """What a worker's claim on a job found: the job to run now (``running``, attempt ``attempt``), or nothing to run
    (``record`` None): gone, finished, or — ``gave_up`` — lost too often, now failed (its ``done`` is still to log)."""

    record: JobRecord | None
    attempt: int = 0
    gave_up: JobRecord | None = None
    busy: bool = False  # running, and its worker's heartbeat is fresh: not lost (yet) — ask again later


@dataclass(frozen=True)
class JobClaims:
    attempts: int
    worker: str
    cancel_requested: bool
    heartbeat_at: float


class JobStore:
    """Thread-safe access to the jobs table and the event log (a connection pool; every statement is short)."""

    def __init__(self, data_dir: Path, database_url: str | None = None) -> None:
        self.data_dir = data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        (data_dir / "jobs").mkdir(exist_ok=True)
        self._engine = _create_engine(database_url or f"sqlite:///{data_dir / 'jobs.sqlite3'}")
        self.shared = self._engine.dialect.name != "sqlite"
        # SQLite: one writer at a time anyway; serializing here avoids "database is locked" between our threads.
        self._serial = threading.RLock() if not self.shared else None
        self._admission = _admission_lock(str(self._engine.url))
        self._closed = False
        self._notifier: _Notifier | None = None
        self._notifier_lock = threading.Lock()
        with self._unavailable_as_error():
            metadata.create_all(self._engine)

    @property
    def backend(self) -> str:
        """``sqlite`` or ``postgresql`` (never the URL: it may hold a password)."""
        return str(self._engine.dialect.name)

    def close(self) -> None:
        """Close every connection; the store cannot be used after this."""
        self._closed = True
        if self._notifier is not None:
            self._notifier.close()
        self._engine.dispose()

    def job_dir(self, job_id: str) -> Path:
        return self.data_dir / "jobs" / job_id

    # --- writes ---

    def insert(self, record: JobRecord) -> JobRecord:
        _check_storable(record)
        with self._begin() as db:
            result = db.execute(jobs.insert().values(_to_row(record)))
            record.seq = _new_id(result)
        return record

    def save(self, record: JobRecord) -> None:
        _check_storable(record)
        with self._begin() as db:
            db.execute(jobs.update().where(jobs.c.id == record.id).values(_to_row(record)))

    def delete(self, job_id: str) -> None:
        """The job's row and its whole event log."""
        with self._begin() as db:
            db.execute(job_events.delete().where(job_events.c.job_id == job_id))
            db.execute(job_runs.delete().where(job_runs.c.job_id == job_id))
            db.execute(jobs.delete().where(jobs.c.id == job_id))

    def fail_interrupted(self, reason: str) -> list[str]:
        """Jobs left ``running`` by a process that died: mark them failed, naming the stage they were in (and end
        their event streams with ``done``)."""
        interrupted = self._select(jobs.c.status == "running")
        for record in interrupted:
            record.status = "failed"
            record.finished_at = time.time()
            record.message = reason
            record.error = {"code": "interrupted", "message": reason, "stage": record.stage}
            self.save(record)
            self.append_event(record.id, "done", event_payload(record, message=reason, at=record.finished_at))
        return [r.id for r in interrupted]

    # --- cluster mode: claims and cancel requests ---

    def claim(self, job_id: str, worker: str, max_attempts: int, lost_reason: str, lost_after_s: float) -> Claim:
        """Atomically take a job to run: a ``queued`` one, or a ``running`` one whose worker was lost (its message came
        back, and no heartbeat for ``lost_after_s``) while it has run fewer than ``max_attempts`` times — started again
        from scratch. A job lost that often ends ``failed`` (``worker_died``, ``lost_reason``). A running job with a
        fresh heartbeat is ``busy``. Conditional updates: of two workers, one wins."""
        record = self.get(job_id)
        if record is None or record.status not in ACTIVE:
            return Claim(None)
        claims = self.claims(job_id)
        attempts = claims.attempts if claims else 0
        now = time.time()
        if record.status == "running" and claims is not None and now - claims.heartbeat_at < lost_after_s:
            return Claim(None, busy=True)
        if record.status == "running" and attempts >= max_attempts:
            return self._give_up(record, attempts, lost_reason)
        retry = record.status == "running"
        record.status, record.started_at, record.finished_at = "running", now, None
        record.message = f"retrying (attempt {attempts + 1} of {max_attempts}): {lost_reason}" if retry else "starting"
        if retry:  # from scratch: the same parameters (and seed) give the same files again
            record.stage, record.progress, record.stage_progress, record.artifacts = None, 0.0, 0.0, []
        with self._begin() as db:
            if retry:
                taken = db.execute(
                    job_runs.update()
                    .where(job_runs.c.job_id == job_id, job_runs.c.attempts == attempts)
                    .values(attempts=attempts + 1, worker=worker, claimed_at=now, heartbeat_at=now)
                ).rowcount
            else:
                taken = db.execute(
                    jobs.update().where(jobs.c.id == job_id, jobs.c.status == "queued").values(status="running")
                ).rowcount
                if taken:
                    db.execute(job_runs.delete().where(job_runs.c.job_id == job_id))
                    db.execute(
                        job_runs.insert().values(
                            job_id=job_id, attempts=1, worker=worker, claimed_at=now, heartbeat_at=now
                        )
                    )
            if not taken:  # another worker was first
                return Claim(None)
            db.execute(jobs.update().where(jobs.c.id == job_id).values(_to_row(record)))
        return Claim(record, attempts + 1)

    def _give_up(self, record: JobRecord, attempts: int, lost_reason: str) -> Claim:
        message = f"{lost_reason}; it ran {attempts} times, the limit"
        record.status, record.finished_at, record.message = "failed", time.time(), message
        record.error = {"code": "worker_died", "stage": record.stage, "message": message}
        with self._begin() as db:
            done = db.execute(
                jobs.update().where(jobs.c.id == record.id, jobs.c.status == "running").values(_to_row(record))
            ).rowcount
        return Claim(None, gave_up=record if done else None)

    def claims(self, job_id: str) -> JobClaims | None:
        """Who holds the job and how many times it was started (cluster mode); None before its first claim."""
        if _unmatchable(job_id):
            return None
        with self._begin() as db:
            row = db.execute(sa.select(job_runs).where(job_runs.c.job_id == job_id)).mappings().first()
        if row is None:
            return None
        return JobClaims(
            int(row["attempts"]), str(row["worker"]), bool(row["cancel_requested"]), float(row["heartbeat_at"])
        )

    def heartbeat(self, job_id: str) -> None:
        """The worker running the job is alive (``claim`` tells a lost worker from a busy one by it)."""
        with self._begin() as db:
            db.execute(job_runs.update().where(job_runs.c.job_id == job_id).values(heartbeat_at=time.time()))

    def cancel_queued(self, job_id: str, message: str) -> JobRecord | None:
        """Cancel the job if it is still ``queued`` (atomically: a worker's claim and this never both win); the
        cancelled record, or None when it was not queued."""
        if _unmatchable(job_id):
            return None
        error = {"code": "cancelled", "stage": None, "message": message}
        values = {"status": "cancelled", "finished_at": time.time(), "message": message, "error": error}
        with self._begin() as db:
            queued = jobs.update().where(jobs.c.id == job_id, jobs.c.status == "queued")
            done = db.execute(queued.values(values)).rowcount
        return self.get(job_id) if done else None

    def request_cancel(self, job_id: str) -> bool:
        """Ask the worker running the job to stop it (it polls ``claims``); False when no worker holds it."""
        if _unmatchable(job_id):
            return False
        with self._begin() as db:
            result = db.execute(job_runs.update().where(job_runs.c.job_id == job_id).values(cancel_requested=True))
            return bool(result.rowcount)

    def queue_position(self, record: JobRecord) -> int | None:
        """1 = next: queued jobs created before this one (FIFO) + 1; None unless it is queued."""
        if record.status != "queued" or record.seq is None:
            return None
        return self._count(jobs.c.status == "queued", jobs.c.seq < record.seq) + 1

    @contextmanager
    def admission(self) -> Iterator[None]:
        """Hold while counting a caller's jobs and inserting the new one, so two requests never both take the last
        place in a quota. In one process a lock per database does it (SQLite: one process); on a shared database
        (several API nodes) a transaction-scoped advisory lock is held too. Inserts inside commit at once (READ
        COMMITTED), so the next holder's counts — taken after it gets the lock — include them."""
        with self._admission:
            if not self.shared:
                yield
                return
            with self._unavailable_as_error(), self._engine.begin() as db:
                db.execute(sa.select(sa.func.pg_advisory_xact_lock(ADMISSION_LOCK_KEY)))
                yield  # commit (end of the block) releases the advisory lock

    # --- the event log ---

    def append_event(self, job_id: str, type: str, data: dict[str, Any]) -> int:
        """Append one event of ``job_id``; returns its id (larger than every earlier one)."""
        with self._begin() as db:
            result = db.execute(job_events.insert().values(job_id=job_id, type=type, data=data, created_at=time.time()))
            if self.shared:  # delivered at commit, to every process LISTENing (``watch``)
                db.execute(sa.select(sa.func.pg_notify(EVENTS_CHANNEL, job_id)))
            return _new_id(result)

    def watch(self, job_id: str, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` (from another thread) soon after any process appends an event of ``job_id``; returns
        the function that stops it. PostgreSQL only (LISTEN/NOTIFY, one listening connection per store, reconnected
        after an outage); on SQLite it never calls — one process, whose worker wakes its streams itself. A wake-up
        may be missed while the database is down: readers poll the log as well."""
        if not self.shared:
            return _nothing
        with self._notifier_lock:
            if self._notifier is None:
                self._notifier = _Notifier(self._engine.url)
        return self._notifier.watch(job_id, callback)

    def events_after(self, job_id: str, after_id: int, limit: int = 100) -> list[StoredEvent]:
        """The job's events with an id above ``after_id``, oldest first."""
        if _unmatchable(job_id):
            return []
        query = (
            sa.select(job_events)
            .where(job_events.c.job_id == job_id, job_events.c.id > after_id)
            .order_by(job_events.c.id)
            .limit(limit)
        )
        with self._begin() as db:
            rows = db.execute(query).mappings().all()
        return [StoredEvent(**row) for row in rows]

    def last_event_id(self, job_id: str) -> int:
        """The id of the job's latest event (0 when it has none)."""
        if _unmatchable(job_id):
            return 0
        query = sa.select(sa.func.max(job_events.c.id)).where(job_events.c.job_id == job_id)
        with self._begin() as db:
            return int(db.execute(query).scalar_one() or 0)

    # --- reads ---

    def get(self, job_id: str) -> JobRecord | None:
        if _unmatchable(job_id):
            return None
        found = self._select(jobs.c.id == job_id)
        return found[0] if found else None

    def queued(self) -> list[JobRecord]:
        """Queued jobs, oldest first (FIFO)."""
        return self._select(jobs.c.status == "queued")

    # Owner queries: ``key_name`` / ``user`` None = any (an admin's view); a string = exactly that one.

    def list_jobs(
        self, *, key_name: str | None, user: str | None, status: str | None = None, limit: int = 50
    ) -> list[JobRecord]:
        """Newest first: one owner's jobs (or any key's / any user's where None), optionally of one status."""
        if _unmatchable(key_name, user, status):
            return []
        where = _owner_where(key_name, user)
        if status is not None:
            where.append(jobs.c.status == status)
        return self._select(*where, newest_first=True, limit=limit)

    def count_active(self, *, key_name: str | None = None, user: str | None = None) -> int:
        """Queued + running jobs of that key / end user."""
        if _unmatchable(key_name, user):
            return 0
        return self._count(*_owner_where(key_name, user), jobs.c.status.in_(ACTIVE))

    def count_created_since(self, since: float, *, key_name: str | None = None, user: str | None = None) -> int:
        """Jobs of that key / end user created at or after ``since`` (any status: a cancelled job still counts)."""
        if _unmatchable(key_name, user):
            return 0
        return self._count(*_owner_where(key_name, user), jobs.c.created_at >= since)

    def oldest_created_since(
        self, since: float, *, key_name: str | None = None, user: str | None = None
    ) -> float | None:
        """Creation time of the oldest job of that key / end user created at or after ``since`` (None: none)."""
        if _unmatchable(key_name, user):
            return None
        query = sa.select(sa.func.min(jobs.c.created_at)).where(
            *_owner_where(key_name, user), jobs.c.created_at >= since
        )
        with self._begin() as db:
            oldest = db.execute(query).scalar_one()
        return None if oldest is None else float(oldest)

    def count_queued(self) -> int:
        """Queued jobs of everyone (the length of the whole queue)."""
        return self._count(jobs.c.status == "queued")

    def finished_before(self, cutoff: float) -> list[str]:
        query = sa.select(jobs.c.id).where(jobs.c.status.in_(TERMINAL), jobs.c.finished_at < cutoff)
        with self._begin() as db:
            return [str(job_id) for job_id in db.execute(query).scalars()]

    def _select(self, *where: Any, newest_first: bool = False, limit: int | None = None) -> list[JobRecord]:
        query = sa.select(jobs).where(*where).order_by(jobs.c.seq.desc() if newest_first else jobs.c.seq)
        if limit is not None:
            query = query.limit(limit)
        with self._begin() as db:
            rows = db.execute(query).mappings().all()
        return [_record_from(row) for row in rows]

    def _count(self, *where: Any) -> int:
        with self._begin() as db:
            return int(db.execute(sa.select(sa.func.count()).select_from(jobs).where(*where)).scalar_one())

    @contextmanager
    def _begin(self) -> Iterator[Connection]:
        """One short transaction (committed on leaving, rolled back on an error)."""
        if self._closed:
            raise RuntimeError("the job store is closed")
        with self._serialized(), self._unavailable_as_error(), self._engine.begin() as db:
            yield db

    @contextmanager
    def _serialized(self) -> Iterator[None]:
        if self._serial is None:
            yield
            return
        with self._serial:
            yield

    @contextmanager
    def _unavailable_as_error(self) -> Iterator[None]:
        """A database that cannot be reached (down, restarting, pool exhausted) → ``ServiceUnavailable``."""
        try:
            yield
        except (OperationalError, InterfaceError, PoolTimeout) as exc:
            raise _unavailable(self.backend, exc) from exc
        except DBAPIError as exc:
            if exc.connection_invalidated:
                raise _unavailable(self.backend, exc) from exc
            raise


class _Notifier:
    """One thread LISTENing on ``EVENTS_CHANNEL`` over its own connection; calls the watchers of the notified job."""

    def __init__(self, url: sa.URL) -> None:
        self._conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._watchers: dict[str, set[Callable[[], None]]] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._listen, name="alch3mist-event-listener", daemon=True)
        self._thread.start()

    def watch(self, job_id: str, callback: Callable[[], None]) -> Callable[[], None]:
        with self._lock:
            self._watchers.setdefault(job_id, set()).add(callback)

        def unwatch() -> None:
            with self._lock:
                watchers = self._watchers.get(job_id, set())
                watchers.discard(callback)
                if not watchers:
                    self._watchers.pop(job_id, None)

        return unwatch

    def close(self) -> None:
        self._stopping.set()
        self._thread.join(NOTIFY_WAIT_S + 1)

    def _listen(self) -> None:
        import psycopg  # the driver: only a shared database needs it loaded

        while not self._stopping.is_set():
            try:
                with psycopg.connect(self._conninfo, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S) as db:
                    db.execute(f"LISTEN {EVENTS_CHANNEL}")
                    while not self._stopping.is_set():
                        for notify in db.notifies(timeout=NOTIFY_WAIT_S):
                            self._dispatch(notify.payload)
            except psycopg.Error as exc:  # down or restarting: readers poll meanwhile; listen again when it is back
                logger.info("event listener disconnected; reconnecting", extra={"cause": type(exc).__name__})
                self._stopping.wait(NOTIFY_WAIT_S)

    def _dispatch(self, job_id: str) -> None:
        with self._lock:
            callbacks = list(self._watchers.get(job_id, ()))
        for callback in callbacks:
            callback()


def _nothing() -> None:
    return None


_ADMISSION_LOCKS: dict[str, threading.Lock] = {}
_ADMISSION_LOCKS_GUARD = threading.Lock()


def _admission_lock(url: str) -> threading.Lock:
    """One lock per database in this process (stores opened twice on one SQLite file share it)."""
    with _ADMISSION_LOCKS_GUARD:
        return _ADMISSION_LOCKS.setdefault(url, threading.Lock())


def _unavailable(backend: str, exc: Exception) -> ServiceUnavailable:
    cause = str(getattr(exc, "orig", None) or exc).strip()
    # the cause names hosts and ports: for the operator's log, not for the caller
    logger.warning(
        "job database unreachable", extra={"backend": backend, "cause": cause.splitlines()[0] if cause else ""}
    )
    return ServiceUnavailable(
        f"the job database ({backend}) is unreachable or restarting; retry in a few seconds",
        retry_after_s=RETRY_AFTER_S,
    )


def _new_id(result: sa.CursorResult[Any]) -> int:
    key = result.inserted_primary_key
    if key is None:  # pragma: no cover - every insert here has an autoincrement key
        raise RuntimeError("the database returned no id for the inserted row")
    return int(key[0])


def _create_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = sa.create_engine(parsed, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return sa.create_engine(
        parsed,
        pool_pre_ping=True,  # a connection from before a database restart is replaced, not used and failed
        pool_size=10,
        max_overflow=20,
        pool_timeout=CONNECT_TIMEOUT_S,
        connect_args={"connect_timeout": CONNECT_TIMEOUT_S},
    )


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _unmatchable(*values: str | None) -> bool:
    """A NUL character: no stored text has one (PostgreSQL refuses it in text), so nothing matches — not an error."""
    return any(value is not None and "\x00" in value for value in values)


def _check_storable(record: JobRecord) -> None:
    for name in _TEXT_COLUMNS:
        value = getattr(record, name)
        if isinstance(value, str) and "\x00" in value:
            raise InvalidRequest(f"{name}: contains a NUL character (\\x00), which cannot be stored")


def _owner_where(key_name: str | None, user: str | None) -> list[Any]:
    where: list[Any] = []
    if key_name is not None:
        where.append(jobs.c.key_name == key_name)
    if user is not None:
        where.append(jobs.c.user == user)
    return where


def _to_row(record: JobRecord) -> dict[str, Any]:
    data = asdict(record)
    return {name: data[name] for name in _COLUMNS}


def _record_from(row: Any) -> JobRecord:
    data = {name: row[name] for name in _COLUMNS if name in row}
    data["params"] = data.get("params") or {}
    data["artifacts"] = data.get("artifacts") or []
    data["warnings"] = data.get("warnings") or []
    return JobRecord(seq=row.get("seq"), **data)
