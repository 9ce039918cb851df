"""The jobs API on a real backend process (tiny preset, preview engine): submit → SSE → artifacts, refine,
late-stage failure, cancellation, validation, limits."""

from __future__ import annotations

import base64
import io
import time
from typing import Any

import httpx
from PIL import Image

from .conftest import BackendProcess, read_events, submit, wait_for

ALL_FILES = {"base_image", "textured_image", "glb", "contact_sheet", "viewer", "manifest"}


def _png_b64(size: tuple[int, int] = (96, 96)) -> str:
    image = Image.new("RGB", size, (240, 240, 240))
    for x in range(24, 72):
        for y in range(24, 72):
            image.putpixel((x, y), (180, 40, 30))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def test_submit_follow_events_and_download_every_artifact_without_the_key(backend: BackendProcess) -> None:
    with backend.client(user="ana") as client:
        created = submit(client, request="a cow with crocodile skin", seed=7, user="ana")
        assert created["status"] in ("queued", "running")
        assert created["links"]["self"].endswith(f"/v1/jobs/{created['id']}")
        events = read_events(client, created["id"])
        job = client.get(f"/v1/jobs/{created['id']}").json()

    kinds = [e["event"] for e in events]
    assert kinds[0] == "status" and kinds[-1] == "done"
    stages = [e["stage"] for e in events if e["event"] == "stage"]
    all_stages = ["rewrite", "base_image", "material_edit", "mesh", "views", "viewer"]
    assert len(stages) >= 4 and stages == all_stages[-len(stages) :], "stages in order (the first may have passed)"
    progress = [e["progress"] for e in events]
    assert progress == sorted(progress), "overall progress never goes back"
    announced = {e["artifact"] for e in events if e["event"] == "artifact"}
    assert announced >= ALL_FILES | {"views"}
    final = events[-1]["job"]
    assert final["status"] == "succeeded" and final["progress"] == 1.0

    assert job["status"] == "succeeded" and job["seed"] == 7 and job["user"] == "ana"
    assert job["prompt"]["edit_prompt"].lower().startswith("alch3mist")
    assert job["engine_3d"] == "preview" and any("preview" in w for w in job["warnings"])
    artifacts = job["artifacts"]
    assert len(artifacts["views"]) == 2
    with httpx.Client(timeout=60) as browser:  # no API key: the signed links alone must do
        for field in ("base_image", "textured_image", "glb", "contact_sheet", "manifest", "texture_map"):
            if field == "texture_map" and artifacts[field] is None:
                continue
            response = browser.get(artifacts[field])
            assert response.status_code == 200, (field, response.text)
            assert response.headers["access-control-allow-origin"] == "*"
        assert browser.get(artifacts["glb"]).content[:4] == b"glTF"
        assert browser.get(artifacts["glb"]).headers["content-type"] == "model/gltf-binary"
        for url in artifacts["views"]:
            assert browser.get(url).content[:8] == b"\x89PNG\r\n\x1a\n"
        page = browser.get(artifacts["viewer"])
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        assert "model-viewer" in page.text and "/artifacts/model.glb?token=" in page.text
        bundle_url = job["links"]["viewer"].replace("/viewer?", "/viewer/bundle.js?")
        assert browser.get(bundle_url).status_code == 401, "a viewer token does not open the bundle"
        inline = browser.get(job["links"]["viewer_inline"])
        assert inline.status_code == 200 and "data:" in inline.text and len(inline.text) > 100_000


def test_a_job_without_a_seed_gets_one_and_reports_it(backend: BackendProcess) -> None:
    with backend.client() as client:
        jobs = [wait_for(client, submit(client, request="a spoon of tin", seed=None, views=0)["id"]) for _ in range(3)]
    for job in jobs:
        assert job["status"] == "succeeded", job["error"]
        assert isinstance(job["seed"], int) and 0 <= job["seed"] < 2**32


def test_url_viewer_page_loads_its_bundle_through_its_own_signed_link(backend: BackendProcess) -> None:
    with backend.client() as client:
        job = wait_for(client, submit(client, request="a teapot made of gold", views=0)["id"])
    with httpx.Client(timeout=60) as browser:
        page = browser.get(job["artifacts"]["viewer"]).text
        bundle = next(p for p in page.split('"') if "/viewer/bundle.js?token=" in p)
        response = browser.get(bundle.replace("&amp;", "&"))
    assert response.status_code == 200 and "javascript" in response.headers["content-type"]
    assert len(response.content) > 100_000


