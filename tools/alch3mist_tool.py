"""
title: Alch3mist 3D asset
author: material-alch3mist
author_url: https://github.com/material-alch3mist/material-alch3mist
version: 0.2.0
required_open_webui_version: 0.12.4
requirements:
licence: Apache-2.0
description: Lets any model make a material-textured 3D asset (GLB) from a description, or texture a given mesh (an
  attached file or a link), shown in the chat as an interactive 3D viewer. Runs on the Alch3mist backend.
"""

# One self-contained file: Open WebUI exec()s it. Every public method of Tools becomes a tool the model can call, so
# Tools has exactly one; helpers live at module level. No `from __future__ import annotations`: Open WebUI builds
# the tool spec from these annotations with typing.get_type_hints after the module is gone from sys.modules.

import asyncio
import base64
import contextlib
import html
import ipaddress
import json
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field

log = logging.getLogger(__name__)

EventEmitter = Callable[[dict[str, Any]], Awaitable[None]] | None

# Copied from alch3mist.domain.STAGE_LABELS
STAGE_LABELS = {
    "rewrite": "Writing the prompts",
    "base_image": "Painting the base image (FLUX.1-dev)",
    "material_edit": "Applying the material (FLUX.1 Kontext + Alch3mist LoRA)",
    "mesh": "Building the 3D mesh",
    "texture": "Texturing the mesh (FLUX.1 Kontext + Alch3mist LoRA on a grid of views)",
    "views": "Rendering the views",
    "viewer": "Preparing the 3D viewer",
}
TERMINAL = ("succeeded", "failed", "cancelled")
MESH_SUFFIXES = (".glb", ".gltf", ".obj", ".ply")
MAX_REDIRECTS = 3


class MeshUnavailable(Exception):
    """A mesh link or attachment that cannot be fetched; the message says why, for the model to tell the user."""


async def emit_status(emitter: EventEmitter, description: str, done: bool = False) -> None:
    """Show a status line above the message (no-op when Open WebUI gave no event emitter)."""
    if emitter:
        await emitter({"type": "status", "data": {"description": description, "done": done, "hidden": False}})


def rebase(url: str | None, base: str) -> str | None:
    """Put ``url``'s path and query onto ``base``; None stays None, an empty base keeps the URL."""
    if not url or not base:
        return url
    b, u = urlsplit(base.rstrip("/")), urlsplit(url)
    return urlunsplit((b.scheme, b.netloc, b.path + u.path, u.query, ""))


def error_text(response: httpx.Response) -> str:
    """The backend's ``{error: {code, message}}`` as one line."""
    with contextlib.suppress(ValueError, AttributeError, TypeError, KeyError):
        return f"{response.json()['error']['message']} ({response.json()['error']['code']})"
    return f"HTTP {response.status_code}"


async def checked_address(host: str, port: int, allowed_hosts: set[str]) -> str:
    """One address of ``host`` to connect to, after refusing names that resolve to a loopback, private, link-local
    or otherwise non-public address (unless the admin allowed the host by name)."""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise MeshUnavailable(f"the host {host!r} cannot be resolved ({exc})") from exc
    addresses = sorted({str(info[4][0]) for info in infos})
    local = [a for a in addresses if not ipaddress.ip_address(a.split("%")[0]).is_global]
    if local and host.lower() not in allowed_hosts:
        raise MeshUnavailable(f"{host} is a local or private address ({local[0]}); only public hosts are fetched")
    return addresses[0]


