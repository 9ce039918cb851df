"""Auth on a real backend: API keys on the API, signed links on browser routes, no way out of a job folder."""

from __future__ import annotations

import os
import sqlite3
from typing import Any

import httpx
import pytest

from .conftest import API_KEYS, BackendProcess, submit, wait_for


@pytest.fixture(scope="module")
def finished_job(backend: BackendProcess) -> Any:
    with backend.client() as client:
        return wait_for(client, submit(client, request="a bell of bronze", views=1)["id"])


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/jobs"),
        ("POST", "/v1/jobs"),
        ("GET", "/v1/info"),
        ("GET", "/v1/jobs/{id}"),
        ("GET", "/v1/jobs/{id}/events"),
        ("DELETE", "/v1/jobs/{id}"),
        ("GET", "/v1/jobs/{id}/artifacts/base.png"),
        ("GET", "/v1/jobs/{id}/viewer"),
        ("GET", "/v1/jobs/{id}/viewer/bundle.js"),
    ],
)
@pytest.mark.parametrize(
    "authorization", [None, "Bearer wrong-key", f"Bearer {API_KEYS['webui']}x", "Bearer", f"Basic {API_KEYS['tool']}"]
)
def test_missing_or_wrong_key_is_401(
    backend: BackendProcess, finished_job: Any, method: str, path: str, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    response = httpx.request(
        method, backend.base_url + path.format(id=finished_job["id"]), headers=headers, json={"request": "x"}
    )
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "unauthorized"
    assert response.headers["www-authenticate"] == "Bearer"


def test_each_named_key_works_and_its_name_is_recorded_on_the_job(backend: BackendProcess, finished_job: Any) -> None:
    for name, key in API_KEYS.items():
        with backend.client(key) as client:
            assert client.get(f"/v1/jobs/{finished_job['id']}").status_code == 200
            job = submit(client, request="a nail of iron", views=0, user=f"keyed-{name}")
            client.delete(f"/v1/jobs/{job['id']}")
        with sqlite3.connect(backend.data_dir / "jobs.sqlite3") as db:
            row = db.execute("SELECT key_name FROM jobs WHERE id = ?", (job["id"],)).fetchone()
        assert row == (name,)
    assert httpx.get(f"{backend.base_url}/healthz").status_code == 200  # health needs no key


def test_signed_link_works_without_the_key_and_only_for_its_file(finished_job: Any) -> None:
    artifacts = finished_job["artifacts"]
    with httpx.Client(timeout=30) as browser:
        assert browser.get(artifacts["base_image"]).status_code == 200
        token = artifacts["base_image"].split("token=")[1]
        other_file = artifacts["glb"].split("?")[0] + f"?token={token}"
        response = browser.get(other_file)
        assert response.status_code == 401 and "invalid link" in response.json()["error"]["message"]


@pytest.mark.parametrize("how", ["signature", "expiry", "job", "garbage", "empty"])
def test_tampered_link_is_refused(backend: BackendProcess, finished_job: Any, how: str) -> None:
    url = finished_job["artifacts"]["textured_image"]
    base, token = url.split("?token=")
    expires, mac = token.split(".")
    tampered = {
        "signature": f"{base}?token={expires}.{mac[::-1]}",
        "expiry": f"{base}?token={int(expires) + 86400}.{mac}",
        "job": url.replace(finished_job["id"], "f" * 32),
        "garbage": f"{base}?token=hello",
        "empty": f"{base}?token=",
    }[how]
    response = httpx.get(tampered)
    assert response.status_code == 401, response.text
    assert response.headers["access-control-allow-origin"] == "*"  # the page in the iframe can read the error


@pytest.mark.parametrize(
    "name",
    [
        "..%2F..%2Fjobs.sqlite3",
        "..%2Fjobs.sqlite3",
        "%2E%2E%2F%2E%2E%2Fjobs.sqlite3",
        "views%2F..%2F..%2F..%2Fjobs.sqlite3",
        "%2Fetc%2Fpasswd",
        "%2E",
        "",
        "escape-link",
    ],
)
def test_path_traversal_is_404(backend: BackendProcess, finished_job: Any, name: str) -> None:
    job_dir = backend.data_dir / "jobs" / finished_job["id"]
    link = job_dir / "escape-link"
    if not link.is_symlink():
        os.symlink(backend.data_dir / "jobs.sqlite3", link)  # a symlink out of the folder must not be followed
    with backend.client() as client:
        response = client.get(f"/v1/jobs/{finished_job['id']}/artifacts/{name}")
    assert response.status_code == 404, response.text
    assert response.json()["error"]["code"] in ("artifact_not_found", "not_found")


def test_job_id_traversal_is_404(backend: BackendProcess) -> None:
    with backend.client() as client:
        for job_id in ("..", "..%2F..", "%2E%2E"):
            response = client.get(f"/v1/jobs/{job_id}/artifacts/jobs.sqlite3")
            assert response.status_code == 404, response.text
