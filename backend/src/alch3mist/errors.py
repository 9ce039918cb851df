"""Exceptions of the backend. They become HTTP errors only at the API edge (``api/errors.py``) and exit statuses
only at the command line's (``report_errors``).

Alch3mistError                 every error we raise on purpose; ``code`` is the machine-readable name
├── InvalidRequest             the caller's mistake (empty/huge prompt, bad image, bad option)           -> 422
│   ├── UnknownLora            the LoRA name is not in the LoRA folder (message lists the ones that are)
│   ├── InvalidLora            not safetensors, corrupt, or for another base model
│   ├── InvalidParent          ``parent`` names no job of this caller's, or one without a base image yet
│   ├── OverLimit              a parameter is above the API key's ceiling (steps, size, views, …)
│   ├── DatasetError           a LoRA dataset that cannot be built, imported or read as asked
│   └── InvalidMesh            a mesh to texture is unreadable, empty, a point cloud, or needs what we lack
│       └── MeshTooLarge       the mesh file or its face count is over the limit (the message offers decimation) -> 413
├── JobNotFound                no job with that id (or it belongs to another owner)                       -> 404
├── JobNotActive               cancelling a job that has already finished                                 -> 409
├── QueueFull                  the caller already has too many queued or running jobs                      -> 429
│   └── RateLimited            the key or end user started too many jobs in the last hour; has Retry-After
├── ServiceBusy                the whole queue is full (``ALCH3MIST_MAX_QUEUE``); has Retry-After          -> 503
├── ServiceUnavailable         the job database cannot be reached (down, restarting); has Retry-After     -> 503
├── RetryLater                 base of the three with Retry-After (RateLimited, ServiceBusy, ServiceUnavailable)
├── UnsafeConfiguration        the settings would expose the service (no API keys on a public address)
├── ModelLoadError             weights missing / unreadable
├── OutOfMemory                CUDA OOM even on the lightest memory plan (message says which knob to turn) -> 503
├── RewriteError               the LLM rewriter failed (the caller falls back to the offline one)
├── EngineError                a 3D engine failed; names the engine and its URL                           -> 502
│   └── EngineUnavailable      the engine's server is down or timed out                                   -> 503
├── ComfyUIError               the ComfyUI server refused or failed a workflow; names the server and node -> 502
│   └── ComfyUIUnavailable     the ComfyUI server is down, timed out or dropped the connection            -> 503
├── MeshError                  a GLB is invalid / empty
├── StorageError               artifact storage failed an operation; names the storage and the artifact   -> 503
│   └── StorageConfigError     ALCH3MIST_STORAGE_URL is malformed or its bucket unreachable at start
├── ArtifactNotFound           a job has no artifact of that name (or the name is not a valid one)       -> 404
└── Cancelled                  the job was cancelled; raised at the next step boundary

A stage that fails does not raise out of the chain: ``Chain.run`` records the stage and its error in the manifest.
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


class InvalidParent(InvalidRequest):
    code = "invalid_parent"


class OverLimit(InvalidRequest):
    code = "over_limit"


class DatasetError(InvalidRequest):
    """Raised when a LoRA dataset cannot be built, imported or read as asked (the message says what to fix)."""

    code = "invalid_dataset"


class InvalidMesh(InvalidRequest):
    """Raised when a mesh to texture is unreadable, empty, a point cloud, or uses what we cannot decode."""

    code = "invalid_mesh"


class MeshTooLarge(InvalidMesh):
    """Raised when a mesh file or its face count is over the limit (the message offers decimation)."""

    code = "mesh_too_large"
    http_status = 413


class JobNotFound(Alch3mistError):
    code = "job_not_found"
    http_status = 404


class JobNotActive(Alch3mistError):
    code = "job_finished"
    http_status = 409


class QueueFull(Alch3mistError):
    code = "too_many_jobs"
    http_status = 429


class RetryLater(Alch3mistError):
    """An error that says when to try again: ``retry_after_s`` (the API sends it as ``Retry-After``)."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class RateLimited(QueueFull, RetryLater):
    code = "rate_limited"


class ServiceBusy(RetryLater):
    code = "queue_full"
    http_status = 503


class ServiceUnavailable(RetryLater):
    """Raised when the job database (or another shared service we need) cannot be reached; retrying later works."""

    code = "service_unavailable"
    http_status = 503


class UnsafeConfiguration(Alch3mistError):
    code = "unsafe_configuration"
    exit_status = 2


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
        self.reason = message  # without the engine and URL (health details name them already)


class EngineUnavailable(EngineError):
    code = "engine_unavailable"
    http_status = 503


class ComfyUIError(Alch3mistError):
    code = "comfyui_error"
    http_status = 502

    def __init__(self, url: str, message: str) -> None:
        super().__init__(f"ComfyUI at {url}: {message}")
        self.url = url


class ComfyUIUnavailable(ComfyUIError):
    code = "comfyui_unavailable"
    http_status = 503


class MeshError(Alch3mistError):
    code = "mesh_error"


class StorageError(Alch3mistError):
    """Raised when artifact storage fails an operation; the message names the storage and the artifact."""

    code = "storage_error"
    http_status = 503


class StorageConfigError(StorageError):
    """Raised at start when ``ALCH3MIST_STORAGE_URL`` is malformed or its bucket cannot be reached."""

    code = "storage_misconfigured"
    exit_status = 2


class ArtifactNotFound(Alch3mistError):
    """Raised when a job has no artifact of that name, or the name could not be one (``..``, absolute, …)."""

    code = "artifact_not_found"
    http_status = 404


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
