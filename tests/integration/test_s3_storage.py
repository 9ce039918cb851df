"""Artifacts in S3 (issue 12): the real backend process with ``ALCH3MIST_STORAGE_URL=s3://…`` against moto's
standalone S3 server. The job's files land in the bucket as the job runs; the signed links serve them from the bucket
to a client without the API key (byte for byte, ranges too), even with the local job folder gone; a tampered link
fails as before; a refine of a job whose folder is gone reads its base image (or its mesh) from the bucket. A bad
storage setting stops ``serve`` before anything loads, with one clear line."""

from __future__ import annotations

import base64
import io
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trimesh
from PIL import Image

from tests.integration.conftest import BackendProcess, free_port, submit, wait_for
from tests.servers.s3_server import CREDENTIALS, S3Server, running_s3_server

BUCKET = "alch3mist-artifacts"
PREFIX = "cluster/a"
CLOSED = "http://127.0.0.1:9"  # the discard port: nothing listens
NO_AWS_FILES = {"AWS_SHARED_CREDENTIALS_FILE": "/nonexistent", "AWS_CONFIG_FILE": "/nonexistent"}


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with running_s3_server(tmp_path_factory.mktemp("moto") / "moto.log") as server:
        server.create_bucket(BUCKET)
        yield server


@pytest.fixture(scope="module")
def s3_backend(s3: S3Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackendProcess]:
    root = tmp_path_factory.mktemp("s3-backend")
    env = {**s3.env, **NO_AWS_FILES, "ALCH3MIST_STORAGE_URL": f"s3://{BUCKET}/{PREFIX}"}
    server = BackendProcess(root / "data", root / "backend.log", **env)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def s3_job(s3_backend: BackendProcess) -> Any:
    with s3_backend.client() as client:
        job = wait_for(client, submit(client, request="a kettle of hammered copper", views=2)["id"])
    assert job["status"] == "succeeded", job["error"]
    return job


def _object(s3: S3Server, job_id: str, name: str) -> bytes:
    body: bytes = s3.client().get_object(Bucket=BUCKET, Key=f"{PREFIX}/{job_id}/{name}")["Body"].read()
    return body


def test_every_artifact_of_the_job_is_in_the_bucket(s3: S3Server, s3_job: Any) -> None:
    listed = s3.client().list_objects_v2(Bucket=BUCKET, Prefix=f"{PREFIX}/{s3_job['id']}/")["Contents"]
    names = {item["Key"].removeprefix(f"{PREFIX}/{s3_job['id']}/") for item in listed}
    expected = {"base.png", "textured.png", "model.glb", "texture.png", "views/view_00.png", "views/view_01.png",
                "contact_sheet.png", "viewer.html", "manifest.json"}  # fmt: skip
    assert expected <= names, names


def test_signed_links_serve_the_objects_without_the_key(s3: S3Server, s3_job: Any) -> None:
    artifacts = s3_job["artifacts"]
    with httpx.Client(timeout=60) as browser:  # no API key: the token alone
        glb = browser.get(artifacts["glb"])
        assert glb.status_code == 200 and glb.headers["content-type"] == "model/gltf-binary"
        assert glb.content == _object(s3, s3_job["id"], "model.glb") and glb.content[:4] == b"glTF"
        assert glb.headers["access-control-allow-origin"] == "*"  # the viewer in a sandboxed iframe can read it
        base = browser.get(artifacts["base_image"])
        assert base.status_code == 200 and base.headers["content-type"] == "image/png"
        assert base.content == _object(s3, s3_job["id"], "base.png")
        part = browser.get(artifacts["glb"], headers={"Range": "bytes=4-11"})
        assert part.status_code == 206 and part.content == glb.content[4:12]
        assert part.headers["content-range"] == f"bytes 4-11/{len(glb.content)}"
        past = browser.get(artifacts["glb"], headers={"Range": f"bytes={len(glb.content)}-"})
        assert past.status_code == 416 and past.headers["content-range"] == f"bytes */{len(glb.content)}"


@pytest.mark.parametrize("how", ["signature", "other file", "garbage"])
def test_a_tampered_link_fails(s3_job: Any, how: str) -> None:
    url = s3_job["artifacts"]["glb"]
    base, token = url.split("?token=")
    expires, mac = token.split(".")
    tampered = {
        "signature": f"{base}?token={expires}.{mac[::-1]}",
        "other file": s3_job["artifacts"]["base_image"].split("?")[0] + f"?token={token}",
        "garbage": f"{base}?token=hello",
    }[how]
    response = httpx.get(tampered, timeout=30)
    assert response.status_code == 401 and "link" in response.json()["error"]["message"], response.text


def test_links_work_with_the_local_job_folder_gone(s3: S3Server, s3_backend: BackendProcess, s3_job: Any) -> None:
    shutil.rmtree(s3_backend.data_dir / "jobs" / s3_job["id"])
    with httpx.Client(timeout=60) as browser:
        glb = browser.get(s3_job["artifacts"]["glb"])
        assert glb.status_code == 200 and glb.content == _object(s3, s3_job["id"], "model.glb")
        page = browser.get(s3_job["artifacts"]["viewer"])
        assert page.status_code == 200 and "<model-viewer" in page.text
        fresh_glb = re.search(r'src="([^"]+/artifacts/model\.glb\?token=[^"]+)"', page.text)
        assert fresh_glb is not None, page.text[:2000]
        assert browser.get(fresh_glb.group(1).replace("&amp;", "&")).content == glb.content
    with s3_backend.client() as client:
        inline = client.get(f"/v1/jobs/{s3_job['id']}/viewer", params={"inline": 1})
        assert inline.status_code == 200 and "data:model/gltf-binary;base64," in inline.text
        missing = client.get(f"/v1/jobs/{s3_job['id']}/artifacts/nothing.png")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "artifact_not_found"


