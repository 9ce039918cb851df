"""Typed models of the v1 HTTP API — the contract between the plugins and the backend."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from ..config import MAX_SEED, Limits, TextureEngineName
from ..domain import ChainInfo, JobStatus, LoraChoice, StageName
from ..prompting.schema import MaterialPrompt


def _encodable(value: str | None) -> str | None:
    """JSON allows unpaired surrogates (``"\\ud800"``); UTF-8, and so every file a job writes, does not."""
    if value is not None:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError("contains an unpaired surrogate (not valid Unicode text)") from exc
    return value


class TextureOptions(BaseModel):
    """How the texture step paints the mesh (the chain's ``TextureRequest``; the bounds are the texture stage's)."""

    views: int = Field(8, ge=2, le=16, description="Views edited together and projected (alch3mist engine).")
    view_size: int = Field(512, ge=64, le=1024, description="Side of each edited view, pixels.")
    elevation: float = Field(20.0, ge=0.0, le=60.0, description="Views alternate this many degrees above/below.")
    camera: Literal["orthographic", "perspective"] = "orthographic"
    delight: bool = Field(True, description="Divide the neutral render's shading out of the edited views.")


class JobCreate(BaseModel):
    """Either ``request`` (free text, rewritten by the backend) or ``base_prompt`` + ``edit_prompt``."""

    request: str | None = Field(None, description="What the person asked for, in any language.")
    base_prompt: str | None = Field(None, description="Already-rewritten FLUX.1-dev prompt (plain object).")
    edit_prompt: str | None = Field(None, description="Already-rewritten Kontext instruction (starts with Alch3mist).")
    title: str | None = Field(None, max_length=80, description="Short title when prompts are given directly.")
    image: str | None = Field(None, description="Optional input image, base64 (PNG/JPEG/WebP): skips FLUX.1-dev.")
    seed: int | None = Field(None, ge=0, le=MAX_SEED)
    engine_3d: str | None = Field(None, description="preview | trellis | hunyuan3d; None = server default.")
    lora: LoraChoice | None = None
    steps: int | None = Field(None, ge=1, le=100, description="FLUX.1-dev steps.")
    guidance: float | None = Field(None, ge=0.0, le=30.0)
    edit_steps: int | None = Field(None, ge=1, le=100, description="Kontext steps.")
    edit_guidance: float | None = Field(None, ge=0.0, le=30.0)
    size: int | None = Field(
        None, ge=64, le=2048, multiple_of=16, description="Base image side, pixels (a multiple of 16: FLUX's latents)."
    )
    texture_size: int | None = Field(None, ge=256, le=4096)
    views: int | None = Field(None, ge=0, le=36, description="Number of multiview renders (0 = none).")
    view_size: int | None = Field(None, ge=64, le=2048, description="Side of each multiview render, pixels.")
    parent: str | None = Field(
        None, description="Refine an earlier job of the same owner: reuse its base image, seed and prompts (context)."
    )
    mesh: str | None = Field(
        None,
        description="A mesh to texture, base64 (GLB, glTF with embedded data, OBJ or PLY; read by its content): the "
        "base image, material edit and 3D engine are skipped and the texture step paints this mesh with the "
        "request's material (the retexture flow). At most ALCH3MIST_MESH_MAX_BYTES (413 above) and "
        "ALCH3MIST_MESH_MAX_FACES faces (413 above, unless `decimate`).",
    )
    mesh_filename: str | None = Field(
        None, max_length=255, description="The mesh file's name, for messages (the format is read from the content)."
    )
    decimate: bool | None = Field(
        None, description="With a mesh over the face limit: simplify it to the limit (its UVs replaced by a new atlas)."
    )
    reference_image: str | None = Field(
        None, description="With a mesh: a picture of the material or look, base64 (PNG/JPEG/WebP)."
    )
    texture_engine: TextureEngineName | None = Field(
        None, description="Texture engine (GET /v1/info lists the configured ones); None = server default."
    )
    texture: TextureOptions | None = Field(None, description="How the texture step paints (its views: a mesh's).")
    rewrite_reply: str | None = Field(
        None,
        max_length=20_000,
        description="With `request`: a chat model's answer to the messages of POST /v1/rewrite for this request (e.g. "
        "Open WebUI's rewrite model). Validated like the backend's own LLM; when it is not usable the backend "
        "rewrites the request itself and the job says so in `warnings`.",
    )

    _text = field_validator(
        "request", "base_prompt", "edit_prompt", "title", "image", "engine_3d", "parent", "user", "rewrite_reply",
        "mesh", "mesh_filename", "reference_image",
    )(_encodable)  # fmt: skip
    user: str | None = Field(
        None,
        max_length=200,
        description="The end user this key vouches for: an opaque id (Open WebUI's user id), never an e-mail. The job "
        "belongs to (key, user); without it (and without X-Alch3mist-User), to the key alone.",
    )


class Artifacts(BaseModel):
    """Signed, expiring URLs a browser can load without the API key (CORS enabled)."""

    base_image: str | None = None
    textured_image: str | None = None
    glb: str | None = None
    texture_map: str | None = None
    views: list[str] = Field(default_factory=list)
    contact_sheet: str | None = None
    viewer: str | None = None
    manifest: str | None = None


class JobError(BaseModel):
    code: str
    message: str
    stage: StageName | None = None


class JobPublic(BaseModel):
    id: str
    status: JobStatus
    stage: StageName | None = None
    progress: float = Field(0.0, description="Overall progress 0..1.")
    stage_progress: float = 0.0
    message: str = ""
    queue_position: int | None = Field(None, description="1 = next to run; None when not queued.")
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    user: str | None = None
    parent: str | None = None
    prompt: MaterialPrompt | None = None
    seed: int | None = None
    engine_3d: str | None = None
    lora: LoraChoice | None = None
    artifacts: Artifacts = Field(default_factory=Artifacts)
    warnings: list[str] = Field(default_factory=list)
    error: JobError | None = None
    manifest: dict[str, Any] | None = None
    links: dict[str, str] = Field(default_factory=dict, description="self, events, viewer, viewer_inline, cancel")
    summary: str | None = Field(
        None,
        description="Once finished: what was made (or where it failed) as chat-ready markdown lines, every user- "
        "or model-written text escaped.",
    )


class JobList(BaseModel):
    jobs: list[JobPublic]


class JobEvent(BaseModel):
    """One Server-Sent Event; ``event:`` is ``type``, ``data:`` is this model as JSON.

    status   — status/queue position changed        progress — stage progress tick (throttled)
    stage    — a stage started                      artifact — an artifact exists (name + signed url)
    warning  — something degraded but went on       done     — terminal; ``job`` holds the final JobPublic
    """

    type: Literal["status", "stage", "progress", "artifact", "warning", "done"]
    job_id: str
    status: JobStatus
    stage: StageName | None = None
    progress: float = 0.0
    stage_progress: float = 0.0
    queue_position: int | None = None
    message: str = ""
    artifact: str | None = Field(
        None,
        description="Which Artifacts field the file belongs to: base_image, textured_image, glb, texture_map, "
        "views, contact_sheet, viewer, manifest (other files: their path).",
    )
    file: str | None = Field(None, description="The artifact's path inside the job folder, e.g. views/view_03.png.")
    url: str | None = Field(None, description="Signed, expiring URL of the artifact (the viewer page for viewer).")
    job: JobPublic | None = None
    at: datetime | None = Field(None, description="When it happened on the server (UTC).")


class Info(ChainInfo):
    version: str
    queue_length: int
    running: str | None
    limits: Limits = Field(description="This API key's quotas and parameter ceilings (above a ceiling: 422).")


class RewriteCreate(BaseModel):
    """A request to rewrite with a chat model of the caller's own (POST /v1/rewrite)."""

    request: str = Field(min_length=1, description="What the person asked for, in any language.")
    parent: str | None = Field(None, description="The earlier job this request refines (its prompts become context).")

    _text = field_validator("request", "parent")(_encodable)


class ChatMessage(BaseModel):
    role: Literal["system", "user"]
    content: str


class RewriteMessages(BaseModel):
    """The chat messages to send to an OpenAI-compatible model; pass its answer back as `rewrite_reply`."""

    messages: list[ChatMessage]


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    queue_length: int = 0


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody
