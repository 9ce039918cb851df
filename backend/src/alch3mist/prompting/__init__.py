"""Prompt rewrite: a person's request -> :class:`MaterialPrompt` (base prompt for FLUX.1-dev, edit prompt for Kontext).

``PromptRewriter``       what the chain uses: the LLM rewriter when ``llm_url`` is set, else (or when it fails,
                         with a warning) the offline one
``LLMRewriter``          any OpenAI-compatible chat endpoint; JSON validated, one repair round, timeout
``rewrite_offline``      deterministic, no network: Lingua, simplemma, FreeDict dictionaries, WordNet (9 languages)
``prompt_from_caller``   prompts the caller already wrote, validated and completed
``clean_request``        trigger phrase removed, empty / too-long requests refused

Importing this package is cheap (httpx and pydantic only); nothing runs at import.
"""

from __future__ import annotations

from .llm import LLMRewriter
from .offline import clean_request, detect_language, rewrite_offline
from .rewrite import PromptRewriter, RewriteOutcome, prompt_from_caller
from .schema import TRIGGER_WORD, MaterialPrompt

__all__ = [
    "TRIGGER_WORD",
    "LLMRewriter",
    "MaterialPrompt",
    "PromptRewriter",
    "RewriteOutcome",
    "clean_request",
    "detect_language",
    "prompt_from_caller",
    "rewrite_offline",
]
