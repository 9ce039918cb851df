"""Stored jobs → the public models of ``schemas.py``, with absolute, signed browser links.

Artifact names on disk (written by the chain into the job folder) and where they appear in ``Artifacts``::

    base.png → base_image            textured.png → textured_image     model.glb → glb (+ viewer page)
    texture.png → texture_map        views/*.png → views               contact_sheet.png → contact_sheet
    manifest.json → manifest         viewer.html → (the viewer page URL)

In Server-Sent Events, ``artifact`` is that field name (``views`` for each view) and ``file`` the file's path.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast
from urllib.parse import quote

from pydantic import ValidationError
from sse_starlette import ServerSentEvent

from ..domain import STAGES, LoraChoice
from ..jobs.runner import JobUpdate, UpdateType
from ..jobs.store import JobRecord, StoredEvent
from ..prompting.schema import MaterialPrompt
from .chat import chat_summary
from .schemas import Artifacts, JobError, JobEvent, JobPublic
from .signing import LinkSigner

__all__ = ["ARTIFACT_FIELDS", "Links", "artifact_key", "to_event", "to_public", "to_sse", "update_from_event"]

logger = logging.getLogger(__name__)

ARTIFACT_FIELDS = {
    "base.png": "base_image",
    "textured.png": "textured_image",
    "model.glb": "glb",
    "texture.png": "texture_map",
    "contact_sheet.png": "contact_sheet",
    "manifest.json": "manifest",
}
VIEWER_RESOURCE = "viewer"
BUNDLE_RESOURCE = "bundle"


@dataclass(frozen=True)
class Links:
    """Absolute URLs for one request: ``base_url`` is ``Settings.public_url`` or the URL the caller used.

    Two lifetimes (docs/api.md, "Embeds that keep working"): links in API answers are kept in chats, so they last as
    long as the job itself (``chat_ttl_s``, None = no expiry); the links a viewer page renders for the GLB, poster
    and bundle it loads are ``fresh`` ones (``page_ttl_s``), signed anew on every load of the page.
    """

    base_url: str
    signer: LinkSigner
    chat_ttl_s: int | None
    page_ttl_s: int

    def job(self, job_id: str) -> str:
        return f"{self.base_url}/v1/jobs/{job_id}"

    def artifact(self, job_id: str, name: str, fresh: bool = False) -> str:
        token = self._token(job_id, name, fresh)
        return f"{self.job(job_id)}/artifacts/{quote(name)}?token={token}"

    def viewer(self, job_id: str, inline: bool = False) -> str:
        token = self._token(job_id, VIEWER_RESOURCE, fresh=False)
        return f"{self.job(job_id)}/viewer?{'inline=1&' if inline else ''}token={token}"

    def bundle(self, job_id: str) -> str:
        """Only a viewer page links the bundle: always fresh."""
        return f"{self.job(job_id)}/viewer/bundle.js?token={self._token(job_id, BUNDLE_RESOURCE, fresh=True)}"

    def _token(self, job_id: str, resource: str, fresh: bool) -> str:
        return self.signer.sign(job_id, resource, self.page_ttl_s if fresh else self.chat_ttl_s)

    def job_links(self, record: JobRecord) -> dict[str, str]:
        links = {"self": self.job(record.id), "events": f"{self.job(record.id)}/events"}
        if not record.finished:
            links["cancel"] = self.job(record.id)
        if "model.glb" in record.artifacts:
            links["viewer"] = self.viewer(record.id)
            links["viewer_inline"] = self.viewer(record.id, inline=True)
        return links


def to_public(record: JobRecord, queue_position: int | None, links: Links) -> JobPublic:
    public = JobPublic(
        id=record.id,
        status=record.status,  # type: ignore[arg-type]
        stage=record.stage if record.stage in STAGES else None,  # type: ignore[arg-type]
        progress=record.progress,
        stage_progress=record.stage_progress,
        message=record.message,
        queue_position=queue_position,
        created_at=datetime.fromtimestamp(record.created_at, tz=UTC),
        started_at=_time(record.started_at),
        finished_at=_time(record.finished_at),
        user=record.user or None,  # a key's own jobs (no end user) are stored with KEY_ALONE
        parent=record.parent,
        prompt=_prompt(record),
        seed=record.seed if record.seed is not None else record.params.get("seed"),
        engine_3d=record.engine_3d or record.params.get("engine_3d"),
        lora=_lora(record),
        artifacts=_artifacts(record, links),
        warnings=record.warnings,
        error=JobError.model_validate(record.error) if record.error else None,
        manifest=record.manifest,
        links=links.job_links(record),
    )
    if record.finished:
        public.summary = chat_summary(public)
    return public


def to_event(update: JobUpdate, links: Links) -> JobEvent:
    record = update.job
    with_job = update.type in ("status", "done")
    return JobEvent(
        type=update.type,
        job_id=record.id,
        status=record.status,  # type: ignore[arg-type]
        stage=record.stage if record.stage in STAGES else None,  # type: ignore[arg-type]
        progress=record.progress,
        stage_progress=record.stage_progress,
        queue_position=update.queue_position,
        message=update.message or record.message,
        artifact=artifact_key(update.artifact) if update.artifact else None,
        file=update.artifact,
        url=_artifact_url(record.id, update.artifact, links) if update.artifact else None,
        job=to_public(record, update.queue_position, links) if with_job else None,
        at=datetime.fromtimestamp(update.at, tz=UTC),
    )


def to_sse(update: JobUpdate, links: Links, event_id: int) -> ServerSentEvent:
    """One Server-Sent Event: ``event:`` the update's type, ``id:`` the event log id a reconnecting client sends
    back as ``Last-Event-ID``, ``data:`` the ``JobEvent`` as JSON."""
    return ServerSentEvent(data=to_event(update, links).model_dump_json(), event=update.type, id=str(event_id))


def update_from_event(stored: StoredEvent) -> JobUpdate:
    """An update as the worker published it, read back from the event log."""
    data = stored.data
    return JobUpdate(
        type=cast(UpdateType, stored.type),
        job=stored.record,
        queue_position=data.get("queue_position"),
        artifact=data.get("artifact"),
        message=str(data.get("message") or ""),
        at=float(data.get("at") or stored.created_at),
    )


def artifact_key(name: str) -> str:
    """The ``Artifacts`` field a file appears under (``base.png`` → ``base_image``); other files keep their name."""
    if name in ARTIFACT_FIELDS:
        return ARTIFACT_FIELDS[name]
    if name.startswith("views/"):
        return "views"
    return "viewer" if name == "viewer.html" else name


def _artifact_url(job_id: str, name: str, links: Links) -> str:
    return links.viewer(job_id) if name == "viewer.html" else links.artifact(job_id, name)


def _time(value: float | None) -> datetime | None:
    return datetime.fromtimestamp(value, tz=UTC) if value is not None else None


def _prompt(record: JobRecord) -> MaterialPrompt | None:
    if not record.prompt:
        return None
    try:
        return MaterialPrompt.model_validate(record.prompt)
    except ValidationError as exc:
        logger.warning("stored prompt does not match MaterialPrompt", extra={"job_id": record.id, "error": str(exc)})
        return None


def _lora(record: JobRecord) -> LoraChoice | None:
    data: Any = record.lora if record.manifest else record.params.get("lora")
    if not isinstance(data, dict):
        return None
    try:
        return LoraChoice.model_validate({"name": data.get("name"), "scale": data.get("scale", 1.0)})
    except ValidationError:
        return None


def _artifacts(record: JobRecord, links: Links) -> Artifacts:
    found: dict[str, Any] = {"views": []}
    for name in record.artifacts:
        if name in ARTIFACT_FIELDS:
            found[ARTIFACT_FIELDS[name]] = links.artifact(record.id, name)
        elif name.startswith("views/") and name.endswith(".png"):
            found["views"].append(links.artifact(record.id, name))
    found["views"].sort()
    if "model.glb" in record.artifacts:
        found["viewer"] = links.viewer(record.id)
    return Artifacts(**found)
