"""
title: Alch3mist
author: material-alch3mist
author_url: https://github.com/material-alch3mist/material-alch3mist
version: 0.3.0
required_open_webui_version: 0.12.4
requirements:
licence: Apache-2.0
description: Chat model "Alch3mist": ordinary messages go to a base chat model; a message with the trigger word
  becomes a material-textured 3D asset (FLUX.1-dev base image, FLUX.1 Kontext + Alch3mist LoRA material edit,
  image-to-3D GLB, multiview renders, interactive viewer) made by the Alch3mist backend; an attached mesh
  (.glb, .gltf, .obj, .ply) is textured with the material instead.
"""

# One self-contained file: Open WebUI exec()s it, so it imports nothing from the project. Open WebUI's own modules
# are imported inside the functions that need them, so the file also loads (and is tested) outside Open WebUI.
# No `from __future__ import annotations`: Open WebUI and pydantic read these annotations at run time.
# What only Open WebUI can do stays here (the trigger word, its models, its file store, its events); the backend
# carries the rest: the rewrite prompt and its validation, parameter limits, the escaped summary of a job.

import asyncio
import base64
import contextlib
import io
import json
import logging
import re
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from pydantic import BaseModel, Field

log = logging.getLogger(__name__)

EventEmitter = Callable[[dict[str, Any]], Awaitable[None]] | None

MAX_IMAGE_BYTES = 20 * 1024 * 1024
MAX_GLB_UPLOAD_BYTES = 200 * 1024 * 1024
MAX_MESH_BYTES = 64 * 1024 * 1024  # the backend's default ALCH3MIST_MESH_MAX_BYTES; it judges the exact limit
MESH_SUFFIXES = (".glb", ".gltf", ".obj", ".ply")
# Copied from alch3mist.domain.STAGE_LABELS
STAGE_LABELS = {
    "rewrite": "Writing the prompts", "base_image": "Painting the base image (FLUX.1-dev)",
    "material_edit": "Applying the material (FLUX.1 Kontext + Alch3mist LoRA)", "mesh": "Building the 3D mesh",
    "texture": "Texturing the mesh (FLUX.1 Kontext + Alch3mist LoRA on a grid of views)",
    "views": "Rendering the views", "viewer": "Preparing the 3D viewer",
}  # fmt: skip
# Words that mark a message as a refinement of this chat's previous asset ("same thing but in gold").
REFINE_CUES = re.compile(
    r"(?i)\b(same|again|instead|the previous|the last one|this one|that one|make it|now (?:in|with|made)|"
    r"lo mismo|la misma|el mismo|igual|otra vez|ahora (?:en|con|de)|même|pareil|gleiche|selbe|stess[oa])\b"
)
JOB_MARKER = re.compile(r"`alch3mist job ([A-Za-z0-9_-]{4,64})`")
JOB_URL = re.compile(r"/v1/jobs/([A-Za-z0-9_-]{4,64})/")
CAPTIONS = {
    "base_image": "Base image (FLUX.1-dev)", "textured_image": "Material applied (FLUX.1 Kontext + Alch3mist LoRA)",
    "contact_sheet": "Views of the textured 3D model",
}  # fmt: skip
MESH_CAPTIONS = {"texture_map": "UV texture (FLUX.1 Kontext + Alch3mist LoRA, projected)", **CAPTIONS}
# UserValves field -> (JobCreate field, its "unset" value, the backend's ceiling in GET /v1/limits)
USER_OPTIONS = {
    "steps": ("steps", 0, "max_steps"), "guidance": ("guidance", 0.0, None), "size": ("size", 0, "max_size"),
    "texture_size": ("texture_size", 0, "max_texture_size"), "views": ("views", -1, "max_views"),
    "engine_3d": ("engine_3d", "default", None),
}  # fmt: skip


class FileStoreRefused(Exception):
    """Open WebUI's file store refused an artifact (413 too big, 400 storage error); ``link``: the backend's URL."""

    def __init__(self, link: str, reason: str) -> None:
        super().__init__(reason)
        self.link, self.reason = link, reason


async def emit_status(emitter: EventEmitter, description: str, done: bool = False) -> None:
    """Show a status line above the message (no-op when Open WebUI gave no event emitter)."""
    if emitter:
        await emitter({"type": "status", "data": {"description": description, "done": done, "hidden": False}})


