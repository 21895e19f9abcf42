"""POST /allocate: submit a planning job (or get the known one for an identical request).

The route is async: `?wait` polls the job store with asyncio.sleep and holds no thread, and at
most HETEROLORA_MAX_WAITERS requests wait at once (per API process); beyond that the answer is
a plain 202. Store calls run in the thread pool, one short call at a time.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from heterolora.schemas import AllocateRequest, ErrorBody, JobStatus
from service.api.deps import JobQueueDep, RateCheckedCallerDep, SettingsDep
from service.api.policy import check_request
from service.jobs.queue import Caller, JobQueue
from service.settings import Settings

router = APIRouter(tags=["allocate"])
ERRORS = {status: {"model": ErrorBody} for status in (400, 401, 403, 409, 413, 422, 429, 503)}


def _submit(body: AllocateRequest, queue: JobQueue, settings: Settings, caller: Caller, key: str | None) -> JobStatus:
    check_request(body, settings)
    return queue.submit(body, key, caller)


@router.post(
    "/allocate",
    status_code=202,
    response_model=JobStatus,
    response_model_exclude_none=True,
    responses={200: {"model": JobStatus, "description": "The job is already finished."}, **ERRORS},
)
async def allocate(
    body: AllocateRequest,
    request: Request,
    response: Response,
    queue: JobQueueDep,
    settings: SettingsDep,
    caller: RateCheckedCallerDep,
    wait: Annotated[float, Query(ge=0, le=60, description="Hold the request up to S seconds for the result.")] = 0,
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
) -> JobStatus:
    """202 with the job's status URL; 200 with the finished job when this request was already planned."""
    job = await run_in_threadpool(_submit, body, queue, settings, caller, idempotency_key)
    request.state.job_id = job.job_id  # for the request's log line
    if wait and not job.done and queue.waiters < settings.max_waiters:
        queue.waiters += 1
        try:
            job = await queue.wait(job.job_id, min(wait, settings.max_wait_s), caller)
        finally:
            queue.waiters -= 1
    response.status_code = 200 if job.done else 202
    response.headers["Location"] = job.status_url
    return job
