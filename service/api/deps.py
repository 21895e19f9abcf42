"""Request dependencies: settings, the caller (from the API key), job queue."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Header, Request

from service.errors import Unauthorized
from service.jobs.queue import Caller, JobQueue
from service.settings import Settings, get_settings

SettingsDep = Annotated[Settings, Depends(get_settings)]


def require_api_key(
    request: Request, settings: SettingsDep, authorization: Annotated[str | None, Header()] = None
) -> Caller:
    """Bearer auth when HETEROLORA_API_KEYS is set; the caller's name and tenant either way."""
    if not settings.api_keys:
        return Caller()
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not given:
        raise Unauthorized("missing API key: send 'Authorization: Bearer <key>'")
    # Compare with every key, in constant time, so timing reveals neither a key nor which one matched.
    secret = given.strip().encode()
    found = None
    for key in settings.keys:
        if hmac.compare_digest(secret, key.secret.encode()):
            found = key
    if found is None:
        raise Unauthorized("invalid API key")
    request.state.key_name = found.name  # for the request log line and metrics
    return Caller(found.name, found.tenant)


def get_queue(request: Request) -> JobQueue:
    return request.app.state.queue


CallerDep = Annotated[Caller, Depends(require_api_key)]
JobQueueDep = Annotated[JobQueue, Depends(get_queue)]


def rate_checked_caller(caller: CallerDep, queue: JobQueueDep) -> Caller:
    """The caller, counted against its per-minute rate. FastAPI solves dependencies before it
    validates the body, so a flood of invalid bodies (422) is limited like valid ones."""
    queue.check_rate(caller)
    return caller


RateCheckedCallerDep = Annotated[Caller, Depends(rate_checked_caller)]
