"""Chat-ready text for a finished job: the markdown summary the plugins show under the results (``JobPublic.summary``).

Everything a person or a model wrote (prompts, title, warnings, error messages) is escaped for Open WebUI's
markdown with ``md_text``: no HTML, no links, no formatting, no math. The plugins keep marked copies of ``md_text``
(``# Copied from alch3mist.api.chat.md_text``) for their own messages; tests/test_copies.py keeps them equal.
"""

from __future__ import annotations

import re
from typing import Any

from ..domain import STAGE_LABELS
from .schemas import JobPublic

__all__ = ["chat_summary", "md_code", "md_text"]

_WRITERS = {
    "llm": "the backend's LLM",
    "offline": "the backend's offline rewriter",
    "caller": "the caller (e.g. the rewrite model in Open WebUI)",
}


def md_text(text: Any, limit: int = 2000) -> str:
    """Escape user- or model-written text for Open WebUI's markdown: no HTML, no links, no formatting, no math.

    Backslash escapes (Open WebUI shows them as the literal character) for markdown's and HTML's special characters;
    never for ``(``, ``)`` or ``[``: Open WebUI's KaTeX extension reads ``\\(``, ``\\)`` and ``\\[`` as math.
    An escaped ``]`` is enough to stop a link.
    """
    text = " ".join(str(text).split())[:limit]
    return re.sub(r"([\\`*_{}\]#+!|~<>&$])", r"\\\1", text)


def md_code(text: Any) -> str:
    """Text for inside a markdown code span (where backslash escapes do not apply): no backticks, one line."""
    return " ".join(str(text).replace("`", "'").split())[:200]


def chat_summary(job: JobPublic) -> str:
    """What was made and how to reproduce it — or where it failed — as escaped markdown lines. The plugins add
    their own lines (download, notes) and the job marker they read back to refine it."""
    lines = [_headline(job)]
    retexture = (job.manifest or {}).get("flow") == "retexture"  # a given mesh: no base image, no 3D engine
    if job.prompt is not None:
        if not retexture:
            lines.append(f"- **Base prompt:** {md_text(job.prompt.base_prompt)}")
        lines.append(f"- **Material prompt:** {md_text(job.prompt.edit_prompt)}")
        lines.append(f"- **Prompts written by:** {_WRITERS[job.prompt.rewriter]}")
    if job.seed is not None:
        lines.append(f"- **Seed:** {job.seed}")
    if retexture:
        lines.extend(_texture_lines(job.manifest or {}))
    else:
        lines.append(f"- **3D engine:** {_engine_label(job.engine_3d)}")
    if job.lora is not None:
        lines.append(f"- **LoRA:** {md_text(job.lora.name or 'server default')} × {job.lora.scale:g}")
    else:
        lines.append("- **LoRA:** none (Kontext without a material LoRA)")
    lines.extend(f"- *Warning:* {md_text(warning, 300)}" for warning in job.warnings)
    return "\n".join(lines)


def _headline(job: JobPublic) -> str:
    if job.status == "succeeded":
        return f"### {md_text(job.prompt.title if job.prompt else 'Your 3D asset', 80)}\n"
    if job.status == "cancelled":
        return "**The generation was cancelled.** The results above are what was finished.\n"
    stage = (job.error.stage if job.error else None) or job.stage
    where = STAGE_LABELS[stage] if stage else "a stage"
    message = md_text(job.error.message if job.error else "no detail")
    code = md_text(job.error.code if job.error else job.status)
    return (
        f"**The generation failed at: {where}** — {message} ({code}). "
        "The results above were finished before the failure.\n"
    )


def _texture_lines(manifest: dict[str, Any]) -> list[str]:
    """The given mesh and how it was painted (the manifest's ``input_mesh`` and ``texture`` sections)."""
    mesh, texture = manifest.get("input_mesh") or {}, manifest.get("texture") or {}
    faces = mesh.get("faces")
    size = f", {faces:,} faces" if isinstance(faces, int) else ""
    lines = [f"- **Mesh:** your {md_text(str(mesh.get('format') or 'mesh').upper())}{size}, painted as given"]
    coverage = texture.get("coverage")
    seen = f" ({coverage:.0%} of the surface seen by its views)" if isinstance(coverage, float) else ""
    lines.append(f"- **Texture engine:** {md_text(texture.get('engine') or 'server default')}{seen}")
    lines.extend(f"- *Mesh:* {md_text(note, 300)}" for note in mesh.get("notes") or [])
    return lines


def _engine_label(engine: str | None) -> str:
    if not engine:
        return "server default"
    if engine == "preview":
        return "preview (the built-in CPU engine: a rough preview, not a TRELLIS-quality mesh)"
    return md_text(engine)
