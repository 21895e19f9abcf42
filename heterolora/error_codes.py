"""The error codes of the wire contract, defined once (next to the wire schemas in schemas.py).

Every error body is {"error": {"code", "message", "field"?}}, and a failed job carries the same
object. The service answers each code with the HTTP status below; the SDK maps a code to its
exception class from this table (heterolora.client._errors). Import-light: no torch.
"""

from __future__ import annotations

from typing import Literal

Kind = Literal[
    "bad_request", "unauthorized", "forbidden", "not_found", "conflict", "rate_limited", "unavailable", "internal"
]

# code -> (HTTP status, kind). Job-only codes (a job ends failed with them) use status 0.
ERROR_CODES: dict[str, tuple[int, Kind]] = {
    # the request itself
    "invalid_json": (400, "bad_request"),
    "invalid_request": (422, "bad_request"),
    "invalid_config": (422, "bad_request"),
    "invalid_budget": (422, "bad_request"),
    "invalid_data": (422, "bad_request"),
    "invalid_proxy": (422, "bad_request"),
    "unsupported_model": (422, "bad_request"),
    "plan_mismatch": (422, "bad_request"),
    "heterolora_error": (422, "bad_request"),
    "payload_too_large": (413, "bad_request"),
    "unsupported_media_type": (415, "bad_request"),
    "method_not_allowed": (405, "bad_request"),
    # who asks
    "unauthorized": (401, "unauthorized"),
    "model_not_allowed": (403, "forbidden"),
    "metrics_forbidden": (403, "forbidden"),
    # what is asked for
    "not_found": (404, "not_found"),
    "job_not_found": (404, "not_found"),
    "model_not_found": (422, "bad_request"),
    "conflict": (409, "conflict"),
    "idempotency_key_reused": (409, "conflict"),
    "job_finished": (409, "conflict"),
    "job_not_finished": (409, "conflict"),
    "artifact_not_found": (404, "not_found"),
    # load
    "rate_limited": (429, "rate_limited"),
    "queue_full": (429, "rate_limited"),
    "service_unavailable": (503, "unavailable"),
    "broker_unavailable": (503, "unavailable"),
    "no_workers": (503, "unavailable"),
    "readiness_timeout": (503, "unavailable"),
    "threads_exhausted": (503, "unavailable"),
    "artifact_corrupt": (503, "unavailable"),
    "internal_error": (500, "internal"),
    # how a job can end besides its input's codes above
    "timeout": (0, "internal"),
    "cancelled": (0, "conflict"),
    "worker_lost": (0, "internal"),
    "distributed_failed": (0, "internal"),
    "artifact_too_large": (0, "internal"),
}


def status_of(code: str) -> int:
    """The HTTP status for `code`; 500 for a code this table does not know."""
    status = ERROR_CODES.get(code, (500, "internal"))[0]
    return status or 500


def kind_of(code: str) -> Kind | None:
    entry = ERROR_CODES.get(code)
    return entry[1] if entry else None
