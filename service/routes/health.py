"""Liveness and readiness probes (no auth: orchestrators call them)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from heterolora.schemas import ErrorBody
from service.deps import JobQueueDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up (answered on the event loop: no thread needed)."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"model": ErrorBody}})
def readyz(queue: JobQueueDep) -> dict[str, Any]:
    """Redis answers and at least one worker replies to a ping; 503 otherwise (without Redis's address)."""
    return queue.readiness()
