"""The FastAPI app: ``create_app(settings)`` builds it, ``serve(settings)`` runs it under uvicorn.

Before anything loads, ``check_settings`` refuses what would expose the service: no API keys on an address other
than loopback (unless ``--insecure-no-auth``), a malformed ``ALCH3MIST_API_KEYS`` entry, limits for unknown keys.

Startup (lifespan), in order: open the jobs store → check the artifact storage (the local folder, or an S3 bucket
that must answer; ``serve`` checks it before uvicorn starts, so a bad one is one clear line) → purge expired jobs →
start the worker (embedded mode; in the cluster mode — ``ALCH3MIST_BROKER_URL`` set — a ``jobs.cluster.ClusterQueue``
that sends jobs to Celery workers, loads nothing and leaves running jobs to their workers): it marks jobs
interrupted by a previous process as failed, starts the chain process (``jobs/child.py``, which loads the models
once; the port opens only after that) and requeues the queued jobs → periodic retention. No model loads in this
process: the routes see the chain through ``worker.chain`` (``jobs.worker.ChainView``). Shutdown stops the worker,
which fails a running job with "backend stopped while this job was running" and ends the chain process.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI

from .. import __name__ as package_name
from ..config import Settings, get_settings
from ..errors import UnsafeConfiguration, report_errors
from ..jobs.cluster import ClusterQueue
from ..jobs.queue import JobQueue
from ..jobs.retention import purge_expired, retention_loop
from ..jobs.store import JobStore
from ..jobs.worker import Worker
from ..storage import ArtifactStorage, storage_from_settings
from .errors import install_error_handlers
from .logs import configure_logging
from .middleware import BodyLimit, BrowserCors
from .routes import artifacts, info, jobs, rewrite
from .signing import LinkSigner

__all__ = ["check_settings", "create_app", "main", "serve"]

logger = logging.getLogger("alch3mist.api.main")  # also when run as ``python -m``


def create_app(settings: Settings) -> FastAPI:
    app = FastAPI(
        title="material-alch3mist",
        version=_version(),
        summary="Text → FLUX.1-dev → FLUX.1 Kontext + Alch3mist LoRA → textured GLB, multiview renders and a viewer.",
        lifespan=_lifespan,
    )
    app.state.settings = settings
    app.state.signer = LinkSigner(settings.link_secret.get_secret_value().encode())
    app.state.storage = storage_from_settings(settings)  # no network yet: ``check`` runs at start
    install_error_handlers(app)
    app.add_middleware(BrowserCors)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.include_router(info.router)
    app.include_router(jobs.router)
    app.include_router(artifacts.router)
    app.include_router(rewrite.router)
    return app


def check_settings(settings: Settings) -> None:
    """Raise ``UnsafeConfiguration`` for settings that would expose the service or silently not apply."""
    try:
        keys = settings.parsed_api_keys()
        for name in settings.key_limits:
            if name not in keys:
                raise ValueError(f"ALCH3MIST_KEY_LIMITS names {name!r}, which is not a key in ALCH3MIST_API_KEYS")
            settings.limits_for(name)
        settings.limits_for(None)
    except ValueError as exc:
        raise UnsafeConfiguration(str(exc)) from exc
    if not keys and not _is_loopback(settings.host) and not settings.insecure_no_auth:
        raise UnsafeConfiguration(
            f"refusing to serve on {settings.host} without API keys: anyone who reaches the port could run jobs and "
            "read every job. Set ALCH3MIST_API_KEYS (e.g. openwebui:<random>), listen on 127.0.0.1, or — only on a "
            "trusted, isolated network — pass --insecure-no-auth (ALCH3MIST_INSECURE_NO_AUTH=true)."
        )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    if not settings.parsed_api_keys():
        logger.warning("no API keys configured: every caller is anonymous (loopback or --insecure-no-auth only)")
    store = JobStore(settings.data_dir, settings.database_url_value())
    storage: ArtifactStorage = app.state.storage
    await asyncio.to_thread(storage.check)
    await asyncio.to_thread(purge_expired, store, storage, settings.retention_days)
    worker: JobQueue
    if settings.broker_url_value():  # cluster mode: jobs run on `alch3mist worker` processes, no model here
        worker = ClusterQueue(store, settings, storage)
    else:
        logger.info("loading the chain in the worker process", extra={"preset": settings.preset})
        worker = Worker(store, settings, storage=storage)
    await asyncio.to_thread(worker.start)
    app.state.store, app.state.chain, app.state.worker = store, worker.chain, worker
    retention = asyncio.create_task(retention_loop(store, storage, settings.retention_days))
    where = {"data_dir": str(settings.data_dir), "storage": storage.description}
    logger.info("ready", extra={"host": settings.host, "port": settings.port, **where})
    try:
        yield
    finally:
        retention.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await retention
        await asyncio.to_thread(worker.stop)
        store.close()
        logger.info("stopped")


def serve(settings: Settings) -> None:
    """Run the service in the foreground (``alch3mist serve``); refuses unsafe settings first."""
    check_settings(settings)
    configure_logging()
    app = create_app(settings)
    app.state.storage.check()  # before the models load: a bad URL or bucket is one line and exit status 2
    uvicorn.run(app, host=settings.host, port=settings.port, log_config=None, timeout_graceful_shutdown=5)


def main() -> None:
    def run() -> int:
        serve(get_settings())
        return 0

    raise SystemExit(report_errors(run))


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package_name)
    except PackageNotFoundError:
        return "0.0.0"


if __name__ == "__main__":
    main()
