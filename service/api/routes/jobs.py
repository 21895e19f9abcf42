"""GET/DELETE /jobs/{id} and the plan's heatmap. A job of another API key is a 404."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Response
from fastapi import Path as PathParam

from heterolora.plans import Plan
from heterolora.schemas import ErrorBody, JobStatus
from service.api.deps import CallerDep, JobQueueDep
from service.errors import APIError, Conflict

router = APIRouter(prefix="/jobs", tags=["jobs"])
JobId = Annotated[str, PathParam(min_length=1, max_length=64)]
ERRORS = {status: {"model": ErrorBody} for status in (401, 404, 409, 503)}


def require_plan(job: JobStatus, what: str) -> Plan:
    """The job's plan: 404 `artifact_not_found` for a job that ended without one (failed or
    cancelled), 409 `job_not_finished` while it is queued or running."""
    if job.status in ("failed", "cancelled"):
        raise APIError(f"job {job.job_id} {job.status}: it has no {what}", code="artifact_not_found", field="job_id")
    if job.plan is None:
        raise Conflict(f"job {job.job_id} is {job.status}: no {what} yet", code="job_not_finished")
    return job.plan


@router.get("/{job_id}", response_model=JobStatus, response_model_exclude_none=True, responses=ERRORS)
def get_job(job_id: JobId, queue: JobQueueDep, caller: CallerDep) -> JobStatus:
    """Status, progress (0..1 and phase), timestamps, and the plan or the error."""
    return queue.get(job_id, caller)


@router.delete("/{job_id}", response_model=JobStatus, response_model_exclude_none=True, responses=ERRORS)
def cancel_job(job_id: JobId, queue: JobQueueDep, caller: CallerDep) -> JobStatus:
    """Cancel a queued or running job; 409 when it already succeeded or failed."""
    return queue.cancel(job_id, caller)


@router.get(
    "/{job_id}/heatmap.png",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}, "description": "The heatmap."}, **ERRORS},
)
def heatmap(job_id: JobId, queue: JobQueueDep, caller: CallerDep) -> Response:
    """The plan's ranks per layer and module type, as a PNG; 409 while the job runs, 404 when it
    failed or was cancelled."""
    from heterolora.heatmap import save_heatmap  # matplotlib, not torch; loaded on first use

    plan = require_plan(queue.get(job_id, caller), "plan to draw")
    with tempfile.TemporaryDirectory() as tmp:
        png = save_heatmap(plan, Path(tmp) / "heatmap.png").read_bytes()
    return Response(png, media_type="image/png")
