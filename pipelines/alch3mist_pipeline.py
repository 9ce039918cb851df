"""
title: Alch3mist (Pipelines server)
author: material-alch3mist
author_url: https://github.com/material-alch3mist/material-alch3mist
version: 0.1.0
required_open_webui_version: 0.12.4
requirements: httpx
licence: Apache-2.0
description: The Alch3mist chat model for the standalone Open WebUI Pipelines server: ordinary messages go to an
  OpenAI-compatible chat model; a message with the trigger word becomes a material-textured 3D asset made by the
  Alch3mist backend. Synchronous; images and the viewer are linked from the backend (PUBLIC_BACKEND_URL).
"""

# The Pipelines server runs outside Open WebUI: no event emitter, no file store, no embeds. So status goes into the
# message as short lines, images are the backend's signed URLs, and the viewer is a link. Same behaviour otherwise
# as pipelines/alch3mist_pipe.py (the Open WebUI Function); one self-contained file.

import json
import logging
import os
import re
import time
from collections.abc import Generator, Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from pydantic import BaseModel, Field

log = logging.getLogger(__name__)

TERMINAL = ("succeeded", "failed", "cancelled")
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
REFINE_CUES = re.compile(
    r"\b(same|again|instead|the previous|the last one|this one|that one|make it|now (?:in|with|made)|"
    r"lo mismo|la misma|el mismo|igual|otra vez|ahora (?:en|con|de)|même|pareil|gleiche|selbe|stess[oa])\b",
    re.IGNORECASE,
)
JOB_MARKER = re.compile(r"`alch3mist job ([A-Za-z0-9_-]{4,64})`")
# Open WebUI's background-task prompts (0.12.4 config.py DEFAULT_{TITLE,TAGS,FOLLOW_UP,...}_GENERATION_PROMPT_TEMPLATE)
# start with "### Task:" and quote the chat between <chat_history> tags, trigger word included. A Pipelines connection
# gets them without `metadata` (routers/openai.py generate_chat_completion pops it), so the prompt is the only sign.
TASK_PROMPT = re.compile(r"\A\s*### Task:|<chat_history>.*</chat_history>", re.DOTALL)
TASK_JSON_KEY = re.compile(r'JSON format:\s*\{\s*"(\w+)"')
TASK_ANSWERS = {"title": {"title": "Alch3mist 3D asset"}, "tags": {"tags": ["3D"]}, "follow_ups": {"follow_ups": []}}
JOB_URL = re.compile(r"/v1/jobs/([A-Za-z0-9_-]{4,64})/")


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
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def openwebui_task(messages: list[dict[str, Any]]) -> str | None:
    """The JSON key Open WebUI's task prompt asks for ("title", "tags", "follow_ups"…), or "task"; None for a chat."""
    last = next((m for m in reversed(messages) if m.get("role") == "user"), None)
    text = message_text(last.get("content")) if last else ""
    if not TASK_PROMPT.search(text):
        return None
    key = TASK_JSON_KEY.search(text)
    return key.group(1) if key else "task"


def find_trigger(text: str, trigger: str) -> re.Match[str] | None:
    if not trigger.strip():
        return None
    return re.search(rf"(?<![\w]){re.escape(trigger.strip())}(?![\w])", text, re.IGNORECASE)


def strip_trigger(text: str, match: re.Match[str]) -> str:
    before = re.sub(r"(?i)\bmaterial\s*$", "", text[: match.start()].rstrip()).rstrip(" ,:;-–—")
    after = text[match.end() :].lstrip(" ,:;-–—!.")
    return " ".join(f"{before} {after}".split())


def previous_job_id(messages: list[dict[str, Any]]) -> str | None:
    for message in reversed(messages[:-1]):
        if message.get("role") == "assistant":
            text = message_text(message.get("content"))
            found = JOB_MARKER.findall(text) or JOB_URL.findall(text)
            if found:
                return found[-1]
    return None


