"""Limits that hold, on a real backend with small quotas and ceilings (issue 10 items 4 and 5).

* Quotas in order: the whole queue (503 + Retry-After), the key's (rotating or leaving out ``user`` never gets past
  it), the end user's inside the key, hourly starts (429 + Retry-After).
* Every ``JobCreate`` field walked to its boundaries through the real API: just outside is a 422 at POST, and every
  job accepted at a boundary finishes without failing — nothing that POST accepts fails validation later.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import trimesh
from PIL import Image

from .conftest import ADMIN_KEY, API_KEYS, BIG_LIMITS, BackendProcess, free_port, submit, wait_for

CEILINGS = {"max_steps": 3, "max_size": 96, "max_views": 2, "max_view_size": 96, "max_texture_size": 512}
UNLIMITED = {"max_active": 0, "jobs_per_hour": 0, "max_active_per_user": 0, "user_jobs_per_hour": 0}
MAX_SEED = 2**31 - 1
MAX_REQUEST_CHARS = 2000  # the default ALCH3MIST_MAX_REQUEST_CHARS


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackendProcess]:
    """Key ``webui``: 3 active jobs, 2 per end user, 5 started per hour; key ``tool``: no quotas (the boundary
    walk); ``ops`` (admin): the schema's maxima. Ceilings are tiny, so jobs at the boundaries are quick."""
    root = tmp_path_factory.mktemp("strict")
    server = BackendProcess(
        root / "data",
        root / "backend.log",
        ALCH3MIST_KEY_LIMITS=json.dumps({ADMIN_KEY[0]: {**BIG_LIMITS, **UNLIMITED}, "tool": UNLIMITED}),
        ALCH3MIST_KEY_MAX_ACTIVE="3",
        ALCH3MIST_MAX_QUEUED_PER_USER="2",
        ALCH3MIST_KEY_JOBS_PER_HOUR="5",
        ALCH3MIST_USER_JOBS_PER_HOUR="0",
        ALCH3MIST_MAX_QUEUE="6",
        ALCH3MIST_QUEUE_RETRY_AFTER_S="17",
        ALCH3MIST_TRELLIS_URL=f"http://127.0.0.1:{free_port()}",
        **{f"ALCH3MIST_{name.upper()}": str(value) for name, value in CEILINGS.items()},
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _post(client: httpx.Client, **fields: Any) -> httpx.Response:
    return client.post("/v1/jobs", json={"views": 0, "steps": 1, "edit_steps": 1, "size": 64, **fields})


def _error(response: httpx.Response) -> tuple[int, str, str]:
    body = response.json()
    return response.status_code, body["error"]["code"], body["error"]["message"]


def test_quotas_hold_in_order(strict: BackendProcess) -> None:
    webui = API_KEYS["webui"]
    with strict.admin() as admin:
        blocker = submit(admin, request="a dragon of obsidian", steps=100, size=64, views=0)  # keeps the GPU busy
        try:
            wait_for(admin, blocker["id"], until=("running",))
            # the end user inside the key: 2 each
            with strict.client(webui, user="u1") as u1:
                for _ in range(2):
                    assert _post(u1, request="a cup").status_code == 202
                status, code, message = _error(_post(u1, request="a cup"))
                assert (status, code) == (429, "too_many_jobs") and "end user 'u1'" in message
            # the key: 3 together — a new user, or no user at all, does not get past it
            with strict.client(webui, user="u2") as u2:
                assert _post(u2, request="a cup").status_code == 202
            for user in ("u3", None):
                with strict.client(webui, user=user) as rotated:
                    status, code, message = _error(_post(rotated, request="a cup"))
                    assert (status, code) == (429, "too_many_jobs") and "API key 'webui'" in message, message
            # the whole queue: 6 waiting jobs at most, then 503 with Retry-After
            with strict.client(API_KEYS["tool"], user="t1") as tool:
                for _ in range(3):
                    assert _post(tool, request="a cup").status_code == 202
                full = _post(tool, request="a cup")
                assert _error(full)[:2] == (503, "queue_full") and full.headers["retry-after"] == "17"
            # hourly starts: cancelled jobs count too; the 6th of the key's jobs this hour is refused
            _cancel_all(strict)
            with strict.client(webui, user="u4") as u4:
                for _ in range(2):
                    job = _post(u4, request="a cup")
                    assert job.status_code == 202, job.text
                    u4.delete(f"/v1/jobs/{job.json()['id']}")
                limited = _post(u4, request="a cup")
                status, code, message = _error(limited)
                assert (status, code) == (429, "rate_limited") and "started 5 jobs in the last hour" in message
                assert int(limited.headers["retry-after"]) > 0
        finally:
            _cancel_all(strict)


def _cancel_all(server: BackendProcess) -> None:
    with server.admin() as admin:
        for status in ("queued", "running"):
            for job in admin.get("/v1/jobs", params={"status": status, "limit": 200}).json()["jobs"]:
                admin.delete(f"/v1/jobs/{job['id']}")


def test_ceilings_are_422_naming_the_limit_and_info_lists_them(strict: BackendProcess) -> None:
    with strict.client(API_KEYS["tool"]) as client:
        limits = client.get("/v1/info").json()["limits"]
        assert {name: limits[name] for name in CEILINGS} == CEILINGS
        assert client.get("/v1/limits").json() == limits  # the cheap route the plugins call for every message
        for field, ceiling in (("steps", "max_steps"), ("edit_steps", "max_steps"), ("views", "max_views"),
                               ("view_size", "max_view_size"), ("texture_size", "max_texture_size")):  # fmt: skip
            status, code, message = _error(_post(client, request="a cup", **{field: CEILINGS[ceiling] + 1}))
            assert (status, code) == (422, "over_limit") and f"ceiling {ceiling}={CEILINGS[ceiling]}" in message
        status, code, message = _error(_post(client, request="a cup", size=112))
        assert (status, code) == (422, "over_limit") and "max_size=96" in message
    with strict.admin() as admin:  # a key's own limits (ALCH3MIST_KEY_LIMITS) are its, and /v1/info says so
        assert admin.get("/v1/info").json()["limits"]["max_steps"] == 100


# --- every JobCreate field to its boundaries ------------------------------------------------------------------


def _png(width: int, height: int) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (180, 40, 30)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def _mesh(file_type: str = "glb") -> str:
    data = trimesh.creation.box(extents=(1.0, 0.5, 0.4)).export(file_type=file_type)
    return base64.b64encode(data if isinstance(data, bytes) else data.encode()).decode()


def _text(chars: int, start: str = "a cup of tin") -> str:
    return (start + " with a lid" * chars)[:chars]


REPLY = json.dumps({"subject": "a cup", "materials": ["tin"], "base_prompt": "A single cup, plain background",
                    "edit_prompt": "Alch3mist, brushed tin", "title": "Tin cup", "language": "en"})  # fmt: skip
BASE = {"request": "a cup of tin", "steps": 1, "edit_steps": 1, "size": 64, "views": 0}

# Accepted jobs at the boundaries: the numeric minima together, the maxima (the ceilings) together, odd in-range
# values, and each structural edge of its own. Each must end "succeeded".
ACCEPTED: dict[str, dict[str, Any]] = {
    "minima": {"steps": 1, "edit_steps": 1, "guidance": 0.0, "edit_guidance": 0.0, "size": 64, "texture_size": 256,
               "views": 0, "view_size": 64, "seed": 0, "lora": {"scale": 0.0}},
    "maxima": {"steps": 3, "edit_steps": 3, "guidance": 30.0, "edit_guidance": 30.0, "size": 96, "texture_size": 512,
               "views": 2, "view_size": 96, "seed": MAX_SEED, "lora": {"scale": 2.0}, "engine_3d": "preview"},
    "odd values": {"size": 80, "texture_size": 300, "views": 1, "view_size": 65, "seed": 12345},
    "longest request": {"request": _text(MAX_REQUEST_CHARS)},
    "longest prompts and title": {"request": None, "base_prompt": _text(600, "A single cup"),
                                  "edit_prompt": _text(600, "Alch3mist, tin"), "title": "T" * 80},
    "smallest image": {"request": None, "image": _png(64, 64), "edit_prompt": "Alch3mist, tin"},
    # Kontext keeps the aspect ratio at its own area (tiny preset: 96²), and the 3D stage needs 64 px a side: 144×64
    # is the widest input that works here (a 4096×64 one was accepted and failed in the mesh stage).
    "widest image": {"request": None, "image": _png(144, 64), "edit_prompt": "Alch3mist, tin"},
    "longest user": {"user": "u" * 200},
    "a rewrite reply": {"rewrite_reply": REPLY},
    "an unusable rewrite reply": {"rewrite_reply": "a poem, not JSON"},
    "a mesh at the texture minima": {"request": "make it tin", "mesh": _mesh(), "mesh_filename": "m" * 255,
                                     "texture": {"views": 2, "view_size": 64, "elevation": 0.0,
                                                 "camera": "perspective", "delight": False},
                                     "texture_engine": "alch3mist", "reference_image": _png(64, 64)},
    "a mesh at the texture maxima": {"request": "make it tin", "mesh": _mesh("obj"), "decimate": True,
                                     "texture": {"views": 2, "view_size": 96, "elevation": 60.0}},
}  # fmt: skip
# Just outside each boundary: 422 at POST.
REFUSED: dict[str, list[Any]] = {
    "steps": [0, 4, 101],
    "edit_steps": [0, 4],
    "guidance": [-0.1, 30.5],
    "edit_guidance": [-0.1, 30.5],
    "size": [48, 72, 112, 2064],
    "texture_size": [255, 513],
    "views": [-1, 3],
    "view_size": [63, 97],
    "seed": [-1, MAX_SEED + 1],
    "engine_3d": ["blender"],
    "lora": [{"scale": -0.1}, {"scale": 2.1}, {"name": "nope"}],
    "title": ["T" * 81],
    "request": ["", "   ", _text(MAX_REQUEST_CHARS + 1)],
    "base_prompt": ["A single cup, " + "y" * 587],
    "edit_prompt": ["Alch3mist, tin " + "y" * 586, "tin " + "y" * 590],  # 601; 594 + the trigger word in front
    "image": [_png(63, 64), _png(4097, 64), _png(4096, 64), _png(160, 64), "not base64!"],
    "parent": ["f" * 32, "../x"],
    "user": ["u" * 201],
    "rewrite_reply": ["x" * 20_001],
    "mesh": ["not base64!", base64.b64encode(b"hello, not a mesh").decode(), _png(64, 64)],
    "mesh_filename": ["m" * 256, "chair.glb"],  # too long; without a mesh
    "decimate": [True, "maybe"],  # without a mesh; not a boolean
    "reference_image": [_png(64, 64), "not base64!"],  # without a mesh; not an image
    "texture_engine": ["blender", "trellis2"],  # unknown; not configured here
    "texture": [
        {"views": 1},
        {"views": 3},
        {"view_size": 63},
        {"view_size": 97},
        {"elevation": 60.5},
        {"camera": "fisheye"},
        {"delight": "maybe"},
    ],
}


def test_every_field_has_boundaries_here(strict: BackendProcess) -> None:
    """A new JobCreate field must be added to this walk: the live schema's fields are all covered."""
    schema = httpx.get(f"{strict.base_url}/openapi.json").json()["components"]["schemas"]["JobCreate"]
    covered = set(REFUSED) | {field for job in ACCEPTED.values() for field in job}
    assert set(schema["properties"]) <= covered, set(schema["properties"]) - covered


@pytest.mark.parametrize("field", sorted(REFUSED))
def test_just_outside_each_boundary_is_422_at_post(strict: BackendProcess, field: str) -> None:
    with strict.client(API_KEYS["tool"]) as client:
        for value in REFUSED[field]:
            body = {**BASE, field: value}
            if field in ("base_prompt", "edit_prompt"):
                prompts = {"request": None, "base_prompt": "A single cup", "edit_prompt": "Alch3mist, tin"}
                body = {**BASE, **prompts, field: value}
            response = client.post("/v1/jobs", json={k: v for k, v in body.items() if v is not None})
            assert response.status_code == 422, (field, str(value)[:80], response.text)


def test_every_job_accepted_at_a_boundary_finishes(strict: BackendProcess) -> None:
    """One after the other (the queue holds 6): POST accepts it, and it ends "succeeded", never failed."""
    finished: dict[str, Any] = {}
    with strict.client(API_KEYS["tool"], user="walker") as walker:
        parent = wait_for(walker, _post(walker, request="a cup of tin").json()["id"])
        own_parent = {"request": None, "parent": parent["id"], "edit_prompt": "Alch3mist, gold"}
        for name, fields in {**ACCEPTED, "own parent": own_parent}.items():
            body = {k: v for k, v in {**BASE, **fields}.items() if v is not None}
            with strict.client(API_KEYS["tool"], user=body.get("user", "walker")) as client:
                response = client.post("/v1/jobs", json=body)
                assert response.status_code == 202, (name, response.text)
                finished[name] = wait_for(client, response.json()["id"], timeout=600)
    failed = {name: job["error"] for name, job in finished.items() if job["status"] != "succeeded"}
    assert not failed, failed
    assert any("rewrite model gave no usable prompt" in w for w in finished["an unusable rewrite reply"]["warnings"])
    assert finished["a rewrite reply"]["prompt"]["title"] == "Tin cup"
