"""What the rest of the backend calls: :class:`PromptRewriter` (LLM, else offline) and :func:`prompt_from_caller`."""

from __future__ import annotations

import logging
import re

from pydantic import BaseModel, Field

from ..config import Settings
from ..errors import InvalidRequest, RewriteError
from .llm import LLMRewriter, errors_text, parse_reply
from .offline import DEFAULT_MATERIAL, clean_request, detect_language, offline_rewriter
from .schema import MAX_PROMPT_CHARS, TRIGGER_WORD, MaterialPrompt
from .text import clean_text, fold, strip_trigger, truncate
from .vocabulary import MATERIAL_ADJECTIVES, MATERIAL_DETAILS

__all__ = ["PromptRewriter", "RewriteOutcome", "caller_prompt", "clean_request", "prompt_from_caller"]

logger = logging.getLogger(__name__)

_LEADING_FILLER = re.compile(
    r"^(?:(?:a|an)\s+)?(?:(?:studio|product|3d|high[- ]quality)\s+)*(?:photo|picture|image|render|rendering|shot)"
    r"\s+of\s+",
    re.IGNORECASE,
)
_SINGLE = re.compile(r"^(?:a|an|one)\s+single\s+", re.IGNORECASE)
_INTO = re.compile(r"\b(?:into|to|of|from|with|in)\s+(.+)$", re.IGNORECASE)


class RewriteOutcome(BaseModel):
    """The prompt and what went wrong on the way (recorded in the job's manifest)."""

    prompt: MaterialPrompt
    warnings: list[str] = Field(default_factory=list)


class PromptRewriter:
    """The LLM rewriter when ``settings.llm_url`` is set, falling back to the offline one (with a warning)."""

    def __init__(self, settings: Settings) -> None:
        self.max_request_chars = settings.max_request_chars
        self.offline = offline_rewriter(settings.dictionary_dir, settings.wordnet_dir, settings.cache_dir)
        self.offline.warm()  # the service start loads the language resources, not the first request
        self.llm: LLMRewriter | None = None
        if settings.llm_url:
            self.llm = LLMRewriter(
                settings.llm_url,
                settings.llm_api_key.get_secret_value() or None,
                settings.llm_model,
                settings.llm_timeout_s,
            )

    @property
    def name(self) -> str:
        """``llm (<model> at <url>)`` or ``offline``, for manifests and /v1/info."""
        return f"llm ({self.llm.model} at {self.llm.base_url})" if self.llm else "offline"

    def rewrite(
        self, request: str, earlier: MaterialPrompt | None = None, reply: str | None = None
    ) -> RewriteOutcome:
        """Rewrite one request; raises :class:`InvalidRequest` when it is empty or too long.

        ``earlier``: the prompt of the job this request refines (context for the LLM, inside the data block).
        ``reply``: the caller's own model's answer to ``rewrite_messages`` — used when valid, else the request is
        rewritten here and a warning says why.
        """
        text = clean_request(request, self.max_request_chars)
        warnings: list[str] = []
        if reply is not None:
            try:
                return RewriteOutcome(prompt=parse_reply(reply, rewriter="caller"))
            except ValueError as exc:
                problem = errors_text(exc)[:300]
                warnings.append(f"the caller's rewrite model gave no usable prompt ({problem}); the backend rewrote it")
        if self.llm is not None:
            try:
                return RewriteOutcome(prompt=self.llm.rewrite(text, earlier), warnings=warnings)
            except RewriteError as exc:
                warning = f"the LLM rewrite failed, so the offline rewriter was used: {exc.message}"
                logger.warning("%s", warning)
                warnings.append(warning)
        prompt, notes = self.offline.rewrite(text)
        return RewriteOutcome(prompt=prompt, warnings=warnings + notes)


def caller_prompt(
    base_prompt: str | None, edit_prompt: str | None, title: str | None, has_image: bool
) -> MaterialPrompt | None:
    """The prompt the caller wrote — both prompts, or only the edit prompt for an image of its own — or None when
    the request is to be rewritten. Raises :class:`InvalidRequest` for prompts that cannot be used (checked before
    a job is queued, and again when it runs)."""
    if base_prompt is not None and edit_prompt is not None:
        return prompt_from_caller(base_prompt, edit_prompt, title)
    if edit_prompt is not None and has_image:
        return prompt_from_caller(edit_prompt, edit_prompt, title)
    return None


def prompt_from_caller(base_prompt: str, edit_prompt: str, title: str | None) -> MaterialPrompt:
    """A :class:`MaterialPrompt` from prompts the caller already wrote (``rewriter="caller"``).

    Both prompts are cleaned of markup and must fit :data:`MAX_PROMPT_CHARS`; the trigger word is put first in the
    edit prompt when missing. Subject, materials and title are derived from the prompts when not given.
    """
    base = _caller_text("base_prompt", base_prompt)
    edit = _caller_text("edit_prompt", edit_prompt)
    edit = f"{TRIGGER_WORD}, {strip_trigger(edit)}" if strip_trigger(edit) else TRIGGER_WORD
    if len(edit) > MAX_PROMPT_CHARS:
        raise InvalidRequest(
            f"edit_prompt is {len(edit)} characters long with the trigger word {TRIGGER_WORD!r} in front; "
            f"the limit is {MAX_PROMPT_CHARS} characters"
        )
    subject = _subject_of(base)
    materials = _materials_of(edit)
    clean_title = clean_text(title or "", 80) or truncate(f"{subject[:1].upper()}{subject[1:]}: {materials[0]}", 80)
    return MaterialPrompt(
        subject=subject,
        materials=materials,
        base_prompt=base,
        edit_prompt=edit,
        title=clean_title,
        language=detect_language(f"{base} {edit}"),
        rewriter="caller",
    )


def _caller_text(name: str, value: str) -> str:
    text = clean_text(value, len(value) + 1)
    if not text:
        raise InvalidRequest(f"{name} is empty (after removing markup): describe the object / the material")
    if len(text) > MAX_PROMPT_CHARS:
        raise InvalidRequest(f"{name} is {len(text)} characters long; the limit is {MAX_PROMPT_CHARS} characters")
    return text


def _subject_of(base_prompt: str) -> str:
    """``"A single cow, centred, …"`` -> ``"a cow"``: the first clause without "a photo of" / "single".

    A "base prompt" that is really an edit instruction (the caller's own image is edited) gives "the object".
    """
    if strip_trigger(base_prompt) != base_prompt:
        return "the object"
    clause = re.split(r"[,.;:]", base_prompt, maxsplit=1)[0].strip()
    clause = _LEADING_FILLER.sub("", clause)
    clause = _SINGLE.sub("a ", clause)
    clause = clause[:1].lower() + clause[1:] if clause[:2] != clause[:2].upper() else clause
    return truncate(clause, 120) or truncate(base_prompt, 120)


def _materials_of(edit_prompt: str) -> list[str]:
    """Known material words in the edit prompt, else the phrase after "into / to / with …" in its first clause."""
    found: list[str] = []
    for word in re.findall(r"[\w-]+", fold(strip_trigger(edit_prompt))):
        material = MATERIAL_ADJECTIVES.get(word, word)
        if material in MATERIAL_DETAILS and material not in found:
            found.append(material)
    if found:
        return found[:6]
    first = re.split(r"[,.;:(]", strip_trigger(edit_prompt), maxsplit=1)[0].strip()
    match = _INTO.search(first)
    phrase = (match.group(1) if match else first).strip()
    return [truncate(phrase, 80) or DEFAULT_MATERIAL]
