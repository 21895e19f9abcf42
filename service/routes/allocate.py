"""POST /allocate: submit a planning job (or get the known one for an identical request)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Response

from heterolora.schemas import AllocateRequest, ErrorBody, JobStatus
from service.deps import ApiKeyDep, JobQueueDep, SettingsDep
from service.policy import check_request

router = APIRouter(tags=["allocate"], dependencies=[ApiKeyDep])
ERRORS = {status: {"model": ErrorBody} for status in (400, 401, 403, 409, 413, 422, 503)}


@router.post(
    "/allocate",
    status_code=202,
    response_model=JobStatus,
    response_model_exclude_none=True,
    responses={200: {"model": JobStatus, "description": "The job is already finished."}, **ERRORS},
)
def allocate(
    body: AllocateRequest,
    response: Response,
    queue: JobQueueDep,
    settings: SettingsDep,
    wait: Annotated[float, Query(ge=0, le=60, description="Hold the request up to S seconds for the result.")] = 0,
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
) -> JobStatus:
    """202 with the job's status URL; 200 with the finished job when this request was already planned."""
    check_request(body, settings)
    job = queue.submit(body, idempotency_key)
    if wait and not job.done:
        job = queue.wait(job.job_id, min(wait, settings.max_wait_s))
    response.status_code = 200 if job.done else 202
    response.headers["Location"] = job.status_url
    return job
