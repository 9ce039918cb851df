"""A real S3 API endpoint for tests: moto's standalone server (``moto_server``, pinned in requirements-dev.txt) in
its own process on a free loopback port. The code under test talks plain boto3 to ``endpoint_url``, as it would to
MinIO or AWS; no S3 server package exists for Debian here (docs/deploy.md, "Artifact storage").

``running_s3_server()`` yields an ``S3Server`` with the endpoint, fake credentials in ``env`` (moto accepts any) and a
boto3 ``client()`` for the test's own checks (create a bucket, list what the code stored).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing-access-key",
    "AWS_SECRET_ACCESS_KEY": "testing-secret-key",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@dataclass
class S3Server:
    endpoint_url: str
    process: subprocess.Popen[bytes]

    @property
    def env(self) -> dict[str, str]:
        """What a process needs to reach this endpoint through boto3's standard chain."""
        return {**CREDENTIALS, "ALCH3MIST_S3_ENDPOINT_URL": self.endpoint_url}

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            region_name=CREDENTIALS["AWS_DEFAULT_REGION"],
        )

    def create_bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        return name


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running_s3_server(log_path: Path | None = None) -> Iterator[S3Server]:
    """``moto_server -H 127.0.0.1 -p PORT`` for the duration of the block."""
    port = _free_port()
    moto_server = Path(sys.executable).with_name("moto_server")
    log = log_path.open("ab") if log_path else subprocess.DEVNULL
    process = subprocess.Popen(
        [str(moto_server), "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, **CREDENTIALS},
    )
    server = S3Server(f"http://127.0.0.1:{port}", process)
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"moto_server exited with {process.returncode}")
            try:
                httpx.get(f"{server.endpoint_url}/moto-api/", timeout=2)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise RuntimeError("moto_server did not start in 60 s") from None
                time.sleep(0.2)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        if log_path:
            log.close()  # type: ignore[union-attr]
