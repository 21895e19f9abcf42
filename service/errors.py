"""Errors -> HTTP. Routes raise domain errors; the handlers here give every 4xx/5xx the body
{"error": {"code", "message", "field"?}}.

    APIError                       service-level errors, each with its status
     ├── Unauthorized        401
     ├── JobNotFound         404
     ├── Conflict            409   idempotency key reused with another body; job not finished
     └── Unavailable         503   Redis or workers unreachable (with Retry-After)
    heterolora.errors.*            ModelNotAllowedError 403, other ConfigError/HeteroLoraError 422
    (bodies over the size cap get 413 from service.middleware, before parsing)
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from heterolora.errors import HeteroLoraError, ModelNotAllowedError
from heterolora.schemas import ErrorBody, ErrorInfo

log = logging.getLogger("heterolora.service")
RETRY_AFTER_S = 2
HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large", 415: "unsupported_media_type"}


class APIError(Exception):
    status = 500
    code = "internal_error"

    def __init__(self, message: str, *, code: str | None = None, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.code
        self.field = field

    def headers(self) -> dict[str, str]:
        return {}


class Unauthorized(APIError):
    status, code = 401, "unauthorized"

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": "Bearer"}


class JobNotFound(APIError):
    status, code = 404, "job_not_found"


class Conflict(APIError):
    status, code = 409, "conflict"


class Unavailable(APIError):
    status, code = 503, "service_unavailable"

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(RETRY_AFTER_S)}


def error_response(
    status: int, code: str, message: str, field: str | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    body = ErrorBody(error=ErrorInfo(code=code, message=message, field=field))
    return JSONResponse(body.model_dump(exclude_none=True), status_code=status, headers=headers)


def _library_status(exc: HeteroLoraError) -> int:
    return 403 if isinstance(exc, ModelNotAllowedError) else 422


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


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def _api(_: Request, exc: APIError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.field, exc.headers())

    @app.exception_handler(HeteroLoraError)
    async def _library(_: Request, exc: HeteroLoraError) -> JSONResponse:
        return error_response(_library_status(exc), exc.code, exc.message, exc.field)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        status, code, message, field = _validation_body(exc.errors()[0])
        return error_response(status, code, message, field)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
        return error_response(exc.status_code, code, str(exc.detail), headers=exc.headers)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return error_response(500, "internal_error", "internal server error")
