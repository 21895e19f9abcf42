"""Errors the SDK raises, and the one function that maps an error body to a class: by its code,
through heterolora.error_codes (the service's own table), else by the HTTP status.

APIError (HeteroLoraError)
 ├── APIConnectionError        the service could not be reached (after retries)
 ├── Timeout                   an HTTP call or a job wait ran out of time
 ├── APIStatusError            a 4xx/5xx answer: .status, .code, .message, .field, .body
 │    ├── BadRequest           400, 413, 422: the input is to blame (.field names it)
 │    ├── Unauthorized         401
 │    ├── PermissionDenied     403: model not allowed
 │    ├── NotFound             404
 │    ├── Conflict             409
 │    ├── RateLimited          429: queue full or per-key rate limit (after retries)
 │    ├── ServiceUnavailable   503 (after retries)
 │    └── InternalServerError  other 5xx
 └── JobFailed                 the job ended failed or cancelled: .code, .message, .field, .job
"""

from __future__ import annotations

from typing import Any

import httpx

from heterolora.error_codes import Kind, kind_of
from heterolora.errors import HeteroLoraError
from heterolora.schemas import JobStatus


class APIError(HeteroLoraError):
    code = "api_error"


class APIConnectionError(APIError):
    code = "connection_error"


class Timeout(APIError):
    code = "timeout"

    def __init__(self, message: str, *, job: JobStatus | None = None) -> None:
        super().__init__(message)
        self.job = job


class APIStatusError(APIError):
    def __init__(self, response: httpx.Response, body: dict[str, Any]) -> None:
        info = body.get("error") if isinstance(body.get("error"), dict) else {}
        message = info.get("message") or response.reason_phrase or f"HTTP {response.status_code}"
        super().__init__(f"{response.status_code} {message}", field=info.get("field"))
        self.status = response.status_code
        self.code = info.get("code") or f"http_{response.status_code}"
        self.response = response
        self.body = body


class BadRequest(APIStatusError):
    pass


class Unauthorized(APIStatusError):
    pass


class PermissionDenied(APIStatusError):
    pass


class NotFound(APIStatusError):
    pass


class Conflict(APIStatusError):
    pass


class RateLimited(APIStatusError):
    pass


class ServiceUnavailable(APIStatusError):
    pass


class InternalServerError(APIStatusError):
    pass


class JobFailed(APIError):
    def __init__(self, job: JobStatus) -> None:
        error = job.error
        code = error.code if error else job.status
        message = error.message if error else f"job {job.job_id} was {job.status}"
        super().__init__(f"job {job.job_id} {job.status}: [{code}] {message}", field=error.field if error else None)
        self.code = code
        self.job = job


_BY_KIND: dict[Kind, type[APIStatusError]] = {
    "bad_request": BadRequest,
    "unauthorized": Unauthorized,
    "forbidden": PermissionDenied,
    "not_found": NotFound,
    "conflict": Conflict,
    "rate_limited": RateLimited,
    "unavailable": ServiceUnavailable,
    "internal": InternalServerError,
}
# For answers without a known code (a proxy's 502, an older service).
_BY_STATUS: dict[int, type[APIStatusError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: PermissionDenied,
    404: NotFound,
    409: Conflict,
    413: BadRequest,
    422: BadRequest,
    429: RateLimited,
    503: ServiceUnavailable,
}


def error_for(response: httpx.Response) -> APIStatusError:
    try:
        body = response.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    info = body.get("error") if isinstance(body.get("error"), dict) else {}
    kind = kind_of(str(info.get("code", "")))
    if kind is not None:
        return _BY_KIND[kind](response, body)
    default = InternalServerError if response.status_code >= 500 else APIStatusError
    return _BY_STATUS.get(response.status_code, default)(response, body)