def rebase(url: str | None, base: str) -> str | None:
    if not url or not base:
        return url
    b, u = urlsplit(base.rstrip("/")), urlsplit(url)
    return urlunsplit((b.scheme, b.netloc, b.path + u.path, u.query, ""))


def error_text(response: httpx.Response) -> str:
    try:
        err = response.json().get("error") or {}
        if isinstance(err, dict) and err.get("message"):
            return f"{err['message']} ({err.get('code', response.status_code)})"
    except (ValueError, AttributeError):
        pass
    return f"HTTP {response.status_code}"


class Pipeline:
    class Valves(BaseModel):
        BACKEND_URL: str = Field("http://127.0.0.1:8765", description="Where this server reaches the backend.")
        BACKEND_API_KEY: str = Field(
            "", description="Backend API key.", json_schema_extra={"input": {"type": "password"}}
        )
        PUBLIC_BACKEND_URL: str = Field(
            "", description="How browsers reach the backend (images, GLB and viewer links); empty = BACKEND_URL."
        )
        TRIGGER_WORD: str = Field("Alch3mist", description="A message with this word makes a 3D asset.")
        OPENAI_API_BASE_URL: str = Field(
            "", description="OpenAI-compatible API for the rewrite and base chat models, e.g. http://host/v1."
        )
        OPENAI_API_KEY: str = Field(
            "", description="Key for that API.", json_schema_extra={"input": {"type": "password"}}
        )
        REWRITE_MODEL: str = Field("", description="Model that rewrites requests (JSON); empty = backend's own.")
        BASE_CHAT_MODEL: str = Field("", description="Model that answers ordinary messages.")
        DEFAULT_ENGINE_3D: str = Field(
            "default", description="Image-to-3D engine, one of GET /v1/info's engines; 'default' = the backend's."
        )
        DEFAULT_VIEWS: int = Field(8, ge=0, le=36, description="Number of multiview renders.")
        DEFAULT_STEPS: int = Field(0, ge=0, le=100, description="FLUX.1-dev steps; 0 = the backend's default.")
        DEFAULT_EDIT_STEPS: int = Field(0, ge=0, le=100, description="FLUX.1 Kontext steps; 0 = backend default.")
        DEFAULT_SIZE: int = Field(0, ge=0, le=2048, description="Base image side in pixels; 0 = backend default.")
        DEFAULT_TEXTURE_SIZE: int = Field(0, ge=0, le=4096, description="Texture side; 0 = backend default.")
        DEFAULT_VIEW_SIZE: int = Field(0, ge=0, le=2048, description="Side of each view in pixels; 0 = default.")
        DEFAULT_SEED: int = Field(-1, ge=-1, le=2**31 - 1, description="A fixed seed for every job (-1 = random).")
        CONNECT_TIMEOUT: float = Field(10.0, gt=0, description="Seconds to wait for one call.")
        JOB_TIMEOUT: int = Field(1800, gt=0, description="Seconds a generation may take before it is cancelled.")
        POLL_EVERY: float = Field(1.0, gt=0, description="Seconds between job status checks.")

    def __init__(self) -> None:
        self.name = "Alch3mist"
        self.valves = self.Valves(
            **{
                key: os.environ[f"ALCH3MIST_PIPELINE_{key}"]
                for key in self.Valves.model_fields
                if f"ALCH3MIST_PIPELINE_{key}" in os.environ
            }
        )

    async def on_startup(self) -> None:
        log.info("alch3mist pipeline: backend %s", self.valves.BACKEND_URL)

    async def on_shutdown(self) -> None:
        log.info("alch3mist pipeline: stopped")

    def pipe(
        self, user_message: str | list[Any], model_id: str, messages: list[dict[str, Any]], body: dict[str, Any]
    ) -> str | Generator[str, None, None] | Iterator[str]:
        """Answer one chat turn: forward it, or make a 3D asset when it carries the trigger word.

        :param user_message: the last user message's text (the Pipelines server passes the content list as it is
            when the message has no text part, e.g. images only).
        :param model_id: this pipeline's id.
        :param messages: the conversation so far (OpenAI format).
        :param body: the whole request. Background tasks (titles, tags, follow-ups) never generate: marked in the
            body by some clients, recognised by their prompt when Open WebUI forwards them (it strips the mark).
        """
        task = (
            body.get("task")
            or (body.get("metadata") or {}).get("task")
            or ("title" if body.get("title") else None)
            or openwebui_task(messages)
        )
        text = message_text(user_message)
        match = find_trigger(text, self.valves.TRIGGER_WORD)
        if task or not match:
            return self._forward(messages, task)
        return self._generate(strip_trigger(text, match), messages, body)

    def _chat(self, model: str, messages: list[dict[str, Any]], timeout: float) -> str:
        v = self.valves
        headers = {"Authorization": f"Bearer {v.OPENAI_API_KEY}"} if v.OPENAI_API_KEY else {}
        response = httpx.post(
            f"{v.OPENAI_API_BASE_URL.rstrip('/')}/chat/completions",
            json={"model": model, "messages": messages, "stream": False},
            headers=headers,
            timeout=timeout,
        )
        response.raise_for_status()
        return response.json()["choices"][0]["message"]["content"] or ""

    def _forward(self, messages: list[dict[str, Any]], task: str | None) -> str:
        v = self.valves
        if not (v.BASE_CHAT_MODEL and v.OPENAI_API_BASE_URL):
            if task:
                known = next((answer for key, answer in TASK_ANSWERS.items() if key.rstrip("s") in task), None)
                return json.dumps(known) if known else ""
            trigger = md_text(v.TRIGGER_WORD)
            return f"I make 3D assets: write **{trigger}** and what you want, e.g. *{trigger}, a golden teapot*."
        try:
            return self._chat(v.BASE_CHAT_MODEL, messages, 120.0)
        except (httpx.HTTPError, KeyError, IndexError, ValueError) as exc:
            return f"The base chat model `{md_code(v.BASE_CHAT_MODEL)}` could not answer: {md_text(exc, 200)}"

    def _generate(self, request_text: str, messages: list[dict[str, Any]], body: dict[str, Any]) -> Iterator[str]:
        v = self.valves
        trigger = md_text(v.TRIGGER_WORD)
        if not request_text.strip(" .,!?;:"):
            yield f"Tell me what to make after **{trigger}**, for example: *{trigger}, a golden teapot*."
            return
        backend = v.BACKEND_URL.rstrip("/")
        public = v.PUBLIC_BACKEND_URL.strip() or backend
        # The end user this key vouches for: the Open WebUI user's opaque id, never an e-mail or a name.
        headers = {"X-Alch3mist-User": str((body.get("user") or {}).get("id") or "")[:200]}
        if v.BACKEND_API_KEY:
            headers["Authorization"] = f"Bearer {v.BACKEND_API_KEY}"
        with httpx.Client(base_url=backend, headers=headers, timeout=v.CONNECT_TIMEOUT) as client:
            # 1. The job: the admin's defaults, this chat's previous job refined, the rewrite model's answer.
            job: dict[str, Any] = {"request": request_text, "views": v.DEFAULT_VIEWS}
            for key, value in (
                ("engine_3d", "" if v.DEFAULT_ENGINE_3D == "default" else v.DEFAULT_ENGINE_3D),
                ("steps", v.DEFAULT_STEPS),
                ("edit_steps", v.DEFAULT_EDIT_STEPS),
                ("size", v.DEFAULT_SIZE and max(64, v.DEFAULT_SIZE // 16 * 16)),
                ("texture_size", v.DEFAULT_TEXTURE_SIZE),
                ("view_size", v.DEFAULT_VIEW_SIZE),
                ("seed", v.DEFAULT_SEED if v.DEFAULT_SEED >= 0 else None),
                ("parent", previous_job_id(messages) if REFINE_CUES.search(request_text) else None),
            ):
                if value or (key == "seed" and value == 0):
                    job[key] = value
            if v.REWRITE_MODEL and v.OPENAI_API_BASE_URL:
                try:
                    job["rewrite_reply"] = self._rewrite(client, request_text, job.get("parent"))
                except (httpx.HTTPError, KeyError, IndexError, ValueError) as exc:
                    yield (
                        f"*Note: the rewrite model `{md_code(v.REWRITE_MODEL)}` gave no answer ({md_text(exc, 200)}); "
                        "the backend's own rewriter wrote the prompts instead.*\n\n"
                    )
            try:
                response = client.post("/v1/jobs", json=job)
            except (httpx.HTTPError, KeyError, IndexError, ValueError) as exc:
                yield (
                    f"**The Alch3mist backend at {md_text(backend)} is not reachable** ({md_text(type(exc).__name__)})."
                    " Ask an admin to start it or to correct BACKEND_URL in this pipeline's valves."
                )
                return
            if job.get("parent") and "invalid_parent" in response.text:  # the earlier job is gone: make a new one
                job.pop("parent")
                response = client.post("/v1/jobs", json=job)
            if response.status_code != 202:
                yield f"**The Alch3mist backend refused the job:** {md_text(error_text(response), 500)}."
                return
            job_id = response.json()["id"]
            marker = f"\n\n`alch3mist job {job_id}`"

            # 2. Poll, announcing each stage and each image once.
            deadline = time.monotonic() + v.JOB_TIMEOUT
            said, shown, state, errors = "", set(), {}, 0
            captions = {
                "base_image": "Base image (FLUX.1-dev)",
                "textured_image": "Material applied (FLUX.1 Kontext + Alch3mist LoRA)",
                "contact_sheet": "Views of the textured 3D model",
            }
            while state.get("status") not in TERMINAL:
                if time.monotonic() > deadline:
                    try:
                        client.delete(f"/v1/jobs/{job_id}")
                    except httpx.HTTPError as exc:
                        log.warning("alch3mist pipeline: could not cancel %s: %s", job_id, exc)
                    yield f"\n\n**Timed out** after {v.JOB_TIMEOUT} s; the job was cancelled.{marker}"
                    return
                try:
                    state = client.get(f"/v1/jobs/{job_id}").json()
                    errors = 0
                except (httpx.HTTPError, ValueError) as exc:
                    errors += 1
                    if errors >= 5:
                        yield f"\n\n**Lost contact with the backend at {md_text(backend)}** ({md_text(exc, 200)})."
                        return
                    time.sleep(2.0)
                    continue
                position, stage = state.get("queue_position"), state.get("stage")
                line = f"Queued — position {position}" if position else STAGE_LABELS.get(stage or "", "")
                if line and line != said:
                    yield f"*{md_text(line)}…*\n\n"
                    said = line
                artifacts = state.get("artifacts") or {}
                for name, caption in captions.items():
                    if artifacts.get(name) and name not in shown:
                        shown.add(name)
                        yield f"**{caption}**\n\n![{name}]({rebase(artifacts[name], public)})\n\n"
                if state.get("status") not in TERMINAL:
                    time.sleep(v.POLL_EVERY)

            # 3. The backend's summary, and the links a browser follows (they live as long as the job).
            lines = ["---", state.get("summary") or f"**The job ended {md_text(state.get('status'))}.**"]
            if artifacts.get("glb"):
                lines.append(f"- **Download:** [3D model (GLB)]({rebase(artifacts['glb'], public)})")
            if artifacts.get("viewer"):
                lines.append(f"- **Viewer:** [open the interactive 3D viewer]({rebase(artifacts['viewer'], public)})")
            yield "\n".join(lines) + marker

    def _rewrite(self, client: httpx.Client, request_text: str, parent: str | None) -> str:
        """The rewrite model's answer to the backend's rewrite messages (the backend checks it when the job comes)."""
        answer = client.post("/v1/rewrite", json={"request": request_text, "parent": parent})
        if answer.status_code == 422 and parent:  # the earlier job is gone (or not this user's): no context
            answer = client.post("/v1/rewrite", json={"request": request_text})
        answer.raise_for_status()
        return self._chat(self.valves.REWRITE_MODEL, answer.json()["messages"], 60.0)
