"""The structured prompt every stage works from."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, field_validator

TRIGGER_WORD = "Alch3mist"
MAX_PROMPT_CHARS = 600


class MaterialPrompt(BaseModel):
    """A request rewritten for the two FLUX stages.

    ``base_prompt`` describes the plain object as image-to-3D needs it (single, centred, whole, plain light
    background, soft studio light, no text, no scene). ``edit_prompt`` is the Kontext instruction: it starts with
    the trigger word and describes surface material, texture, colour and finish while keeping shape and pose.
    """

    subject: str = Field(..., min_length=1, max_length=120, description="The object, e.g. 'a cow'.")
    materials: list[str] = Field(..., min_length=1, max_length=6, description="Materials, e.g. ['crocodile skin'].")
    base_prompt: str = Field(..., min_length=1, max_length=MAX_PROMPT_CHARS)
    edit_prompt: str = Field(..., min_length=1, max_length=MAX_PROMPT_CHARS)
    title: str = Field(..., min_length=1, max_length=80)
    language: str = Field("en", max_length=16, description="ISO 639-1 code of the request, or 'unknown'.")
    rewriter: Literal["llm", "offline", "caller"] = "offline"

    @field_validator("edit_prompt")
    @classmethod
    def _starts_with_trigger(cls, value: str) -> str:
        if not value.lstrip().lower().startswith(TRIGGER_WORD.lower()):
            raise ValueError(f"edit_prompt must start with the trigger word {TRIGGER_WORD!r}")
        return value.strip()

    @field_validator("materials")
    @classmethod
    def _materials_not_blank(cls, value: list[str]) -> list[str]:
        cleaned = [m.strip()[:80] for m in value if m.strip()]
        if not cleaned:
            raise ValueError("materials must name at least one material")
        return cleaned
