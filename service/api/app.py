"""The FastAPI app: POST /allocate, /jobs/{id}, health probes, /metrics. `uvicorn service.api.app:app`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.routing import APIRoute

from heterolora import __version__
from service import logs
from service.api import exposure
from service.api.metrics import RequestMetrics
from service.api.middleware import BodySizeLimit
from service.api.probes import ReadinessProbe, install_shutdown_grace
from service.api.routes import allocate, artifacts, health, jobs, metrics
from service.errors import install_error_handlers
from service.jobs.queue import JobQueue
from service.settings import Settings, get_settings

DESCRIPTION = """Plan heterogeneous LoRA ranks with zero-cost proxies.
POST a model id, a data sample and a budget to `/allocate`; poll `/jobs/{id}` for the plan.
Every error body is `{"error": {"code", "message", "field"?}}`."""


def current_settings(app: FastAPI) -> Settings:
    """Settings as routes see them, so `app.dependency_overrides[get_settings]` applies here too."""
    return app.dependency_overrides.get(get_settings, get_settings)()


def build_queue(settings: Settings) -> JobQueue:
    if settings.redis_url:
        from service.jobs.celery_queue import CeleryJobQueue

        return CeleryJobQueue(settings.redis_url, settings)
    from service.jobs.embedded import EmbeddedJobQueue

    return EmbeddedJobQueue(settings)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings = current_settings(app)
    logs.configure(settings.log_format)
    app.state.settings = settings
    app.state.queue = build_queue(settings)
    app.state.readiness = ReadinessProbe(app.state.queue.readiness)
    install_shutdown_grace(settings.shutdown_grace_s)
    watch = exposure.on_startup(settings)  # before any request: no keys on a reachable address
    try:
        yield
    finally:
        if watch is not None:
            watch.cancel()
        app.state.queue.close()


def _operation_id(route: APIRoute) -> str:
    return f"{route.tags[0]}-{route.name}" if route.tags else route.name


def create_app() -> FastAPI:
    app = FastAPI(
        title="HeteroLoRA",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        generate_unique_id_function=_operation_id,
    )
    install_error_handlers(app)
    app.add_middleware(BodySizeLimit, limit=lambda: current_settings(app).max_body_bytes)
    app.add_middleware(exposure.ExposureGuard, settings=lambda: current_settings(app))
    app.add_middleware(RequestMetrics)  # outermost: counts 413s and 401s too
    for router in (allocate.router, jobs.router, artifacts.router, health.router, metrics.router):
        app.include_router(router)
    return app


app = create_app()
