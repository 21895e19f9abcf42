"""Request dependencies: settings, API key, job queue."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Header, Request

from service.errors import Unauthorized
from service.jobs import JobQueue
from service.settings import Settings, get_settings

SettingsDep = Annotated[Settings, Depends(get_settings)]


def require_api_key(settings: SettingsDep, authorization: Annotated[str | None, Header()] = None) -> None:
    """Bearer auth when HETEROLORA_API_KEYS is set."""
    if not settings.api_keys:
        return
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not given:
        raise Unauthorized("missing API key: send 'Authorization: Bearer <key>'")
    # Compare with every key, in constant time, so timing reveals neither a key nor which one matched.
    matches = [hmac.compare_digest(given.strip().encode(), key.encode()) for key in settings.api_keys]
    if not any(matches):
        raise Unauthorized("invalid API key")


def get_queue(request: Request) -> JobQueue:
    return request.app.state.queue


ApiKeyDep = Depends(require_api_key)
JobQueueDep = Annotated[JobQueue, Depends(get_queue)]
