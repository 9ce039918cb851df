"""Meshes through the jobs API on a real backend process (tiny preset): ``mesh`` in ``POST /v1/jobs`` runs the chain's
retexture flow; every mesh that cannot be textured is refused at POST with its own message (422, or 413 over a limit);
``parent`` of a mesh job paints the same mesh again; another owner's mesh job is 404; a queued mesh job survives a
restart. The backend runs with small mesh limits so the over-limit files stay small."""

from __future__ import annotations

import base64
import io
import json
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import trimesh
from numpy.typing import NDArray
from PIL import Image

from .conftest import BackendProcess, read_events, submit, wait_for

MAX_FACES = 5000
MAX_BYTES = 400_000
MESH_JOB: dict[str, Any] = {"texture": {"views": 2, "view_size": 64}, "views": 2, "view_size": 64}


@pytest.fixture(scope="module")
def meshes_backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackendProcess]:
    root = tmp_path_factory.mktemp("mesh-backend")
    server = BackendProcess(
        root / "data",
        root / "backend.log",
        ALCH3MIST_MESH_MAX_FACES=str(MAX_FACES),
        ALCH3MIST_MESH_MAX_BYTES=str(MAX_BYTES),
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def box_glb() -> bytes:
    """A box far from the origin and 100× too big, with UVs: the job must normalise it."""
    box = trimesh.creation.box(extents=(200.0, 100.0, 50.0))
    box.apply_translation((1000.0, 0.0, -500.0))
    return bytes(box.export(file_type="glb"))


def sphere_glb() -> bytes:
    return bytes(trimesh.creation.icosphere(subdivisions=2, radius=0.4).export(file_type="glb"))


def torus_obj() -> bytes:
    return str(trimesh.creation.torus(0.6, 0.25, major_sections=24, minor_sections=12).export(file_type="obj")).encode()


def normalised_bounds(mesh: trimesh.Trimesh) -> NDArray[np.float64]:
    """What load_mesh does to the frame: centred on the origin, longest side 1 (y already up here)."""
    bounds = np.asarray(mesh.bounds, dtype=np.float64)
    lower, upper = bounds
    normalised: NDArray[np.float64] = (bounds - (lower + upper) / 2) / np.max(upper - lower)
    return normalised


def read_glb(data: bytes) -> tuple[trimesh.Trimesh, dict[str, Any]]:
    scene = trimesh.load(io.BytesIO(data), file_type="glb", force="scene")
    assert isinstance(scene, trimesh.Scene)
    mesh = scene.to_geometry()
    assert isinstance(mesh, trimesh.Trimesh)
    (length,) = struct.unpack_from("<I", data, 12)
    return mesh, json.loads(data[20 : 20 + length])


def submit_mesh(client: httpx.Client, mesh: bytes, **fields: Any) -> Any:
    return submit(client, mesh=b64(mesh), **{**MESH_JOB, **fields})


@pytest.mark.parametrize(
    ("name", "make", "filename"),
    [("box", box_glb, "box.glb"), ("sphere", sphere_glb, None), ("torus", torus_obj, "torus.obj")],
)
def test_a_mesh_is_retextured_end_to_end(
    meshes_backend: BackendProcess, name: str, make: Any, filename: str | None
) -> None:
    source = make()
    with meshes_backend.client(user="ana") as client:
        created = submit_mesh(client, source, request="make it crocodile leather", mesh_filename=filename)
        events = read_events(client, created["id"])
        job = client.get(f"/v1/jobs/{created['id']}").json()
        assert job["status"] == "succeeded", (job["error"], meshes_backend.log_tail())
        stages = [e["stage"] for e in events if e["event"] == "stage"]
        assert "texture" in stages and not {"base_image", "material_edit", "mesh"} & set(stages)
        artifacts = job["artifacts"]
        assert artifacts["base_image"] is None and artifacts["textured_image"] is None
        assert len(artifacts["views"]) == 2 and artifacts["viewer"] and artifacts["texture_map"]
        output = client.get(artifacts["glb"]).content
        texture = Image.open(io.BytesIO(client.get(artifacts["texture_map"]).content))
        files = set(job["manifest"]["artifacts"])

    assert texture.size == (256, 256) and job["engine_3d"] is None  # no 3D engine ran
    assert "- **Mesh:** your " in job["summary"] and "3D engine" not in job["summary"]
    assert "texture_views/edited_grid.png" in files and not any(f.startswith("input_mesh") for f in files)
    manifest = job["manifest"]
    assert manifest["flow"] == "retexture" and manifest["input_mesh"]["format"] == ("obj" if name == "torus" else "glb")
    textured, document = read_glb(output)
    material = document["materials"][0]["pbrMetallicRoughness"]
    assert "baseColorTexture" in material and document["images"]
    original = trimesh.load(io.BytesIO(source), file_type=manifest["input_mesh"]["format"], force="mesh")
    assert isinstance(original, trimesh.Trimesh)
    # The texture stage keeps the surface: the same triangles in the product's frame (UV seams may split vertices).
    assert len(textured.faces) == len(original.faces)
    np.testing.assert_allclose(textured.bounds, normalised_bounds(original), atol=1e-4)
    assert len(textured.vertices) >= len(np.unique(original.vertices, axis=0))


def test_a_mesh_with_a_reference_image_and_a_texture_engine(meshes_backend: BackendProcess) -> None:
    picture = io.BytesIO()
    Image.new("RGB", (96, 96), (120, 80, 40)).save(picture, format="PNG")
    with meshes_backend.client() as client:
        created = submit_mesh(
            client, sphere_glb(), request="make it bronze", reference_image=b64(picture.getvalue()),
            texture_engine="alch3mist",
        )  # fmt: skip
        job = wait_for(client, created["id"])
    assert job["status"] == "succeeded", job["error"]
    texture = job["manifest"]["parameters"]["texture"]
    assert texture["reference_image"] == "given" and texture["engine"] == "alch3mist"
    assert job["manifest"]["texture"]["metallic"] > 0.5  # bronze is a metal in the PBR table


def test_a_parent_mesh_job_gives_its_mesh_to_the_child(meshes_backend: BackendProcess) -> None:
    with meshes_backend.client(user="ana") as client:
        parent = wait_for(client, submit_mesh(client, torus_obj(), request="make it jade", seed=11)["id"])
        child = wait_for(
            client, submit(client, **MESH_JOB, request="now make it rusty iron", parent=parent["id"], seed=None)["id"]
        )
        with_mesh = client.post("/v1/jobs", json={"request": "x", "parent": parent["id"], "mesh": b64(torus_obj())})

    assert parent["status"] == "succeeded" and child["status"] == "succeeded", child["error"]
    assert child["parent"] == parent["id"] and child["seed"] == 11
    assert child["manifest"]["flow"] == "retexture"
    assert child["manifest"]["input_mesh"] == parent["manifest"]["input_mesh"]
    assert with_mesh.status_code == 422 and "either mesh or parent" in with_mesh.json()["error"]["message"]


def test_another_owners_mesh_job_is_not_found(meshes_backend: BackendProcess) -> None:
    with meshes_backend.client(user="ana") as ana:
        job = wait_for(ana, submit_mesh(ana, sphere_glb(), request="make it gold")["id"])
    with meshes_backend.client(user="bob") as bob:
        assert bob.get(f"/v1/jobs/{job['id']}").status_code == 404
        refine = bob.post("/v1/jobs", json={**MESH_JOB, "request": "make it lead", "parent": job["id"]})
        assert refine.status_code == 422 and "no job with id" in refine.json()["error"]["message"]


def _glb_without_geometry() -> bytes:
    document = json.dumps({"asset": {"version": "2.0"}, "nodes": [{"name": "empty"}], "scenes": [{"nodes": [0]}]})
    payload = document.encode() + b" " * (-len(document) % 4)
    chunk = struct.pack("<II", len(payload), 0x4E4F534A) + payload
    return b"glTF" + struct.pack("<II", 2, 12 + len(chunk)) + chunk


POINT_CLOUD = b"ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\nproperty float z\n" + (
    b"end_header\n0 0 0\n1 0 0\n0 1 0\n"
)
BAD_MESHES: list[tuple[str, dict[str, Any], int, str]] = [
    ("not base64", {"mesh": "this is %% not base64"}, 422, "mesh: not valid base64"),
    ("empty", {"mesh": ""}, 422, "mesh: empty"),
    ("an image", {"mesh": b64(b"\x89PNG\r\n\x1a\n" + bytes(200)), "mesh_filename": "photo.png"}, 422, "not a mesh"),
    ("no geometry", {"mesh": b64(_glb_without_geometry())}, 422, "holds no geometry"),
    ("a point cloud", {"mesh": b64(POINT_CLOUD)}, 422, "point cloud"),
    ("a file over the size", {"mesh": b64(b"v 0 0 0\n" * (MAX_BYTES // 8 + 10))}, 413, "largest mesh file accepted"),
    ("too many faces", {"mesh": "SPHERE-7"}, 413, f"the most we texture is {MAX_FACES:,}. Decimate it"),
    ("decimate without a mesh", {"decimate": True}, 422, "decimate: give them with a mesh"),
    ("a reference image without a mesh", {"reference_image": "PNG"}, 422, "reference_image goes with a mesh"),
    ("a mesh and an image", {"mesh": "SPHERE", "image": "PNG"}, 422, "no base image"),
    ("an unknown texture engine", {"mesh": "SPHERE", "texture_engine": "trellis2"}, 422, "not configured here"),
    ("too many texture views", {"mesh": "SPHERE", "texture": {"views": 40}}, 422, "texture.views: must be at most 16"),
]


def _materialise(fields: dict[str, Any]) -> dict[str, Any]:
    picture = io.BytesIO()
    Image.new("RGB", (96, 96), (10, 20, 30)).save(picture, format="PNG")
    named = {
        "SPHERE": b64(sphere_glb()),
        "SPHERE-7": b64(trimesh.creation.icosphere(subdivisions=5).export(file_type="glb")),  # 20,480 faces
        "PNG": b64(picture.getvalue()),
    }
    return {key: named.get(value, value) if isinstance(value, str) else value for key, value in fields.items()}


@pytest.mark.parametrize(("case", "fields", "status", "says"), BAD_MESHES, ids=[case[0] for case in BAD_MESHES])
def test_a_mesh_that_cannot_be_textured_is_refused_at_post(
    meshes_backend: BackendProcess, case: str, fields: dict[str, Any], status: int, says: str
) -> None:
    with meshes_backend.client() as client:
        before = len(client.get("/v1/jobs").json()["jobs"])
        response = client.post("/v1/jobs", json={"request": "make it oak", **MESH_JOB, **_materialise(fields)})
        after = len(client.get("/v1/jobs").json()["jobs"])
    assert response.status_code == status, response.text
    assert says in response.json()["error"]["message"], response.text
    assert after == before, "nothing refused is queued"


def test_a_mesh_over_the_face_limit_is_decimated_when_asked(meshes_backend: BackendProcess) -> None:
    dense = bytes(trimesh.creation.icosphere(subdivisions=5).export(file_type="glb"))  # 20,480 faces
    with meshes_backend.client() as client:
        job = wait_for(client, submit_mesh(client, dense, request="make it marble", decimate=True)["id"])
        output = client.get(job["artifacts"]["glb"]).content if job["artifacts"]["glb"] else b""
    assert job["status"] == "succeeded", job["error"]
    assert any("decimated from 20,480" in note for note in job["manifest"]["input_mesh"]["notes"])
    assert len(read_glb(output)[0].faces) <= MAX_FACES


def test_a_queued_mesh_job_runs_after_a_restart(tmp_path: Path) -> None:
    server = BackendProcess(tmp_path / "data", tmp_path / "backend.log").start()
    try:
        with server.admin() as client:  # the admin key's ceilings allow 100 steps: a job long enough to queue behind
            blocker = submit(client, request="a dragon of obsidian", steps=100)
            wait_for(client, blocker["id"], until=("running",))
            queued = submit_mesh(client, torus_obj(), request="make it copper")
            assert client.get(f"/v1/jobs/{queued['id']}").json()["status"] == "queued"
        server.kill9()
        server.start()
        with server.admin() as client:
            job = wait_for(client, queued["id"])
    finally:
        server.stop()
    assert job["status"] == "succeeded", job["error"]
    assert job["manifest"]["flow"] == "retexture" and job["manifest"]["input_mesh"]["format"] == "obj"
