"""Look-up indexes of the language resources, built once into the cache folder (SQLite, stdlib).

Reading a dictionary's text index (the German one is 12 MB, 400 k lines) or inverting an English-to-X dictionary
costs seconds on every process start; a SQLite file answers the same look-up from disk with no load at all. Each
index is one file ``<cache>/lexicon/<name>.v<N>.sqlite`` whose ``meta`` table records the schema version and the
size and modification time of every source file: when a Debian package is updated (or the schema changes) the file
no longer matches and is rebuilt. A build writes a temporary file and renames it into place, so processes starting
together never read a half-built index (at worst both build it).

Without a cache folder (or when it is not writable) an index is built in memory for the process: slower to start,
the same answers.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["SCHEMA_VERSION", "Index", "IndexStore"]

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1  # raise when a table's layout or content changes: every index is rebuilt

Builder = Callable[[sqlite3.Connection], None]


class Index:
    """One built SQLite index, read-only, shared by the threads of a process."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection = connection
        self._lock = threading.Lock()

    def rows(self, sql: str, parameters: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._connection.execute(sql, parameters).fetchall()


class IndexStore:
    """Where the indexes live (``folder`` None: in memory only)."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder

    def open(self, name: str, sources: Sequence[Path], build: Builder, extra: str = "") -> Index:
        """The index ``name`` built from ``sources`` by ``build`` (built now when missing or out of date).

        ``extra`` is part of the fingerprint too (a library version whose data the index holds).
        """
        fingerprint = _fingerprint(sources, extra)
        if self.folder is None:
            return Index(_build_in_memory(name, build))
        path = self.folder / f"{name}.v{SCHEMA_VERSION}.sqlite"
        connection = _open_matching(path, fingerprint)
        if connection is None:
            try:
                _build_file(path, fingerprint, name, build)
            except OSError as exc:
                logger.warning("cannot write the look-up index %s (%s); building it in memory", path, exc)
                return Index(_build_in_memory(name, build))
            connection = _open_matching(path, fingerprint)
            if connection is None:
                raise RuntimeError(f"the look-up index {path} was built but does not match its sources")
        return Index(connection)


def _fingerprint(sources: Sequence[Path], extra: str) -> str:
    described = []
    for source in sources:
        stat = source.stat()
        described.append([str(source), stat.st_size, stat.st_mtime_ns])
    return json.dumps({"schema": SCHEMA_VERSION, "sources": described, "extra": extra}, sort_keys=True)


def _open_matching(path: Path, fingerprint: str) -> sqlite3.Connection | None:
    if not path.is_file():
        return None
    try:
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
        row = connection.execute("SELECT value FROM meta WHERE key = 'fingerprint'").fetchone()
    except sqlite3.DatabaseError as exc:  # a damaged or foreign file: rebuild it
        logger.warning("the look-up index %s is unreadable (%s); rebuilding it", path, exc)
        return None
    if row is None or row[0] != fingerprint:
        connection.close()
        return None
    return connection


def _build_file(path: Path, fingerprint: str, name: str, build: Builder) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    started = time.perf_counter()
    logger.info("building the look-up index %s once (later starts read it from disk)", path)
    try:
        connection = sqlite3.connect(temporary)
        try:
            _fill(connection, name, build)
            connection.execute("INSERT INTO meta VALUES ('fingerprint', ?)", (fingerprint,))
            connection.commit()
        finally:
            connection.close()
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    logger.info("built %s in %.1f s", path.name, time.perf_counter() - started)


def _build_in_memory(name: str, build: Builder) -> sqlite3.Connection:
    connection = sqlite3.connect(":memory:", check_same_thread=False)
    _fill(connection, name, build)
    connection.commit()
    return connection


def _fill(connection: sqlite3.Connection, name: str, build: Builder) -> None:
    connection.execute("PRAGMA journal_mode = OFF")
    connection.execute("PRAGMA synchronous = OFF")
    connection.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
    connection.execute("INSERT INTO meta VALUES ('name', ?)", (name,))
    build(connection)