def test_events_of_a_finished_job_replay_state_and_end(backend: BackendProcess) -> None:
    with backend.client() as client:
        job = wait_for(client, submit(client, request="a chair of oak", views=1)["id"])
        started = time.monotonic()
        events = read_events(client, job["id"], timeout=30)
    assert time.monotonic() - started < 10
    assert events[0]["event"] == "status" and events[0]["job"]["status"] == "succeeded"
    assert events[-1]["event"] == "done" and events[-1]["job"]["id"] == job["id"]
    files = {e["file"] for e in events if e["event"] == "artifact"}
    assert {"base.png", "textured.png", "model.glb", "views/view_00.png", "viewer.html", "manifest.json"} <= files


def test_refine_reuses_the_parent_base_image_and_seed(backend: BackendProcess) -> None:
    with backend.client() as client:
        parent = wait_for(client, submit(client, request="a cow with crocodile skin", seed=11, views=0)["id"])
        child = wait_for(
            client,
            submit(client, parent=parent["id"], edit_prompt="Alch3mist: make it solid gold", views=0, seed=None)["id"],
        )
        assert child["status"] == "succeeded" and child["parent"] == parent["id"] and child["seed"] == 11
        base = client.get(child["artifacts"]["base_image"]).content
        parent_base = client.get(parent["artifacts"]["base_image"]).content
    assert Image.open(io.BytesIO(base)).tobytes() == Image.open(io.BytesIO(parent_base)).tobytes()


def test_input_image_skips_flux_and_is_edited(backend: BackendProcess) -> None:
    with backend.client() as client:
        job = wait_for(client, submit(client, image=_png_b64(), edit_prompt="Alch3mist: crocodile skin", views=0)["id"])
    assert job["status"] == "succeeded", job["error"]
    assert job["manifest"]["parameters"]["base_image"] == "given"


def test_late_stage_failure_keeps_earlier_artifacts_and_names_the_stage(backend: BackendProcess) -> None:
    with backend.client() as client:
        job = wait_for(client, submit(client, request="a vase of jade", engine_3d="trellis")["id"])
        assert job["status"] == "failed"
        assert job["error"]["stage"] == "mesh" and job["error"]["code"].startswith("engine")
        assert "trellis" in job["error"]["message"].lower()
        assert job["artifacts"]["glb"] is None and job["artifacts"]["viewer"] is None
        for field in ("base_image", "textured_image"):
            assert client.get(job["artifacts"][field]).status_code == 200


def test_cancel_queued_is_immediate_and_running_stops_at_a_step(backend: BackendProcess) -> None:
    with backend.admin(user="canceller") as client:  # the admin key's ceilings allow 100 steps
        slow = submit(client, request="a dragon of obsidian", steps=100, user="canceller")
        queued = submit(client, request="a mug of copper", user="canceller")
        running = wait_for(client, slow["id"], until=("running", *("succeeded", "failed", "cancelled")))
        assert running["status"] == "running"

        response = client.delete(f"/v1/jobs/{queued['id']}")
        assert response.status_code == 200 and response.json()["status"] == "cancelled"
        assert client.get(f"/v1/jobs/{queued['id']}").json()["status"] == "cancelled"

        _wait_for_stage(client, slow["id"], "base_image")
        asked = time.monotonic()
        response = client.delete(f"/v1/jobs/{slow['id']}")
        assert response.status_code == 202 and response.json()["status"] == "running"
        stopped = wait_for(client, slow["id"], timeout=120)
        assert stopped["status"] == "cancelled" and stopped["error"]["code"] == "cancelled"
        assert time.monotonic() - asked < 30, "cancellation stops at the next step, not at the end"
        assert client.delete(f"/v1/jobs/{slow['id']}").status_code == 409


def _wait_for_stage(client: httpx.Client, job_id: str, stage: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["stage"] == stage and job["stage_progress"] > 0:
            return
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} never reached {stage}")


def test_per_user_limit_answers_429(backend: BackendProcess) -> None:
    with backend.client() as client:
        slow = [submit(client, request="a boat of glass", steps=30, user="greedy", views=0) for _ in range(4)]
        response = client.post("/v1/jobs", json={"request": "one more", "user": "greedy"})
        assert response.status_code == 429
        assert "greedy" in response.json()["error"]["message"] and response.json()["error"]["code"] == "too_many_jobs"
        header = client.post("/v1/jobs", json={"request": "one more"}, headers={"X-Alch3mist-User": "greedy"})
        assert header.status_code == 429
        other = client.post("/v1/jobs", json={"request": "a cup", "user": "other", "views": 0})
        assert other.status_code == 202
        listed = client.get("/v1/jobs", params={"user": "greedy"}).json()["jobs"]
        assert {j["id"] for j in listed} == {j["id"] for j in slow}
        for job in slow:
            client.delete(f"/v1/jobs/{job['id']}", headers={"X-Alch3mist-User": "greedy"})
        client.delete(f"/v1/jobs/{other.json()['id']}", headers={"X-Alch3mist-User": "other"})