# Copied from alch3mist.api.chat.md_text
def md_text(text: Any, limit: int = 2000) -> str:
    """Escape user- or model-written text for Open WebUI's markdown: no HTML, no links, no formatting, no math.

    Backslash escapes (Open WebUI shows them as the literal character) for markdown's and HTML's special characters;
    never for ``(``, ``)`` or ``[``: Open WebUI's KaTeX extension reads ``\\(``, ``\\)`` and ``\\[`` as math.
    An escaped ``]`` is enough to stop a link.
    """
    text = " ".join(str(text).split())[:limit]
    return re.sub(r"([\\`*_{}\]#+!|~<>&$])", r"\\\1", text)


# Copied from alch3mist.api.chat.md_code
def md_code(text: Any) -> str:
    """Text for inside a markdown code span (where backslash escapes do not apply): no backticks, one line."""
    return " ".join(str(text).replace("`", "'").split())[:200]


def message_text(content: Any) -> str:
    """The text of an OpenAI-style message content (a string, or a list of typed parts)."""
    if isinstance(content, list):
        return "\n".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return content if isinstance(content, str) else ""


def message_images(content: Any) -> tuple[list[str], list[str]]:
    """A message's inline PNG/JPEG/WebP data: URLs, sent as they are (the backend checks them); a note per other."""
    usable, notes = [], []
    for part in content if isinstance(content, list) else []:
        is_image = isinstance(part, dict) and part.get("type") in ("image_url", "input_image")
        ref = part.get("image_url") if is_image else ""
        url = ref.get("url") if isinstance(ref, dict) else ref
        if url and re.match(r"data:image/(png|jpeg|webp);base64,", url) and len(url) <= MAX_IMAGE_BYTES * 4 // 3:
            usable.append(url)
        elif url:
            notes.append("An attached image was not used: it is not an inline PNG, JPEG or WebP picture under 20 MB.")
    return usable, notes


def find_trigger(text: str, trigger: str) -> re.Match[str] | None:
    """The trigger word as a whole word, case-insensitive."""
    word = trigger.strip()
    return re.search(rf"(?<![\w]){re.escape(word)}(?![\w])", text, re.IGNORECASE) if word else None


def strip_trigger(text: str, match: re.Match[str]) -> str:
    """The request without the trigger word and the punctuation around it."""
    before = re.sub(r"(?i)\bmaterial\s*$", "", text[: match.start()].rstrip()).rstrip(" ,:;-–—")
    after = text[match.end() :].lstrip(" ,:;-–—!.")
    return " ".join(f"{before} {after}".split())


def previous_job_id(messages: list[dict[str, Any]]) -> str | None:
    """The id of the last Alch3mist job in this conversation, read from earlier assistant messages."""
    for message in reversed(messages[:-1]):
        text = message_text(message.get("content")) if message.get("role") == "assistant" else ""
        if found := JOB_MARKER.findall(text) or JOB_URL.findall(text):
            return str(found[-1])
    return None


def error_text(response: httpx.Response) -> str:
    """The backend's ``{error: {code, message}}`` as one line."""
    with contextlib.suppress(ValueError, AttributeError, TypeError, KeyError):
        return f"{response.json()['error']['message']} ({response.json()['error']['code']})"
    return f"HTTP {response.status_code}"


def rebase(url: str | None, base: str) -> str | None:
    """Put ``url``'s path and query onto ``base`` (scheme, host and path prefix); None stays None."""
    if not url or not base:
        return url
    b, u = urlsplit(base.rstrip("/")), urlsplit(url)
    return urlunsplit((b.scheme, b.netloc, b.path + u.path, u.query, ""))


@dataclass
class Turn:
    """One chat turn's context (per request: never kept on the Pipe, which serves every chat at once)."""

    user: dict[str, Any]  # Open WebUI's __user__: id, role, valves (never sent on: only the id is)
    request: Any  # Open WebUI's FastAPI request; None outside Open WebUI
    emitter: EventEmitter = None
    metadata: dict[str, Any] = field(default_factory=dict)  # chat_id, message_id
    owner: Any = None  # Open WebUI's user record, for its file store
    notes: list[str] = field(default_factory=list)
    mesh: bool = False  # an attached mesh is being textured


