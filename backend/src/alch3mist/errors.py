"""Exceptions of the backend. They become HTTP errors only at the API edge (``api/errors.py``) and exit statuses
only at the command line's (``report_errors``).

Alch3mistError                 every error we raise on purpose; ``code`` is the machine-readable name
├── InvalidRequest             the caller's mistake (empty/huge prompt, bad image, bad option)  -> 4xx
│   ├── UnknownLora            the LoRA name is not in the LoRA folder (message lists the ones that are)
│   └── InvalidLora            not safetensors, corrupt, or for another base model
├── ModelLoadError             weights missing / unreadable
├── OutOfMemory                CUDA OOM even on the lightest memory plan (message says which knob to turn)
├── RewriteError               the LLM rewriter failed (the caller falls back to the offline one)
├── EngineError                a 3D engine failed; names the engine and its URL
│   └── EngineUnavailable      the engine's server is down or timed out
├── MeshError                  a GLB is invalid / empty
├── StageFailed                a stage of the chain failed; ``stage`` says which, earlier artifacts are kept
└── Cancelled                  the job was cancelled; raised at the next step boundary
"""

from __future__ import annotations

import sys
from collections.abc import Callable


class Alch3mistError(Exception):
    code = "error"
    http_status = 500
    exit_status = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequest(Alch3mistError):
    code = "invalid_request"
    http_status = 422
    exit_status = 2


class UnknownLora(InvalidRequest):
    code = "unknown_lora"


class InvalidLora(InvalidRequest):
    code = "invalid_lora"


class ModelLoadError(Alch3mistError):
    code = "model_load_error"


class OutOfMemory(Alch3mistError):
    code = "out_of_memory"
    http_status = 503
    exit_status = 3


class RewriteError(Alch3mistError):
    code = "rewrite_error"


class EngineError(Alch3mistError):
    code = "engine_error"
    http_status = 502

    def __init__(self, engine: str, url: str | None, message: str) -> None:
        where = f" at {url}" if url else ""
        super().__init__(f"3D engine '{engine}'{where}: {message}")
        self.engine = engine
        self.url = url


class EngineUnavailable(EngineError):
    code = "engine_unavailable"
    http_status = 503


class MeshError(Alch3mistError):
    code = "mesh_error"


class StageFailed(Alch3mistError):
    code = "stage_failed"

    def __init__(self, stage: str, cause: BaseException) -> None:
        super().__init__(f"stage '{stage}' failed: {cause}")
        self.stage = stage
        self.cause = cause


class Cancelled(Alch3mistError):
    code = "cancelled"
    http_status = 409


def report_errors(command: Callable[[], int]) -> int:
    """Run a command's body; an ``Alch3mistError`` becomes one line on stderr and its ``exit_status``
    (2 bad input, 3 out of memory, 1 anything else), never a traceback."""
    try:
        return command()
    except Alch3mistError as error:
        sys.stderr.write(f"error: {error.message}\n")
        return error.exit_status
