"""Errors -> HTTP. Routes raise domain errors; the handlers here give every 4xx/5xx the body
{"error": {"code", "message", "field"?}}.

    APIError                       service-level errors, each with its status
     ├── Unauthorized        401
     ├── JobNotFound         404
     ├── Conflict            409   idempotency key reused with another body; job not finished
     ├── TooManyRequests     429   queue full or per-key rate limit (with Retry-After)
     └── Unavailable         503   Redis or workers unreachable (with Retry-After)
    heterolora.errors.*            the status of their code in heterolora.error_codes
    (bodies over the size cap get 413 from service.api.middleware, before parsing)
Codes and their statuses are defined once, in heterolora.error_codes.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path

from heterolora.error_codes import status_of
from heterolora.errors import HeteroLoraError
from heterolora.schemas import ErrorBody, ErrorInfo

log = logging.getLogger("heterolora.service")
RETRY_AFTER_S = 2
# Starlette's own HTTP errors. FastAPI raises its only 400 when a body is not UTF-8 JSON it can
# parse (bad bytes, nesting past the recursion limit): that is invalid JSON to a client.
HTTP_CODES = {
    400: "invalid_json",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


class APIError(Exception):
    code = "internal_error"

    def __init__(self, message: str, *, code: str | None = None, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.code
        self.field = field

    @property
    def status(self) -> int:
        return status_of(self.code)

    def headers(self) -> dict[str, str]:
        return {}


class Unauthorized(APIError):
    code = "unauthorized"

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": "Bearer"}


class JobNotFound(APIError):
    code = "job_not_found"


class Conflict(APIError):
    code = "conflict"


class TooManyRequests(APIError):
    code = "rate_limited"

    def __init__(self, message: str, *, code: str | None = None, retry_after: int = RETRY_AFTER_S) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class Unavailable(APIError):
    code = "service_unavailable"

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(RETRY_AFTER_S)}


def error_response(
    status: int, code: str, message: str, field: str | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    body = ErrorBody(error=ErrorInfo(code=code, message=message, field=field))
    return JSONResponse(body.model_dump(exclude_none=True), status_code=status, headers=headers)


def _validation_body(err: dict[str, Any]) -> tuple[int, str, str, str | None]:
    """(status, code, message, field) for pydantic's first error."""
    loc = [str(p) for p in err.get("loc", ())]
    if err.get("type") == "json_invalid":
        return 400, "invalid_json", "request body is not valid JSON", None
    field = ".".join(loc[1:]) if loc and loc[0] in ("body", "query", "header", "path") else ".".join(loc)
    cause = (err.get("ctx") or {}).get("error")
    if isinstance(cause, HeteroLoraError):  # a library validator named the field itself
        return 422, cause.code, cause.message, cause.field or field or None
    message = str(err.get("msg", "invalid value"))
    return 422, "invalid_request", f"{field}: {message}" if field else message, field or None


def allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at this path (Starlette's 405 names only the first route's)."""
    methods = {"OPTIONS"}
    for template, operations in request.app.openapi()["paths"].items():
        if compile_path(template)[0].match(request.url.path):
            methods |= {method.upper() for method in operations}
    return sorted(methods)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def _api(_: Request, exc: APIError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.field, exc.headers())

    @app.exception_handler(HeteroLoraError)
    async def _library(_: Request, exc: HeteroLoraError) -> JSONResponse:
        return error_response(status_of(exc.code), exc.code, exc.message, exc.field)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        status, code, message, field = _validation_body(exc.errors()[0])
        return error_response(status, code, message, field)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        headers = exc.headers
        if exc.status_code == 405:
            allow = ", ".join(allowed_methods(request))
            if request.method == "OPTIONS":
                return Response(status_code=204, headers={"Allow": allow})
            headers = {**(headers or {}), "Allow": allow}
        code = HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
        return error_response(exc.status_code, code, str(exc.detail), headers=headers)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return error_response(500, "internal_error", "internal server error")