async def read_mesh(item: dict[str, Any], name: str, turn: Turn) -> str | None:
    """This user's attached mesh, base64, read as Open WebUI's files router reads it; None + a note if it cannot be."""
    try:
        from open_webui.models.files import Files
        from open_webui.storage.provider import Storage

        record = await Files.get_file_by_id(str(item.get("id") or (item.get("file") or {}).get("id") or ""))
        if record is None or record.user_id != turn.user.get("id") or not record.path:
            raise FileNotFoundError("not found in the file store")
        path = Path(await asyncio.to_thread(Storage.get_file, record.path))
        if path.stat().st_size > MAX_MESH_BYTES:
            raise ValueError(f"it is larger than {MAX_MESH_BYTES // 2**20} MB")
        return base64.b64encode(await asyncio.to_thread(path.read_bytes)).decode()
    except Exception as exc:  # noqa: BLE001 — Open WebUI's storage providers raise their own errors
        turn.notes.append(f"The mesh {md_text(name, 120)} could not be read ({md_text(str(exc), 200)}).")
        return None  # ImportError included: outside Open WebUI there is no file store


def slug(job: dict[str, Any], fallback: str) -> str:
    text = re.sub(r"[^a-z0-9]+", "-", ((job.get("prompt") or {}).get("title") or "").lower()).strip("-")[:48]
    return text or f"alch3mist-{fallback}"


