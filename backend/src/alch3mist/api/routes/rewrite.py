"""``POST /v1/rewrite``: the chat messages that turn a request into prompts, for a caller with a model of its own.

Open WebUI's pipe sends them to the admin's rewrite model and passes the answer back as ``rewrite_reply`` with the
job; the backend validates it like its own LLM's. The rules, the JSON schema and the data delimiters live here only.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from ...jobs.service import rewrite_messages_for
from ..deps import CallerDep, SettingsDep, StoreDep
from ..schemas import ChatMessage, ErrorResponse, RewriteCreate, RewriteMessages

router = APIRouter(prefix="/v1", tags=["rewrite"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "The request body could not be read (e.g. not UTF-8)."},
    401: {"model": ErrorResponse, "description": "Missing or invalid API key."},
    413: {"model": ErrorResponse, "description": "Request body too large."},
    422: {"model": ErrorResponse, "description": "Empty or too long request, or a parent that is not the caller's."},
}


@router.post("/rewrite", response_model=RewriteMessages, responses=_ERRORS)
def create_rewrite_messages(
    body: RewriteCreate, caller: CallerDep, settings: SettingsDep, store: StoreDep
) -> RewriteMessages:
    """Messages for any OpenAI-compatible chat model: the rules, then the request (and the earlier prompts of the
    ``parent`` it refines) as one delimited block of data. Send its answer with the job as ``rewrite_reply``."""
    messages = rewrite_messages_for(body.request, body.parent, caller, settings, store)
    return RewriteMessages(messages=[ChatMessage.model_validate(message) for message in messages])
