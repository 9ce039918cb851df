"""The pipe with a mesh attached, standalone against a real backend process: the mesh is read from the (stand-in) file
store, sent as ``mesh`` and retextured; what cannot be read or textured is said in the chat, and nothing is made."""

from __future__ import annotations

import asyncio
import base64
import io
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
import trimesh
from PIL import Image

from tests.integration.conftest import BackendProcess
from tests.pipelines.conftest import Events
from tests.pipelines.openwebui_files import FileStore, install
from tests.pipelines.test_pipe_standalone import MODULE, make_pipe

JOB_MARKER = re.compile(r"`alch3mist job ([0-9a-f]+)`")
LINK = re.compile(r"!\[(\w+)\]\((http[^)]+)\)")


@pytest.fixture()
def store(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FileStore:
    return install(monkeypatch, tmp_path)


def run(
    pipe: Any, text: str, files: list[dict[str, Any]], events: Events | None = None, content: Any = None, **extra: Any
) -> str:
    user = {"id": "u1", "role": "user", "valves": MODULE.Pipe.UserValves(seed=7)}
    body = {"model": "alch3mist", "messages": [{"role": "user", "content": content or text}]}

    async def go() -> str:
        result = await pipe.pipe(body, __user__=user, __event_emitter__=events, __files__=files, **extra)
        return result if isinstance(result, str) else "".join([chunk async for chunk in result])

    return asyncio.run(go()).replace("\\", "")


def box_glb() -> bytes:
    return bytes(trimesh.creation.box(extents=(1.0, 0.6, 0.4)).export(file_type="glb"))


def test_an_attached_glb_is_retextured_with_views_uv_texture_and_viewer(
    e2e_backend: BackendProcess, store: FileStore
) -> None:
    events = Events()
    item = store.attach("u1", "chair.glb", box_glb())
    content = run(make_pipe(e2e_backend), "Alch3mist, make this chair crocodile leather", [item], events)

    links = dict(LINK.findall(content))
    assert set(links) == {"texture_map", "contact_sheet"}, content  # no base image or material edit: the mesh's
    for url in links.values():
        assert httpx.get(url).headers["content-type"].startswith("image/")
    embeds = events.of("embeds")
    assert len(embeds) == 1 and "model-viewer" in embeds[0]["embeds"][0]
    statuses = [s["description"] for s in events.of("status")]
    assert any(s.startswith("Texturing the mesh") for s in statuses) and statuses[-1] == "Done", statuses
    with e2e_backend.client(user="u1") as owner:
        job = owner.get(f"/v1/jobs/{JOB_MARKER.search(content).group(1)}").json()  # type: ignore[union-attr]
    assert job["status"] == "succeeded" and job["manifest"]["flow"] == "retexture"
    assert job["manifest"]["input_mesh"]["format"] == "glb" and job["seed"] == 7


def test_an_attached_obj_with_a_picture_paints_with_the_picture(e2e_backend: BackendProcess, store: FileStore) -> None:
    obj = trimesh.creation.torus(0.6, 0.25, major_sections=16, minor_sections=8).export(file_type="obj")
    item = store.attach("u1", "ring.OBJ", str(obj).encode())
    picture = io.BytesIO()
    Image.new("RGB", (96, 96), (30, 120, 60)).save(picture, format="PNG")
    url = "data:image/png;base64," + base64.b64encode(picture.getvalue()).decode()
    parts = [{"type": "text", "text": "Alch3mist, jade like this"}, {"type": "image_url", "image_url": {"url": url}}]
    content = run(make_pipe(e2e_backend, DEFAULT_VIEWS=0), "", [item], content=parts)
    with e2e_backend.client(user="u1") as owner:
        job = owner.get(f"/v1/jobs/{JOB_MARKER.search(content).group(1)}").json()  # type: ignore[union-attr]
    assert job["status"] == "succeeded", job["error"]
    assert job["manifest"]["input_mesh"]["format"] == "obj"
    assert job["manifest"]["parameters"]["texture"]["reference_image"] == "given"


def test_a_refinement_paints_the_same_mesh_again(e2e_backend: BackendProcess, store: FileStore) -> None:
    pipe = make_pipe(e2e_backend, DEFAULT_VIEWS=0)
    first = run(pipe, "Alch3mist, make it oak", [store.attach("u1", "box.glb", box_glb())])
    first_id = JOB_MARKER.search(first).group(1)  # type: ignore[union-attr]
    messages = [{"role": "user", "content": "Alch3mist, make it oak"}, {"role": "assistant", "content": first}]
    body = {"model": "alch3mist", "messages": [*messages, {"role": "user", "content": "Alch3mist, same but in gold"}]}
    user = {"id": "u1", "valves": MODULE.Pipe.UserValves(seed=7)}

    async def go() -> str:
        return "".join([chunk async for chunk in await pipe.pipe(body, __user__=user)])

    second = asyncio.run(go())
    with e2e_backend.client(user="u1") as owner:
        job = owner.get(f"/v1/jobs/{JOB_MARKER.search(second).group(1)}").json()  # type: ignore[union-attr]
    assert job["parent"] == first_id and job["manifest"]["flow"] == "retexture", job


def test_another_users_file_is_not_read(e2e_backend: BackendProcess, store: FileStore) -> None:
    item = store.attach("someone-else", "their.glb", box_glb())
    content = run(make_pipe(e2e_backend), "Alch3mist, make it gold", [item])
    assert "The mesh their.glb could not be read (not found in the file store)" in content
    assert "alch3mist job" not in content  # nothing was made instead


def test_outside_open_webui_an_attached_mesh_is_explained(e2e_backend: BackendProcess) -> None:
    item = {"type": "file", "id": "f1", "name": "chair.glb", "file": {"id": "f1", "meta": {"name": "chair.glb"}}}
    content = run(make_pipe(e2e_backend), "Alch3mist, make it gold", [item])
    assert "The mesh chair.glb could not be read (No module named 'open_webui" in content
    assert "alch3mist job" not in content


def test_a_mesh_the_backend_cannot_texture_is_refused_with_its_reason(
    e2e_backend: BackendProcess, store: FileStore
) -> None:
    points = b"ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\nproperty float z\n"
    item = store.attach("u1", "scan.ply", points + b"end_header\n0 0 0\n1 0 0\n0 1 0\n")
    content = run(make_pipe(e2e_backend), "Alch3mist, make it bronze", [item])
    assert "The Alch3mist backend refused the job:" in content and "is a point cloud" in content, content


def test_a_mesh_without_a_material_asks_for_one(store: FileStore) -> None:
    pipe = MODULE.Pipe()
    content = run(pipe, "Alch3mist", [store.attach("u1", "chair.glb", box_glb())])
    assert content.startswith("Tell me what to make after **Alch3mist**")


def test_engines_are_names_the_backend_checks(e2e_backend: BackendProcess) -> None:
    schema = MODULE.Pipe.Valves.model_json_schema()["properties"]
    assert schema["DEFAULT_ENGINE_3D"]["type"] == "string" and "enum" not in schema["DEFAULT_ENGINE_3D"]
    assert MODULE.Pipe.Valves(DEFAULT_ENGINE_3D="hunyuan3d-local", TEXTURE_ENGINE="trellis2")  # no fixed list
    with e2e_backend.client() as client:
        info = client.get("/v1/info").json()
    content = run(make_pipe(e2e_backend, DEFAULT_ENGINE_3D="no-such-engine"), "Alch3mist, a cup of tin", [])
    offered = ", ".join(sorted(engine["name"] for engine in info["engines"]))
    assert f"unknown 3D engine 'no-such-engine'; available: {offered}" in content, content


def test_the_typed_words_count_not_the_file_context_open_webui_adds(
    e2e_backend: BackendProcess, store: FileStore
) -> None:
    """With an embedding model, Open WebUI indexes a text attachment (an OBJ is text) and prepends its RAG template
    with the file's text to the last user message (utils/middleware.py: apply_source_context_to_messages ->
    add_or_update_user_message(..., append=False)); the typed message stays in __metadata__["user_message"]."""
    obj = str(trimesh.creation.torus(0.6, 0.25, major_sections=16, minor_sections=8).export(file_type="obj"))
    typed = "Alch3mist, make it oak"
    rag = f"### Task:\nRespond to the user query using the provided context.\n<context>\n{obj[:4000]}\n</context>\n"
    pipe = make_pipe(e2e_backend, DEFAULT_VIEWS=0)
    metadata = {"user_message": {"role": "user", "content": typed}}
    content = run(pipe, "", [store.attach("u1", "ring.obj", obj.encode())], content=f"{rag}\n{typed}",
                  __metadata__=metadata)  # fmt: skip
    with e2e_backend.client(user="u1") as owner:
        job = owner.get(f"/v1/jobs/{JOB_MARKER.search(content).group(1)}").json()  # type: ignore[union-attr]
    assert job["status"] == "succeeded" and job["manifest"]["flow"] == "retexture", content
    # The control: the same message read from the messages alone is the template and the file, not a request.
    control = run(pipe, "", [store.attach("u1", "ring.obj", obj.encode())], content=f"{rag}\n{typed}")
    assert "The Alch3mist backend refused the job" in control and "alch3mist job" not in control, control