def test_list_reports_queue_positions(backend: BackendProcess) -> None:
    with backend.client(user="lister") as client:
        jobs = [submit(client, request=f"a cube of stone {i}", user="lister", steps=20) for i in range(3)]
        listed = client.get("/v1/jobs", params={"user": "lister", "status": "queued"}).json()["jobs"]
        positions = [j["queue_position"] for j in reversed(listed)]
        assert positions == sorted(positions) and all(p >= 1 for p in positions)
        for job in jobs:
            client.delete(f"/v1/jobs/{job['id']}")


def test_bad_requests_are_clear_json_4xx(backend: BackendProcess) -> None:
    with backend.client() as client:
        cases: list[tuple[Any, int, str]] = [
            ({"seed": -1, "request": "x"}, 422, "seed: must be at least 0"),
            ({}, 422, "nothing to make"),
            ({"base_prompt": "a cow"}, 422, "edit_prompt"),
            ({"request": "x" * 5000}, 422, "ALCH3MIST_MAX_REQUEST_CHARS"),
            ({"request": "a cow", "engine_3d": "blender"}, 422, "unknown 3D engine"),
            ({"request": "a cow", "lora": {"name": "nope"}}, 422, "unknown LoRA"),
            ({"request": "a cow", "image": "!!notbase64"}, 422, "base64"),
            ({"request": "a cow", "image": base64.b64encode(b"GIF89a nope").decode()}, 422, "image"),
            ({"request": "a cow", "parent": "0" * 32}, 422, "no job with id"),
            ({"request": "a cow", "image": _png_b64(), "parent": "0" * 32}, 422, "either image or parent"),
            # issue 10 item 5: these were accepted (202) and failed later, in FLUX / in the rewrite stage
            ({"request": "a cow", "size": 72}, 422, "size: must be a multiple of 16"),
            ({"base_prompt": "a cow " * 120, "edit_prompt": "Alch3mist, gold"}, 422, "the limit is 600"),
            ({"base_prompt": "<b></b>", "edit_prompt": "Alch3mist, gold"}, 422, "base_prompt is empty"),
            ({"base_prompt": "a cow", "edit_prompt": "x" * 595}, 422, "with the trigger word"),
            ({"base_prompt": "a cow", "edit_prompt": "gold", "rewrite_reply": "{}"}, 422, "rewrite_reply"),
            ({"request": "a cow", "steps": 51}, 422, "above the ceiling max_steps=50"),
        ]
        for body, status, needle in cases:
            response = client.post("/v1/jobs", json=body)
            assert response.status_code == status, (body, response.text)
            assert needle in response.json()["error"]["message"], (body, response.text)
        response = client.post("/v1/jobs", content=b"{not json", headers={"content-type": "application/json"})
        assert response.status_code == 422 and "not valid JSON" in response.json()["error"]["message"]
        # The body limit: ALCH3MIST_MAX_UPLOAD_BYTES (20 MiB) + the largest mesh as base64 (4/3 × 64 MiB)
        big = client.post("/v1/jobs", json={"request": "a cow", "image": "A" * (106 * 1024 * 1024)})
        assert big.status_code == 413 and big.json()["error"]["code"] == "request_too_large"
        missing = client.get("/v1/jobs/" + "0" * 32)
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "job_not_found"
        assert client.get("/v1/nothing").json()["error"]["code"] == "not_found"


def test_info_and_health(backend: BackendProcess) -> None:
    assert httpx.get(f"{backend.base_url}/healthz").json()["status"] == "ok"
    with backend.client() as client:
        info = client.get("/v1/info").json()
    assert info["preset"] == "tiny" and info["default_engine"] == "preview"
    engines = {e["name"]: e for e in info["engines"]}
    assert engines["preview"]["available"] and engines["preview"]["is_preview"]
    assert not engines["trellis"]["available"]
    assert isinstance(info["queue_length"], int)


def test_cors_only_on_browser_routes(backend: BackendProcess) -> None:
    with backend.client() as client:
        api = client.get("/v1/jobs", headers={"Origin": "null"})
        assert "access-control-allow-origin" not in api.headers
        preflight = client.options("/v1/jobs/" + "0" * 32 + "/artifacts/model.glb", headers={"Origin": "null"})
        assert preflight.status_code == 204 and preflight.headers["access-control-allow-origin"] == "*"
