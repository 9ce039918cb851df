"""A real PostgreSQL server for the tests: Debian's ``postgresql`` package (scripts/install-system-deps.sh), its own
cluster made by ``initdb`` in a temp dir and run by ``pg_ctl`` on a free loopback port.

``initdb`` refuses to run as root, so as root both run as the unprivileged ``postgres`` user (``runuser``), which
then owns the temp dir. Trust authentication on 127.0.0.1 only; fsync off (a test cluster, thrown away after).
``stop()`` / ``start()`` take the same server down and up again (the "database briefly down" tests).
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

PG_BIN_DIRS = (
    Path("/usr/lib/postgresql/15/bin"),
    Path("/usr/lib/postgresql/16/bin"),
    Path("/usr/lib/postgresql/17/bin"),
)
SUPERUSER = "alch3mist"
RUN_AS = "postgres"  # as root: the Debian package's system user


def postgres_bin() -> Path | None:
    """The folder with ``initdb`` / ``pg_ctl`` (Debian keeps them out of PATH), or None when not installed."""
    for folder in PG_BIN_DIRS:
        if (folder / "initdb").is_file():
            return folder
    found = shutil.which("initdb")
    return Path(found).resolve().parent if found else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresServer:
    """One throwaway cluster: ``url(db)`` for SQLAlchemy, ``create_database()`` for an empty database per test."""

    def __init__(self, root: Path) -> None:
        found = postgres_bin()
        if found is None:
            raise RuntimeError("PostgreSQL is not installed: run scripts/install-system-deps.sh")
        self.bin = found
        self.root = root
        self.data = root / "data"
        self.port = _free_port()
        self.running = False
        self._as_user: list[str] = ["runuser", "-u", RUN_AS, "--"] if os.geteuid() == 0 else []
        if self._as_user:
            owner = pwd.getpwnam(RUN_AS)
            os.chown(root, owner.pw_uid, owner.pw_gid)
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", SUPERUSER, "-E", "UTF8", "--no-sync")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        options = f"-h 127.0.0.1 -p {self.port} -k {self.root} -F -c max_connections=200"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.root / "server.log"), "-w", "start")
        self.running = True

    def stop(self) -> None:
        """Fast shutdown: open connections are cut, as when the database restarts under us."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
        self.running = False

    def create_database(self, prefix: str = "test") -> str:
        """A new empty database; returns its URL."""
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        self._run("psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", SUPERUSER, "-d", "postgres",
                  "-q", "-c", f"CREATE DATABASE {name}")  # fmt: skip
        return self.url(name)

    def log_tail(self, lines: int = 40) -> str:
        log = self.root / "server.log"
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.exists() else ""

    def _run(self, tool: str, *args: str) -> None:
        binary = self.bin / tool
        command = [*self._as_user, str(binary if binary.exists() else tool), *args]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        if result.returncode != 0:
            raise RuntimeError(
                f"{tool} failed ({result.returncode}): {result.stderr or result.stdout}\n{self.log_tail()}"
            )


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the whole session (about a second to make and start). Its folder is outside
    pytest's root-only temp tree, which the ``postgres`` user could not enter."""
    root = Path(tempfile.mkdtemp(prefix="alch3mist-pg-"))
    try:
        server = PostgresServer(root)
        server.start()
        try:
            yield server
        finally:
            if server.running:
                server.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)
