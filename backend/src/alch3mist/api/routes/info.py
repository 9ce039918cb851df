"""``/healthz`` (no auth), ``/v1/info`` (what this server runs: preset, device, engines, LoRAs, queue, limits) and
``/v1/limits`` (only the caller's limits: what a plugin reads for every message, without ``/v1/info``'s engine
health checks, which are network calls)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from ...config import Limits
from ..deps import CallerDep, ChainDep, SettingsDep, WorkerDep
from ..schemas import ErrorResponse, Health, Info

router = APIRouter(tags=["info"])


@router.get("/healthz", response_model=Health)
def read_health(request: Request) -> Health:
    """Liveness: answers once the models are loaded and the worker runs. No API key needed."""
    worker = getattr(request.app.state, "worker", None)
    return Health(status="ok", queue_length=worker.queue_length() if worker else 0)


@router.get("/v1/info", response_model=Info, responses={401: {"model": ErrorResponse, "description": "Bad key."}})
def read_info(request: Request, caller: CallerDep, settings: SettingsDep, chain: ChainDep, worker: WorkerDep) -> Info:
    """Preset, device, memory plan, models, 3D engines (with health), LoRAs, defaults, queue length, and this key's
    quotas and parameter ceilings."""
    return Info(
        **dict(chain.info()),
        version=request.app.version,
        queue_length=worker.queue_length(),
        running=worker.running_id() if caller.admin else None,
        limits=settings.limits_for(caller.key_name),
    )


@router.get("/v1/limits", response_model=Limits, responses={401: {"model": ErrorResponse, "description": "Bad key."}})
def read_limits(caller: CallerDep, settings: SettingsDep) -> Limits:
    """This API key's quotas and parameter ceilings (a job above a ceiling is refused with 422)."""
    return settings.limits_for(caller.key_name)
