"""Auth on a real backend: API keys on the API, signed links on browser routes, no way out of a job folder."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import API_KEYS, BackendProcess, free_port, submit, wait_for


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
        with backend.client(key, user=f"keyed-{name}") as client:
            job = submit(client, request="a nail of iron", views=0)
            assert client.get(f"/v1/jobs/{job['id']}").json()["user"] == f"keyed-{name}"
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


# --- ownership (issue 10 item 1): a job is its owner's — (API key, end user) — and an admin's, nobody else's ---


@pytest.fixture(scope="module")
def anas_job(backend: BackendProcess) -> Any:
    with backend.client(user="ana") as client:
        return wait_for(client, submit(client, request="a harp of brass", views=1)["id"])


STRANGERS = {  # (key, end user) pairs that must not see ana's job of the webui key
    "same key, other user": (API_KEYS["webui"], "bo"),
    "same key, no user": (API_KEYS["webui"], None),
    "other key, same user": (API_KEYS["tool"], "ana"),
    "other key, no user": (API_KEYS["tool"], None),
}


def _not_found(job_id: str) -> dict[str, Any]:
    return {"error": {"code": "job_not_found", "message": f"no job with id {job_id!r}"}}


@pytest.mark.parametrize("stranger", sorted(STRANGERS))
def test_another_owners_job_is_404_on_every_route(backend: BackendProcess, anas_job: Any, stranger: str) -> None:
    key, user = STRANGERS[stranger]
    job_id, missing = anas_job["id"], "f" * 32
    with backend.client(key, user=user) as client:
        for path in ("", "/events", "/artifacts/base.png", "/viewer", "/viewer?inline=1", "/viewer/bundle.js"):
            for target in (job_id, missing):
                response = client.get(f"/v1/jobs/{target}{path}")
                assert response.status_code == 404, (path, response.text)
                assert response.json() == _not_found(target), (path, response.text)  # the same as a missing job
        response = client.delete(f"/v1/jobs/{job_id}")
        assert response.status_code == 404 and response.json() == _not_found(job_id)
        listed = client.get("/v1/jobs", params={"limit": 200}).json()["jobs"]
        assert job_id not in {job["id"] for job in listed}
        for body in ({"parent": job_id, "edit_prompt": "Alch3mist, gold"}, {"parent": job_id, "request": "in gold"}):
            refine = client.post("/v1/jobs", json=body)
            assert refine.status_code == 422 and refine.json()["error"]["code"] == "invalid_parent", refine.text
            assert f"no job with id {job_id!r}" in refine.json()["error"]["message"]
        rewrite = client.post("/v1/rewrite", json={"request": "in gold", "parent": job_id})
        assert rewrite.status_code == 422 and "no job with id" in rewrite.text
        assert "harp" not in rewrite.text


def test_the_owner_and_an_admin_see_it_and_links_stay_bearer_links(backend: BackendProcess, anas_job: Any) -> None:
    job_id = anas_job["id"]
    with backend.client(user="ana") as owner:
        assert owner.get(f"/v1/jobs/{job_id}").json()["user"] == "ana"
        assert owner.get(f"/v1/jobs/{job_id}/artifacts/base.png").status_code == 200
        assert job_id in {job["id"] for job in owner.get("/v1/jobs").json()["jobs"]}
        assert owner.get(f"/v1/jobs/{job_id}", headers={"X-Alch3mist-User": "ana"}).status_code == 200
    with backend.admin() as admin:
        assert admin.get(f"/v1/jobs/{job_id}").status_code == 200
        assert job_id in {job["id"] for job in admin.get("/v1/jobs", params={"user": "ana"}).json()["jobs"]}
        assert job_id not in {job["id"] for job in admin.get("/v1/jobs", params={"user": "bo"}).json()["jobs"]}
    with httpx.Client(timeout=30) as browser:  # no key, no user: the signed link alone, for its one file
        assert browser.get(anas_job["artifacts"]["base_image"]).status_code == 200
        assert browser.get(anas_job["artifacts"]["viewer"]).status_code == 200


def test_a_user_in_the_body_and_a_different_header_is_refused(backend: BackendProcess) -> None:
    with backend.client(user="ana") as client:
        response = client.post("/v1/jobs", json={"request": "a cup", "user": "bo"})
        assert response.status_code == 422 and "X-Alch3mist-User" in response.json()["error"]["message"]
        listed = client.get("/v1/jobs", params={"user": "bo"})
        assert listed.status_code == 422


def test_the_running_job_is_only_named_to_an_admin(backend: BackendProcess) -> None:
    with backend.admin() as admin, backend.client() as client:
        job = submit(admin, request="a dragon of obsidian", steps=100, views=0)
        try:
            wait_for(admin, job["id"], until=("running", "succeeded", "failed", "cancelled"))
            assert admin.get("/v1/info").json()["running"] == job["id"]
            assert client.get("/v1/info").json()["running"] is None  # another owner's job id is not for others
        finally:
            admin.delete(f"/v1/jobs/{job['id']}")


# --- startup without keys (issue 10 item 9) ---


def _serve(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``alch3mist serve`` without keys, as the container image would run it; it must stop before loading models."""
    alch3mist = Path(sys.executable).with_name("alch3mist")
    environment = {k: v for k, v in os.environ.items() if not k.startswith("ALCH3MIST_")}
    environment.update({"ALCH3MIST_DATA_DIR": str(tmp_path / "data"), **env})
    command = [str(alch3mist), "serve", "--preset", "tiny", "--port", str(free_port()), *args]
    return subprocess.run(command, cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("host", ["0.0.0.0", "::"])
def test_no_keys_on_a_public_address_refuses_to_start(tmp_path: Path, host: str) -> None:
    result = _serve(tmp_path, "--host", host)
    assert result.returncode == 2, result.stderr
    assert "refusing to serve on" in result.stderr and "--insecure-no-auth" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "data" / "jobs.sqlite3").exists()


def test_the_container_image_does_not_listen_publicly_without_keys() -> None:
    """The image runs ``alch3mist serve --host 0.0.0.0``: without ALCH3MIST_API_KEYS that refuses to start (above),
    and neither the image nor compose.yaml turns the refusal off."""
    root = Path(__file__).resolve().parents[2]
    assert 'CMD ["serve", "--host", "0.0.0.0", "--port", "8765"]' in (root / "Dockerfile").read_text()
    for path in ("Dockerfile", "compose.yaml"):
        text = (root / path).read_text()
        assert "--insecure-no-auth" not in text and "INSECURE_NO_AUTH" not in text
