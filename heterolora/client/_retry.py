"""The SDK's only retry policy: which answers to retry, and how long to wait."""

from __future__ import annotations

import random

import httpx

RETRY_STATUSES = frozenset({429, 502, 503, 504})
BACKOFF_BASE_S = 0.5
BACKOFF_MAX_S = 8.0
RETRY_AFTER_MAX_S = 30.0


def should_retry(response: httpx.Response) -> bool:
    return response.status_code in RETRY_STATUSES


def backoff(attempt: int, retry_after: str | None = None) -> float:
    """Seconds before retry number `attempt` (0-based): Retry-After when given (capped), else
    exponential with jitter so that many clients do not retry in step."""
    if retry_after:
        try:
            return min(max(float(retry_after), 0.0), RETRY_AFTER_MAX_S)
        except ValueError:
            pass
    return min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2**attempt) * random.uniform(0.5, 1.0)