class Pipe:
    class Valves(BaseModel):
        BACKEND_URL: str = Field("http://127.0.0.1:8765", description="Where Open WebUI's server reaches the backend.")
        BACKEND_API_KEY: str = Field(
            "", description="API key for the backend (one of its ALCH3MIST_API_KEYS). Empty = no key.",
            json_schema_extra={"input": {"type": "password"}},
        )  # fmt: skip
        PUBLIC_BACKEND_URL: str = Field(
            "", description="How people's browsers reach the backend, e.g. https://alch3mist.example.com. Set: the 3D "
            "viewer is embedded by URL (small chats). Empty: a self-contained viewer page (~1 MB) is embedded.",
        )  # fmt: skip
        TRIGGER_WORD: str = Field("Alch3mist", description="A message with this word (any case, whole word) makes 3D.")
        REWRITE_MODEL: str = Field(
            "", description="Open WebUI model id that rewrites requests into prompts (the backend supplies the "
            "instructions and checks the answer). Empty or failing: the backend's own rewriter is used.",
        )  # fmt: skip
        BASE_CHAT_MODEL: str = Field("", description="Open WebUI model id that answers ordinary messages (and tasks).")
        BYPASS_ACCESS_CONTROL: bool = Field(
            False, description="Admin only, off by default. On: every user reaches BASE_CHAT_MODEL and REWRITE_MODEL "
            "through Alch3mist even without access to them, and the admin's filter functions (e.g. moderation) are "
            "skipped.",
        )  # fmt: skip
        DEFAULT_STEPS: int = Field(0, ge=0, le=100, description="FLUX.1-dev steps; 0 = the backend's default.")
        DEFAULT_EDIT_STEPS: int = Field(0, ge=0, le=100, description="FLUX.1 Kontext steps; 0 = backend default.")
        DEFAULT_GUIDANCE: float = Field(0.0, ge=0.0, le=30.0, description="Guidance; 0 = the backend's default.")
        DEFAULT_SIZE: int = Field(0, ge=0, le=2048, description="Base image side in pixels; 0 = backend default.")
        DEFAULT_LORA: str = Field("", description="LoRA name in the backend's LoRA folder; empty = its default.")
        DEFAULT_LORA_SCALE: float = Field(1.0, ge=0.0, le=2.0, description="LoRA strength (0 = edit without it).")
        DEFAULT_ENGINE_3D: str = Field("default", description="Image-to-3D engine: GET /v1/info's engines.")
        TEXTURE_ENGINE: str = Field("default", description="Texture engine for meshes: GET /v1/info's texture_engines.")
        DEFAULT_TEXTURE_SIZE: int = Field(0, ge=0, le=4096, description="Texture side; 0 = backend default.")
        DEFAULT_VIEWS: int = Field(8, ge=0, le=36, description="Number of multiview renders (0 = none).")
        DEFAULT_VIEW_SIZE: int = Field(0, ge=0, le=2048, description="Side of each view in pixels; 0 = default.")
        CONNECT_TIMEOUT: float = Field(10.0, gt=0, description="Seconds to wait for the backend to answer a call.")
        REWRITE_TIMEOUT: float = Field(60.0, gt=0, description="Seconds to wait for the rewrite model.")
        JOB_TIMEOUT: int = Field(1800, gt=0, description="Seconds a generation may take before it is cancelled.")
        STATUS_EVERY: float = Field(10.0, gt=0, description="While nothing changes, re-announce the status every N s.")

    class UserValves(BaseModel):
        steps: int = Field(0, ge=0, le=100, description="Your FLUX.1-dev steps (0 = the admin's default).")
        guidance: float = Field(0.0, ge=0.0, le=30.0, description="Your guidance (0 = the admin's default).")
        size: int = Field(0, ge=0, le=2048, description="Your base image side in pixels (0 = the admin's default).")
        lora_scale: float = Field(-1.0, ge=-1.0, le=2.0, description="Your LoRA strength (-1 = the admin's default).")
        engine_3d: str = Field("default", description="Your image-to-3D engine ('default' = the admin's choice).")
        texture_size: int = Field(0, ge=0, le=4096, description="Your texture side (0 = the admin's default).")
        views: int = Field(-1, ge=-1, le=36, description="Your number of views (-1 = the admin's default).")
        seed: int = Field(-1, ge=-1, le=2**31 - 1, description="A fixed seed (-1 = random).")

    def __init__(self) -> None:
        self.type, self.id, self.name = "pipe", "alch3mist", "Alch3mist"
        self.valves = self.Valves()

    async def pipe(
        self,
        body: dict[str, Any],
        __user__: dict[str, Any] | None = None,
        __request__: Any = None,
        __event_emitter__: EventEmitter = None,
        __task__: str | None = None,
        __metadata__: dict[str, Any] | None = None,
        __files__: list[dict[str, Any]] | None = None,
    ) -> Any:
        """Forward a chat turn to the base chat model, or make 3D with the trigger word; tasks never generate."""
        messages = body.get("messages") or []
        if __task__:
            return await self._answer_task(body, __task__, Turn(__user__ or {}, __request__))
        content = next((m.get("content") for m in reversed(messages) if m.get("role") == "user"), None)
        typed = ((__metadata__ or {}).get("user_message") or {}).get("content")  # before Open WebUI adds file context
        text = message_text(typed if isinstance(typed, str) else content)
        match = find_trigger(text, self.valves.TRIGGER_WORD)
        if not match:
            return await self._forward(body, Turn(__user__ or {}, __request__))
        turn = Turn(__user__ or {}, __request__, __event_emitter__, __metadata__ or {})
        images, turn.notes = message_images(content)
        return self._generate(strip_trigger(text, match), images[:1], messages, __files__ or [], turn)

    # --- Open WebUI's own models ------------------------------------------------------------------------------------

    async def _complete(self, form: dict[str, Any], turn: Turn) -> Any:
        """Open WebUI's completion path as this user (access and filters apply unless BYPASS_ACCESS_CONTROL)."""
        from open_webui.models.users import Users
        from open_webui.utils.chat import generate_chat_completion

        owner = await Users.get_user_by_id(turn.user["id"]) if turn.user.get("id") else None
        bypass = self.valves.BYPASS_ACCESS_CONTROL
        return await generate_chat_completion(turn.request, form, owner, bypass_filter=bypass)

    async def _forward(self, body: dict[str, Any], turn: Turn) -> Any:
        """Hand an ordinary message to the admin's base chat model (streaming preserved)."""
        base, trigger = self.valves.BASE_CHAT_MODEL.strip(), md_text(self.valves.TRIGGER_WORD)
        if not base or turn.request is None:
            return (
                f"I make 3D assets: write **{trigger}** and what you want, e.g. *{trigger}, a chair made of crocodile "
                "leather*. (No base chat model is configured for other messages: an admin can set BASE_CHAT_MODEL in "
                "this function's valves.)"
            )
        try:
            response = await self._complete({**body, "model": base}, turn)
        except Exception as exc:  # noqa: BLE001 — Open WebUI raises plain Exception ("Model not found")
            log.warning("alch3mist: base chat model %s failed: %s", base, exc)
            return f"The base chat model `{md_code(base)}` could not answer: {md_text(str(exc))}"
        if isinstance(response, dict) or hasattr(response, "body_iterator"):
            return response
        detail = getattr(response, "body", b"").decode("utf-8", "replace")
        return f"The base chat model `{md_code(base)}` could not answer: {md_text(detail)}"

    async def _answer_task(self, body: dict[str, Any], task: str, turn: Turn) -> Any:
        """Titles, tags and follow-up suggestions: the base chat model answers them; nothing is generated."""
        if self.valves.BASE_CHAT_MODEL.strip() and turn.request is not None:
            return await self._forward({**body, "stream": False}, turn)
        answers = {"title": {"title": "Alch3mist 3D asset"}, "tags": {"tags": ["3D", "Alch3mist"]}}
        answers["follow_up"] = {"follow_ups": []}
        return next((json.dumps(answer) for key, answer in answers.items() if key in task), "")

    async def _rewrite_reply(self, client: httpx.AsyncClient, text: str, parent: str | None, turn: Turn) -> str | None:
        """The admin's rewrite model's answer to the backend's rewrite messages; None, with a note why, if none."""
        model = self.valves.REWRITE_MODEL.strip()
        why, fallback = "", "; the backend's own rewriter wrote the prompts instead"
        if turn.request is None:
            why = "the rewrite model can only be reached inside Open WebUI"
        elif (answer := await client.post("/v1/rewrite", json={"request": text, "parent": parent})).status_code != 200:
            why = f"the backend gave no rewrite instructions ({md_text(error_text(answer), 200)})"
        else:
            form = {"model": model, "stream": False, "messages": answer.json()["messages"]}
            try:
                response = await asyncio.wait_for(self._complete(form, turn), self.valves.REWRITE_TIMEOUT)
                return str(response["choices"][0]["message"]["content"] or "")
            except TimeoutError:
                why = f"the rewrite model `{md_code(model)}` did not answer within {self.valves.REWRITE_TIMEOUT:g} s"
            except (KeyError, IndexError, TypeError):
                why = f"the rewrite model `{md_code(model)}` returned no message"
            except Exception as exc:  # noqa: BLE001 — Open WebUI raises plain Exception ("Model not found")
                why = f"the rewrite model `{md_code(model)}` failed ({md_text(str(exc), 200)})"
        turn.notes.append(why[0].upper() + why[1:] + fallback + ".")
        return None

    # --- the generation ---------------------------------------------------------------------------------------------

    def _job_options(self, user: dict[str, Any], limits: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
        """The admin's defaults, overridden by the user's valves, within the backend's ceilings for this key."""
        v, uv, notes = self.valves, user.get("valves"), []
        options: dict[str, Any] = {
            "steps": v.DEFAULT_STEPS, "edit_steps": v.DEFAULT_EDIT_STEPS, "guidance": v.DEFAULT_GUIDANCE,
            "size": v.DEFAULT_SIZE, "texture_size": v.DEFAULT_TEXTURE_SIZE, "views": v.DEFAULT_VIEWS,
            "view_size": v.DEFAULT_VIEW_SIZE, "engine_3d": v.DEFAULT_ENGINE_3D, "texture_engine": v.TEXTURE_ENGINE,
            "lora": {"name": v.DEFAULT_LORA.strip() or None, "scale": v.DEFAULT_LORA_SCALE},
        }  # fmt: skip
        for valve, (name, unset, ceiling) in USER_OPTIONS.items():
            mine = getattr(uv, valve, unset)
            options[name] = options[name] if mine == unset else mine
            limit = limits.get(ceiling) if ceiling else None
            if isinstance(limit, int) and options[name] > limit:
                notes.append(f"{name} {options[name]} is above the backend's limit; {limit} was used")
                options[name] = limit
        if getattr(uv, "lora_scale", -1.0) >= 0:
            options["lora"]["scale"] = uv.lora_scale  # type: ignore[union-attr]
        if getattr(uv, "seed", -1) >= 0:
            options["seed"] = uv.seed  # type: ignore[union-attr]
        if options["size"]:
            options["size"] = max(64, options["size"] // 16 * 16)
        keep = {"views", "lora", "seed"}  # 0 views means none; the rest: 0 / "default" = the backend's default
        return {k: o for k, o in options.items() if k in keep or (o and o != "default")}, notes

    async def _store_file(self, client: httpx.AsyncClient, url: str, filename: str, turn: Turn) -> str:
        """Copy a backend artifact into Open WebUI's file store: the chat's URL, else the backend's (job-long) link."""
        public = rebase(url, self.valves.PUBLIC_BACKEND_URL) or url
        if turn.request is None or turn.owner is None:
            return public
        response = await client.get(rebase(url, self.valves.BACKEND_URL) or url)
        response.raise_for_status()
        if len(response.content) > MAX_GLB_UPLOAD_BYTES:
            return public
        from fastapi import HTTPException, UploadFile
        from open_webui.routers.files import upload_file_handler

        kind = response.headers.get("content-type", "application/octet-stream").split(";")[0]
        upload = UploadFile(file=io.BytesIO(response.content), filename=filename, headers={"content-type": kind})
        meta = {k: turn.metadata[k] for k in ("chat_id", "message_id") if turn.metadata.get(k)}
        try:
            item = await upload_file_handler(turn.request, file=upload, metadata=meta, process=False, user=turn.owner)
        except HTTPException as exc:
            reason = f"Open WebUI did not store {filename} (HTTP {exc.status_code}: {exc.detail})"
            raise FileStoreRefused(public, reason) from exc
        chat_id, message_id = meta.get("chat_id"), meta.get("message_id")
        if chat_id and message_id and not str(chat_id).startswith("local:"):
            from open_webui.models.chats import Chats

            with contextlib.suppress(Exception):  # linking is a nicety: the file is stored and served either way
                await Chats.insert_chat_files(
                    chat_id=chat_id, message_id=message_id, file_ids=[item.id], user_id=turn.owner.id
                )
        return str(turn.request.app.url_path_for("get_file_content_by_id", id=item.id))

    async def _generate(
        self, text: str, images: list[str], messages: list[dict[str, Any]], files: list[dict[str, Any]], turn: Turn
    ) -> AsyncGenerator[str, None]:
        """Run the chain on the backend and stream the results into the chat."""
        v, trigger = self.valves, md_text(self.valves.TRIGGER_WORD)
        # 1. Check inputs: the request, an attached picture or mesh, other attachments.
        image, mesh, mesh_name = (images[0] if images else None), None, None
        for item in files:
            meta = (item.get("file") or {}).get("meta") or {}
            name = str(item.get("name") or meta.get("name") or "a file")
            if name.lower().endswith(MESH_SUFFIXES) and mesh is None:
                mesh, mesh_name = await read_mesh(item, name, turn), name
            elif item.get("type") != "image" and not str(meta.get("content_type") or "").startswith("image/"):
                turn.notes.append(f"The attachment {md_text(name, 120)} is not an image, so it was not used.")
        turn.mesh = mesh is not None
        if (mesh_name and not turn.mesh) or (not text.strip(" .,!?;:") and (image is None or turn.mesh)):
            yield f"Tell me what to make after **{trigger}**, for example: *{trigger}, a chair made of crocodile "
            yield "leather* — or attach a picture and name the material." + "".join(f"\n\n{n}" for n in turn.notes)
            return
        if turn.request is not None and turn.user.get("id"):
            from open_webui.models.users import Users

            turn.owner = await Users.get_user_by_id(turn.user["id"])
        backend = v.BACKEND_URL.rstrip("/")
        headers = {"X-Alch3mist-User": str(turn.user.get("id") or "")[:200]}  # Open WebUI's opaque id, never e-mail
        if v.BACKEND_API_KEY:
            headers["Authorization"] = f"Bearer {v.BACKEND_API_KEY}"
        timeout = httpx.Timeout(v.CONNECT_TIMEOUT, read=max(v.CONNECT_TIMEOUT, 30.0))
        async with httpx.AsyncClient(base_url=backend, headers=headers, timeout=timeout) as client:
            # 2. The job: this chat's previous one refined (its mesh too), or the attached mesh; options within limits.
            try:
                limits = (await client.get("/v1/limits")).json()
                parent = previous_job_id(messages) if REFINE_CUES.search(text) and not turn.mesh else None
                if parent and (await client.get(f"/v1/jobs/{parent}")).status_code != 200:
                    parent = None  # gone (retention), or not this user's: make a new one
                job = {"request": text.strip() or "the object in the picture", "image": image, "parent": parent}
                if turn.mesh:  # a picture goes with the mesh as the look to paint it with
                    job |= {"mesh": mesh, "mesh_filename": mesh_name, "image": None, "reference_image": image}
                options, limit_notes = self._job_options(turn.user, limits if isinstance(limits, dict) else {})
                turn.notes.extend(n[0].upper() + n[1:] + "." for n in limit_notes)
                # 3. The admin's rewrite model answers the backend's rewrite instructions; the backend checks it.
                if text.strip() and v.REWRITE_MODEL.strip():
                    await emit_status(turn.emitter, "Writing the prompts…")
                    job["rewrite_reply"] = await self._rewrite_reply(client, text, parent, turn)
                # 4. Submit.
                await emit_status(turn.emitter, "Sending the job to the Alch3mist backend…")
                response = await client.post("/v1/jobs", json={**options, **{k: x for k, x in job.items() if x}})
            except (httpx.HTTPError, ValueError) as exc:
                await emit_status(turn.emitter, "The Alch3mist backend is not reachable", done=True)
                yield f"**The Alch3mist backend at {md_text(backend)} is not reachable** ({md_text(repr(exc), 200)})."
                yield " Ask an admin to start it (`make up`) or to correct BACKEND_URL in the function's valves."
                return
            if response.status_code != 202:
                await emit_status(turn.emitter, "The backend refused the job", done=True)
                hint = " Check BACKEND_API_KEY in the valves." if response.status_code in (401, 403) else ""
                yield f"**The Alch3mist backend refused the job:** {md_text(error_text(response), 500)}.{hint}"
                return
            async for chunk in self._deliver(client, response.json(), turn):
                yield chunk

    async def _deliver(
        self, client: httpx.AsyncClient, created: dict[str, Any], turn: Turn
    ) -> AsyncGenerator[str, None]:
        """Follow the job, streaming each image as it appears; then the viewer and the summary."""
        v, job_id, shown, final = self.valves, created["id"], set(), None
        captions = MESH_CAPTIONS if turn.mesh else CAPTIONS
        marker = f"\n\n`alch3mist job {job_id}`"
        try:
            async for kind, payload in self._follow(client, created, turn.emitter):
                if kind == "artifact" and payload[0] in captions and payload[0] not in shown:
                    shown.add(payload[0])
                    yield await self._show_image(client, *payload, turn)
                elif kind == "done":
                    final = payload
                elif kind == "timeout":
                    with contextlib.suppress(httpx.HTTPError):
                        await client.delete(f"/v1/jobs/{job_id}")
                    await emit_status(turn.emitter, "Timed out", done=True)
                    yield f"\n\n**Timed out** after {v.JOB_TIMEOUT} s ({md_text(payload)}); the job was cancelled. The "
                    yield f"backend may be busy: try again later, or ask an admin to raise JOB_TIMEOUT.{marker}"
                    return
                elif kind == "lost":
                    await emit_status(turn.emitter, "Lost contact with the backend", done=True)
                    yield f"\n\n**Lost contact with the Alch3mist backend at {md_text(v.BACKEND_URL)}** while job "
                    yield f"{job_id} was running ({md_text(payload, 200)}).{marker}"
                    return
        except asyncio.CancelledError:  # the person pressed stop: free the GPU for the others
            with contextlib.suppress(Exception):
                await asyncio.shield(client.delete(f"/v1/jobs/{job_id}"))
            raise
        final = final or {}
        artifacts = final.get("artifacts") or {}
        for name in captions:  # images not announced as events (a reconnect)
            if artifacts.get(name) and name not in shown:
                yield await self._show_image(client, name, artifacts[name], turn)
        lines = ["\n\n---\n", final.get("summary") or f"**The job ended {md_text(final.get('status'))}.**"]
        if artifacts.get("glb"):
            await emit_status(turn.emitter, "Loading the 3D viewer…")
            try:
                link = await self._store_file(client, artifacts["glb"], f"{slug(final, job_id)}.glb", turn)
            except FileStoreRefused as exc:
                link = exc.link
                turn.notes.append(f"{md_text(exc.reason, 300)}; the model is linked from the backend instead.")
            except (httpx.HTTPError, OSError) as exc:
                log.warning("alch3mist: could not store the GLB of %s: %s", job_id, exc)
                link = rebase(artifacts["glb"], v.PUBLIC_BACKEND_URL) or artifacts["glb"]
            lines.append(f"- **Download:** [3D model (GLB)]({link})")
            embed = await self._viewer_embed(client, final)
            if embed and turn.emitter:
                await turn.emitter({"type": "embeds", "data": {"embeds": [embed]}})
            if v.PUBLIC_BACKEND_URL.strip() and artifacts.get("viewer"):
                lines.append(f"- **Viewer:** [open in a new tab]({rebase(artifacts['viewer'], v.PUBLIC_BACKEND_URL)})")
        lines.extend(f"- *Note:* {note}" for note in turn.notes)
        lines.append(f"\nTo refine it, say e.g. *{md_text(v.TRIGGER_WORD)}, same thing but in gold*.{marker}")
        status = "Done" if final.get("status") == "succeeded" else "Finished with errors"
        await emit_status(turn.emitter, status, done=True)
        yield "\n".join(lines)

    async def _follow(
        self, client: httpx.AsyncClient, created: dict[str, Any], emitter: EventEmitter
    ) -> AsyncGenerator[tuple[str, Any], None]:
        """Events of one job as (kind, payload): artifact (name, url), done (the job), timeout or lost. SSE is read in a
        task feeding a queue (quiet periods still refresh the status); a dropped stream reconnects, polling too."""
        v, job_id = self.valves, created["id"]
        events_url = rebase((created.get("links") or {}).get("events"), v.BACKEND_URL) or f"/v1/jobs/{job_id}/events"
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

        async def reader() -> None:
            failures = 0
            while failures < 5:
                try:
                    timeout = httpx.Timeout(v.CONNECT_TIMEOUT, read=None)
                    async with client.stream("GET", events_url, timeout=timeout) as r:
                        r.raise_for_status()
                        failures = 0
                        async for line in r.aiter_lines():
                            event = json.loads(line[5:]) if line.startswith("data:") else None
                            if event:
                                await queue.put((event.get("type", ""), event))
                                if event.get("type") == "done":
                                    return
                    state = (await client.get(f"/v1/jobs/{job_id}")).json()  # the stream ended without "done"
                    if state.get("status") in ("succeeded", "failed", "cancelled"):
                        return await queue.put(("done", {"type": "done", "job": state}))
                except (httpx.HTTPError, OSError, ValueError) as exc:
                    failures += 1
                    if failures >= 5:
                        await queue.put(("lost", str(exc) or type(exc).__name__))
                await asyncio.sleep(min(2.0 * failures + 0.5, 10.0))

        task = asyncio.create_task(reader())
        deadline, started = time.monotonic() + v.JOB_TIMEOUT, time.monotonic()
        stage, label, last_percent = created.get("stage"), "Queued", -1
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    yield "timeout", f"last stage: {STAGE_LABELS.get(stage or '', stage or 'queued')}"
                    return
                try:
                    kind, event = await asyncio.wait_for(queue.get(), timeout=min(v.STATUS_EVERY, remaining))
                except TimeoutError:
                    await emit_status(emitter, f"{label}… still working ({int(time.monotonic() - started)} s)")
                    continue
                if kind in ("lost", "done"):
                    yield kind, (event.get("job") or {}) if kind == "done" else event
                    return
                stage = event.get("stage") or stage
                if kind == "artifact" and event.get("artifact") and event.get("url"):
                    yield "artifact", (event["artifact"], event["url"])
                elif event.get("status") == "queued":
                    position = event.get("queue_position")
                    label = f"Queued — position {position} in line" if position else "Queued"
                    await emit_status(emitter, label)
                elif kind in ("stage", "status", "progress") and stage:
                    percent = round(100 * float(event.get("progress") or 0.0))
                    if STAGE_LABELS.get(stage, stage) != label or percent >= last_percent + 5:
                        label, last_percent = STAGE_LABELS.get(stage, stage), percent
                        await emit_status(emitter, f"{label} — {percent}%")
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _show_image(self, client: httpx.AsyncClient, name: str, url: str, turn: Turn) -> str:
        """Markdown for an image artifact, copied into Open WebUI's file store (or linked from the backend)."""
        try:
            link = await self._store_file(client, url, f"alch3mist-{name}.png", turn)
        except FileStoreRefused as exc:
            link = exc.link
            turn.notes.append(f"{md_text(exc.reason, 300)}; linked from the Alch3mist backend instead.")
        except (httpx.HTTPError, OSError) as exc:
            log.warning("alch3mist: could not store %s: %s", name, exc)
            return f"\n\n*{MESH_CAPTIONS[name]}: could not be copied into the chat ({md_text(str(exc), 200)}).*\n\n"
        return f"\n\n**{MESH_CAPTIONS[name]}**\n\n![{name}]({link})\n\n"

    async def _viewer_embed(self, client: httpx.AsyncClient, job: dict[str, Any]) -> str | None:
        """The viewer: its URL when browsers can reach the backend, else the self-contained page."""
        links, artifacts = job.get("links") or {}, job.get("artifacts") or {}
        if self.valves.PUBLIC_BACKEND_URL.strip():
            return rebase(artifacts.get("viewer") or links.get("viewer"), self.valves.PUBLIC_BACKEND_URL)
        inline = rebase(links.get("viewer_inline"), self.valves.BACKEND_URL) or f"/v1/jobs/{job['id']}/viewer?inline=1"
        try:
            response = await client.get(inline, timeout=httpx.Timeout(self.valves.CONNECT_TIMEOUT, read=120.0))
            return response.raise_for_status().text
        except httpx.HTTPError as exc:
            log.warning("alch3mist: viewer page of %s unavailable: %s", job.get("id"), exc)
            return None
