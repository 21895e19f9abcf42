"""Liveness and readiness probes (no auth: orchestrators call them). What each promises:
service.api.probes and docs/service.md, "Health and probes"."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from heterolora.schemas import ErrorBody
from service.api.probes import liveness

router = APIRouter(tags=["health"])
UNAVAILABLE = {503: {"model": ErrorBody}}


@router.get("/healthz", responses=UNAVAILABLE)
async def healthz(request: Request) -> dict[str, Any]:
    """The process serves: a no-op runs through the request thread pool within
    HETEROLORA_HEALTH_TIMEOUT_S; 503 (with the busy threads) otherwise."""
    return await liveness(request.app.state.settings.health_timeout_s)


@router.get("/readyz", responses=UNAVAILABLE)
async def readyz(request: Request) -> dict[str, Any]:
    """Redis answers and at least one worker replies to a ping; 503 otherwise (without Redis's
    address). One check runs at a time and its answer is reused for a second."""
    return await request.app.state.readiness()
