"""GET/DELETE /jobs/{id} and the plan's heatmap. A job of another API key is a 404."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Response
from fastapi import Path as PathParam

from heterolora.schemas import ErrorBody, JobStatus
from service.api.deps import CallerDep, JobQueueDep
from service.errors import Conflict

router = APIRouter(prefix="/jobs", tags=["jobs"])
JobId = Annotated[str, PathParam(min_length=1, max_length=64)]
ERRORS = {status: {"model": ErrorBody} for status in (401, 404, 409, 503)}


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
    """The plan's ranks per layer and module type, as a PNG; 409 while the job has no plan."""
    from heterolora.heatmap import save_heatmap  # matplotlib, not torch; loaded on first use

    job = queue.get(job_id, caller)
    if job.plan is None:
        raise Conflict(f"job {job_id} is {job.status}: no plan to draw", code="job_not_finished")
    with tempfile.TemporaryDirectory() as tmp:
        png = save_heatmap(job.plan, Path(tmp) / "heatmap.png").read_bytes()
    return Response(png, media_type="image/png")
