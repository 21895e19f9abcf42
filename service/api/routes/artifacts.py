"""GET /jobs/{id}/adapter.safetensors: the init tensor file of a plan made with init="gradient"."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Response

from heterolora.init.format import sha256_hex
from heterolora.schemas import ErrorBody
from service.api.deps import CallerDep, JobQueueDep
from service.api.routes.jobs import JobId, require_plan
from service.errors import APIError, Unavailable

router = APIRouter(prefix="/jobs", tags=["jobs"])
ERRORS = {status: {"model": ErrorBody} for status in (401, 404, 409, 503)}


class ArtifactNotFound(APIError):
    code = "artifact_not_found"


def matches(etag: str, if_none_match: str) -> bool:
    """If-None-Match compares weakly (RFC 9110, 13.1.2): W/"x" matches "x"; `*` matches any."""
    tags = [t.strip() for t in if_none_match.split(",")]
    return "*" in tags or etag in [t.removeprefix("W/") for t in tags]


@router.get(
    "/{job_id}/adapter.safetensors",
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {}}}, 304: {"description": "Not modified"}, **ERRORS},
)
def adapter_file(
    job_id: JobId, queue: JobQueueDep, caller: CallerDep, if_none_match: Annotated[str | None, Header()] = None
) -> Response:
    """The plan's LoRA A/B init (safetensors, PEFT key layout). ETag = its sha256, as in plan.init."""
    # 404 for unknown, expired or another key's jobs, like GET /jobs/{id}
    plan = require_plan(queue.get(job_id, caller), "init file")
    if plan.init is None:
        raise ArtifactNotFound(f"job {job_id}'s plan has no init; request it with init='gradient'", field="init")
    etag = f'"{plan.init.sha256}"'
    if if_none_match is not None and matches(etag, if_none_match):
        return Response(status_code=304, headers={"ETag": etag})
    data = queue.artifacts.get(job_id)
    if data is None:
        raise ArtifactNotFound(f"the init file of job {job_id} is gone (expired with the job)", field="job_id")
    if sha256_hex(data) != plan.init.sha256:
        raise Unavailable(f"the stored init file of job {job_id} does not match its plan", code="artifact_corrupt")
    return Response(data, media_type="application/octet-stream", headers={"ETag": etag})