async def fetch_mesh(url: str, max_bytes: int, allowed_hosts: set[str]) -> tuple[bytes, str]:
    """GET a mesh file from a public http(s) URL: every hop's address is checked before connecting, the connection
    goes to that checked address (no second DNS answer can differ), redirects are followed by hand (at most
    MAX_REDIRECTS, each checked again) and the body is cut off above ``max_bytes``. Returns (bytes, file name)."""
    for _ in range(MAX_REDIRECTS + 1):
        parts = urlsplit(url.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise MeshUnavailable("mesh_url must be an http:// or https:// link")
        if parts.username or parts.password:
            raise MeshUnavailable("mesh_url must not carry a user name or password")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        address = await checked_address(parts.hostname, port, allowed_hosts)
        netloc = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
        target = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
        tls = {"sni_hostname": parts.hostname} if parts.scheme == "https" else {}  # SNI + certificate for the name
        async with (
            httpx.AsyncClient(follow_redirects=False, trust_env=False) as client,
            client.stream("GET", target, headers={"Host": parts.netloc}, extensions=tls) as response,
        ):
            if response.is_redirect and response.headers.get("location"):
                url = urljoin(url, response.headers["location"])
                continue
            if response.status_code != 200:
                raise MeshUnavailable(f"mesh_url answered HTTP {response.status_code}")
            data = bytearray()
            async for chunk in response.aiter_bytes():
                data += chunk
                if len(data) > max_bytes:
                    raise MeshUnavailable(f"the mesh at mesh_url is larger than {max_bytes // 2**20} MB")
            return bytes(data), PurePosixPath(parts.path).name or "mesh"
    raise MeshUnavailable(f"mesh_url redirects more than {MAX_REDIRECTS} times")


async def attached_mesh(files: list[dict[str, Any]], user_id: Any, max_bytes: int) -> tuple[bytes, str] | None:
    """The first mesh file attached to the chat, read from Open WebUI's file store (as its files router reads it),
    only when it is this user's; None when there is none."""
    item = next((f for f in files if str(f.get("name") or "").lower().endswith(MESH_SUFFIXES)), None)
    if item is None:
        return None
    try:
        from open_webui.models.files import Files
        from open_webui.storage.provider import Storage
    except ImportError as exc:
        raise MeshUnavailable("attached files can only be read inside Open WebUI") from exc
    record = await Files.get_file_by_id(str(item.get("id") or (item.get("file") or {}).get("id") or ""))
    if record is None or record.user_id != user_id or not record.path:
        raise MeshUnavailable(f"the attached {item['name']} is not in this user's files")
    path = Path(await asyncio.to_thread(Storage.get_file, record.path))
    if path.stat().st_size > max_bytes:
        raise MeshUnavailable(f"the attached {item['name']} is larger than {max_bytes // 2**20} MB")
    return await asyncio.to_thread(path.read_bytes), str(item["name"])


def url_mode_page(viewer_url: str, images: list[tuple[str, str]], title: str) -> str:
    """A small page for URL mode: the images and the backend's viewer in an iframe (everything escaped)."""
    figures = "".join(
        f'<figure><img src="{html.escape(src)}" alt="{html.escape(caption)}"><figcaption>{html.escape(caption)}'
        "</figcaption></figure>"
        for caption, src in images
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><style>body{margin:0;font:14px system-ui,sans-serif}"
        "figure{display:inline-block;margin:4px;max-width:48%}img{max-width:100%;border-radius:6px}"
        "iframe{width:100%;height:420px;border:0;border-radius:8px}</style></head><body>"
        f"<h3>{html.escape(title)}</h3>{figures}"
        f'<iframe src="{html.escape(viewer_url)}" title="3D viewer" allow="fullscreen"></iframe>'
        "<script>function h(){parent.postMessage({type:'iframe:height',height:document.body.scrollHeight+8},'*')}"
        "window.addEventListener('load',h);new ResizeObserver(h).observe(document.body);</script></body></html>"
    )


class Tools:
    class Valves(BaseModel):
        BACKEND_URL: str = Field(
            "http://127.0.0.1:8765", description="Where Open WebUI's server reaches the Alch3mist backend."
        )
        BACKEND_API_KEY: str = Field(
            "",
            description="API key for the backend (one of its ALCH3MIST_API_KEYS). Empty = no key.",
            json_schema_extra={"input": {"type": "password"}},
        )
        PUBLIC_BACKEND_URL: str = Field(
            "",
            description="How browsers reach the backend. Set: the viewer loads from it (URL mode). Empty: a "
            "self-contained viewer page (~1 MB) is embedded.",
        )
        DEFAULT_ENGINE_3D: str = Field(
            "default", description="Image-to-3D engine, one of GET /v1/info's engines; 'default' = the backend's."
        )
        TEXTURE_ENGINE: str = Field(
            "default", description="Texture engine for meshes, one of GET /v1/info's texture_engines; 'default' = its."
        )
        DEFAULT_VIEWS: int = Field(8, ge=0, le=36, description="Number of multiview renders (0 = none).")
        DEFAULT_STEPS: int = Field(0, ge=0, le=100, description="FLUX.1-dev steps; 0 = the backend's default.")
        DEFAULT_EDIT_STEPS: int = Field(0, ge=0, le=100, description="FLUX.1 Kontext steps; 0 = backend default.")
        DEFAULT_SIZE: int = Field(0, ge=0, le=2048, description="Base image side in pixels; 0 = backend default.")
        DEFAULT_TEXTURE_SIZE: int = Field(0, ge=0, le=4096, description="Texture side; 0 = backend default.")
        DEFAULT_VIEW_SIZE: int = Field(
            0, ge=0, le=2048, description="Side of each view in pixels; 0 = backend default."
        )
        CONNECT_TIMEOUT: float = Field(10.0, gt=0, description="Seconds to wait for the backend to answer a call.")
        JOB_TIMEOUT: int = Field(1800, gt=0, description="Seconds a generation may take before it is cancelled.")
        STATUS_EVERY: float = Field(10.0, gt=0, description="While nothing changes, re-announce the status every N s.")
        MESH_MAX_MB: int = Field(64, gt=0, description="Largest mesh fetched from a link or read from an attachment.")
        MESH_URL_TIMEOUT: float = Field(30.0, gt=0, description="Seconds a mesh link may take to download.")
        MESH_URL_ALLOWED_HOSTS: str = Field(
            "",
            description="Comma-separated host names fetched even on private addresses (e.g. an intranet asset "
            "server). Empty: only hosts on public addresses (never loopback, private or link-local).",
        )

    class UserValves(BaseModel):
        engine_3d: str = Field("default", description="Your image-to-3D engine ('default' = the admin's choice).")
        views: int = Field(-1, ge=-1, le=36, description="Your number of views (-1 = the admin's default).")

    def __init__(self) -> None:
        self.valves = self.Valves()

    async def generate_3d_asset(
        self,
        request: str,
        seed: int = -1,
        mesh_url: str = "",
        __user__: dict[str, Any] | None = None,
        __event_emitter__: EventEmitter = None,
        __files__: list[dict[str, Any]] | None = None,
    ) -> Any:
        """
        Make a 3D model of an object with a chosen material or texture, e.g. "a chair made of crocodile leather" or
        "a cow with a flaming mane", and show it to the user in an interactive 3D viewer. Takes one to a few minutes.
        It also paints a 3D model the user gives (an attached .glb/.gltf/.obj/.ply file, or a link) with a material.
        :param request: What to make: the object and its material/texture, in the user's words (any language); for a
            given mesh, the material to paint it with.
        :param seed: Random seed for a reproducible result; -1 picks one at random.
        :param mesh_url: A public http(s) link to a mesh file (GLB, glTF, OBJ or PLY) to paint instead of making a new
            object; empty when the user gave none (an attached mesh file is used without it).
        """
        v = self.valves
        user = __user__ or {}
        uv = user.get("valves")
        views = getattr(uv, "views", -1)
        engine = getattr(uv, "engine_3d", "default") or "default"
        engine = v.DEFAULT_ENGINE_3D if engine == "default" else engine
        job: dict[str, Any] = {"request": " ".join(str(request).split())[:2000]}
        for key, value in (
            ("views", v.DEFAULT_VIEWS if views is None or views < 0 else views),
            ("engine_3d", "" if engine == "default" else engine),
            ("texture_engine", "" if v.TEXTURE_ENGINE == "default" else v.TEXTURE_ENGINE),
            ("steps", v.DEFAULT_STEPS),
            ("edit_steps", v.DEFAULT_EDIT_STEPS),
            ("size", v.DEFAULT_SIZE and max(64, v.DEFAULT_SIZE // 16 * 16)),
            ("texture_size", v.DEFAULT_TEXTURE_SIZE),
            ("view_size", v.DEFAULT_VIEW_SIZE),
            ("seed", seed if isinstance(seed, int) and 0 <= seed < 2**31 else None),  # the backend's seeds are int32
        ):
            if value or (key in ("views", "seed") and value == 0):
                job[key] = value
        if not job["request"]:
            return "No request given: pass what to make, e.g. 'a chair made of crocodile leather'."
        try:
            mesh = await self._given_mesh(mesh_url, __files__ or [], user.get("id"), __event_emitter__)
        except (MeshUnavailable, httpx.HTTPError, OSError) as exc:
            await emit_status(__event_emitter__, "The mesh could not be used", done=True)
            why = str(exc) or type(exc).__name__
            return f"The mesh could not be used: {why}. Nothing was made; tell the user why."
        if mesh is not None:
            job |= {"mesh": base64.b64encode(mesh[0]).decode(), "mesh_filename": mesh[1]}

        backend = v.BACKEND_URL.rstrip("/")
        # The end user this key vouches for: the Open WebUI user's opaque id, never an e-mail or a name.
        headers = {"X-Alch3mist-User": str(user.get("id") or "")[:200]}
        if v.BACKEND_API_KEY:
            headers["Authorization"] = f"Bearer {v.BACKEND_API_KEY}"
        timeout = httpx.Timeout(v.CONNECT_TIMEOUT, read=max(v.CONNECT_TIMEOUT, 30.0))
        async with httpx.AsyncClient(base_url=backend, headers=headers, timeout=timeout) as client:
            # 1. Submit.
            await emit_status(__event_emitter__, "Sending the job to the Alch3mist backend…")
            try:
                ceiling = (await client.get("/v1/limits")).json().get("max_views")  # the backend's, for this key
                job["views"] = min(job["views"], ceiling) if isinstance(ceiling, int) else job["views"]
                response = await client.post("/v1/jobs", json=job)
            except (httpx.HTTPError, ValueError) as exc:
                await emit_status(__event_emitter__, "The Alch3mist backend is not reachable", done=True)
                return (
                    f"The Alch3mist backend at {backend} is not reachable ({type(exc).__name__}). Tell the user that "
                    "the 3D service is down and an admin should start it or fix the tool's BACKEND_URL valve."
                )
            if response.status_code not in (200, 202):
                await emit_status(__event_emitter__, "The backend refused the job", done=True)
                return f"The Alch3mist backend refused the job: {error_text(response)}."
            job_id = response.json()["id"]

            # 2. Follow it: status lines from polling the job (simple and robust for a tool call).
            try:
                final = await self._wait(client, job_id, __event_emitter__)
            except asyncio.CancelledError:
                with contextlib.suppress(Exception):
                    await asyncio.shield(client.delete(f"/v1/jobs/{job_id}"))
                raise
            if final is None:
                with contextlib.suppress(httpx.HTTPError):
                    await client.delete(f"/v1/jobs/{job_id}")
                await emit_status(__event_emitter__, "Timed out", done=True)
                return f"The 3D generation timed out after {v.JOB_TIMEOUT} s and was cancelled (job {job_id})."

            # 3. The embed and the context for the model.
            artifacts = final.get("artifacts") or {}
            prompt = final.get("prompt") or {}
            if final.get("status") != "succeeded" and not artifacts.get("glb"):
                err = final.get("error") or {}
                await emit_status(__event_emitter__, "The generation failed", done=True)
                return (
                    f"The 3D generation failed at stage {err.get('stage') or final.get('stage')}: "
                    f"{err.get('message') or final.get('status')} (job {job_id})."
                )
            page = await self._viewer_page(client, final)
            await emit_status(__event_emitter__, "Done", done=True)
            context = {
                "status": final.get("status"),
                "textured_a_given_mesh": "mesh" in job,
                "shown_to_user": "an interactive 3D viewer of the textured model"
                + (" and the textured image and views" if self.valves.PUBLIC_BACKEND_URL.strip() else ""),
                "title": prompt.get("title"),
                "base_prompt": prompt.get("base_prompt"),
                "material_prompt": prompt.get("edit_prompt"),
                "seed": final.get("seed"),
                "engine_3d": final.get("engine_3d"),
                "engine_is_preview": final.get("engine_3d") == "preview",
                "lora": final.get("lora"),
                "glb_download": rebase(artifacts.get("glb"), v.PUBLIC_BACKEND_URL),
                "job_id": job_id,
                "warnings": final.get("warnings") or [],
                "instructions": "Briefly tell the user what was made (title, material, seed). The viewer is already "
                "visible: do not paste image links.",
            }
            if page is None:
                return json.dumps({**context, "shown_to_user": "nothing: the viewer page could not be loaded"})
            return HTMLResponse(content=page, headers={"Content-Disposition": "inline"}), json.dumps(context)

    async def _given_mesh(
        self, mesh_url: str, files: list[dict[str, Any]], user_id: Any, emitter: EventEmitter
    ) -> tuple[bytes, str] | None:
        """The mesh to paint: the one at ``mesh_url``, else one attached to the chat, else None."""
        v, max_bytes = self.valves, self.valves.MESH_MAX_MB * 2**20
        if mesh_url.strip():
            await emit_status(emitter, "Downloading the mesh…")
            allowed = {h.strip().lower() for h in v.MESH_URL_ALLOWED_HOSTS.split(",") if h.strip()}
            try:
                return await asyncio.wait_for(fetch_mesh(mesh_url, max_bytes, allowed), v.MESH_URL_TIMEOUT)
            except TimeoutError as exc:
                raise MeshUnavailable(f"mesh_url did not download within {v.MESH_URL_TIMEOUT:g} s") from exc
        return await attached_mesh(files, user_id, max_bytes)

    async def _wait(self, client: httpx.AsyncClient, job_id: str, emitter: EventEmitter) -> dict[str, Any] | None:
        """Poll the job until it ends, announcing stage, progress and queue position; None on timeout."""
        v = self.valves
        deadline = time.monotonic() + v.JOB_TIMEOUT
        last, last_said, errors = "", 0.0, 0
        while time.monotonic() < deadline:
            try:
                response = await client.get(f"/v1/jobs/{job_id}")
                state = response.json()
                errors = 0
            except (httpx.HTTPError, ValueError) as exc:
                errors += 1
                if errors >= 5:
                    lost = f"lost contact with the backend: {exc}"
                    return {"status": "failed", "error": {"message": lost, "stage": None}}
                await asyncio.sleep(2.0)
                continue
            status = state.get("status")
            if status in TERMINAL:
                return state
            if status == "queued":
                position = state.get("queue_position")
                line = f"Queued — position {position} in line" if position else "Queued"
            else:
                stage = state.get("stage") or ""
                line = f"{STAGE_LABELS.get(stage, stage or 'Working')} — {round(100 * (state.get('progress') or 0))}%"
            now = time.monotonic()
            if line != last or now - last_said >= v.STATUS_EVERY:
                await emit_status(emitter, line)
                last, last_said = line, now
            await asyncio.sleep(1.0)
        return None

    async def _viewer_page(self, client: httpx.AsyncClient, job: dict[str, Any]) -> str | None:
        """URL mode: a small page framing the backend's viewer; else the backend's self-contained page."""
        v = self.valves
        artifacts = job.get("artifacts") or {}
        links = job.get("links") or {}
        if v.PUBLIC_BACKEND_URL.strip() and (artifacts.get("viewer") or links.get("viewer")):
            viewer = rebase(artifacts.get("viewer") or links.get("viewer"), v.PUBLIC_BACKEND_URL) or ""
            images = [
                (caption, rebase(artifacts[name], v.PUBLIC_BACKEND_URL) or "")
                for caption, name in (
                    ("Material applied", "textured_image"),
                    ("UV texture", "texture_map"),
                    ("Views", "contact_sheet"),
                )
                if artifacts.get(name)
            ]
            return url_mode_page(viewer, images, (job.get("prompt") or {}).get("title") or "Your 3D asset")
        inline = links.get("viewer_inline") or f"/v1/jobs/{job.get('id')}/viewer?inline=1"
        inline = rebase(inline, v.BACKEND_URL) if inline.startswith("http") else inline
        try:
            response = await client.get(inline, timeout=httpx.Timeout(v.CONNECT_TIMEOUT, read=120.0))
        except httpx.HTTPError as exc:
            log.warning("alch3mist tool: viewer page of %s unavailable: %s", job.get("id"), exc)
            return None
        if response.status_code != 200:
            log.warning("alch3mist tool: viewer page of %s: %s", job.get("id"), error_text(response))
            return None
        return response.text