@pytest.mark.browser
def test_the_viewer_loads_the_model_from_the_bucket_in_a_sandboxed_iframe(
    s3_backend: BackendProcess, s3_job: Any
) -> None:
    """The URL-mode viewer link in the real Chromium, sandboxed as Open WebUI does: model-viewer loads the GLB
    streamed from S3 (the local job folder is gone) and no request leaves 127.0.0.1."""
    from playwright.sync_api import sync_playwright

    from tests.model_viewer.harness import CHROMIUM, launch, open_embed_url

    if shutil.which(CHROMIUM) is None:
        pytest.fail(f"{CHROMIUM} is missing: run scripts/install-system-deps.sh (Debian package 'chromium')")
    shutil.rmtree(s3_backend.data_dir / "jobs" / s3_job["id"], ignore_errors=True)
    with sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            with open_embed_url(browser, s3_job["artifacts"]["viewer"]) as run:
                state = run.frame.evaluate("window.alch3mistViewer")
                assert state["loaded"] and state["error"] is None, state
                assert run.blocked == [] and run.external_requests() == []
                assert any("/artifacts/model.glb?token=" in url for url in run.requests)
        finally:
            browser.close()


def test_a_refine_reads_the_parent_base_image_from_the_bucket(
    s3: S3Server, s3_backend: BackendProcess, s3_job: Any
) -> None:
    shutil.rmtree(s3_backend.data_dir / "jobs" / s3_job["id"], ignore_errors=True)  # as if it ran on another box
    with s3_backend.client() as client:
        child = wait_for(
            client, submit(client, parent=s3_job["id"], edit_prompt="Alch3mist: solid gold", views=0)["id"]
        )
    assert child["status"] == "succeeded", child["error"]
    parent_base = Image.open(io.BytesIO(_object(s3, s3_job["id"], "base.png")))
    child_base = Image.open(io.BytesIO(_object(s3, child["id"], "base.png")))
    assert child_base.tobytes() == parent_base.tobytes()


def test_a_mesh_job_keeps_its_mesh_in_the_bucket_and_a_refine_paints_it_from_there(
    s3: S3Server, s3_backend: BackendProcess
) -> None:
    mesh = bytes(trimesh.creation.box(extents=(1.0, 0.5, 0.4)).export(file_type="glb"))
    texture = {"views": 2, "view_size": 64}
    with s3_backend.client() as client:
        body = {"mesh": base64.b64encode(mesh).decode(), "request": "make it oak", "texture": texture, "views": 0}
        parent = wait_for(client, submit(client, **body)["id"])
        assert parent["status"] == "succeeded", parent["error"]
        assert _object(s3, parent["id"], "input_mesh.glb") == mesh  # the bytes sent, for a worker anywhere
        shutil.rmtree(s3_backend.data_dir / "jobs" / parent["id"])  # as if it ran on another box
        child_id = submit(client, parent=parent["id"], request="now in gold", texture=texture, views=0)["id"]
        child = wait_for(client, child_id)
    assert child["status"] == "succeeded", child["error"]
    assert child["manifest"]["flow"] == "retexture" and _object(s3, child["id"], "input_mesh.glb") == mesh


def _serve(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    alch3mist = Path(sys.executable).with_name("alch3mist")
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("ALCH3MIST_", "AWS_"))}
    environment.update({"ALCH3MIST_DATA_DIR": str(tmp_path / "data"), **NO_AWS_FILES, **env})
    command = [str(alch3mist), "serve", "--preset", "tiny", "--host", "127.0.0.1", "--port", str(free_port())]
    return subprocess.run(command, cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    ("settings", "says"),
    [
        ({"ALCH3MIST_STORAGE_URL": "minio://bucket/x"}, "the scheme must be s3://"),
        ({"ALCH3MIST_STORAGE_URL": "s3:///x"}, "no bucket name"),
        ({"ALCH3MIST_STORAGE_URL": "s3://no-such-bucket/x"}, "no such bucket (create it first)"),
        ({"ALCH3MIST_STORAGE_URL": f"s3://{BUCKET}", "ALCH3MIST_S3_ENDPOINT_URL": CLOSED}, "Could not connect"),
        ({"ALCH3MIST_STORAGE_URL": f"s3://{BUCKET}", "AWS_ACCESS_KEY_ID": ""}, "no S3 credentials found"),
    ],
)  # fmt: skip
def test_bad_storage_settings_stop_serve_with_one_clear_line(
    s3: S3Server, tmp_path: Path, settings: dict[str, str], says: str
) -> None:
    env = {**s3.env, **settings}
    if env.get("AWS_ACCESS_KEY_ID") == "":
        env = {k: v for k, v in env.items() if k not in CREDENTIALS or k == "AWS_DEFAULT_REGION"}
    result = _serve(tmp_path, **env)
    assert result.returncode == 2, result.stderr[-3000:]
    assert says in result.stderr and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert "testing-secret-key" not in result.stderr + result.stdout
    assert not (tmp_path / "data" / "jobs.sqlite3").exists()  # stopped before anything was opened
