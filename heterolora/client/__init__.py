"""SDK for the HeteroLoRA service: `Client(base_url).plan(model_id=..., samples=..., budget=...)`.

Light by design: httpx and the Plan model, no torch.
"""

from __future__ import annotations

from heterolora.client._client import Client as Client
from heterolora.client._errors import APIConnectionError as APIConnectionError
from heterolora.client._errors import APIError as APIError
from heterolora.client._errors import APIStatusError as APIStatusError
from heterolora.client._errors import BadRequest as BadRequest
from heterolora.client._errors import Conflict as Conflict
from heterolora.client._errors import InternalServerError as InternalServerError
from heterolora.client._errors import JobFailed as JobFailed
from heterolora.client._errors import NotFound as NotFound
from heterolora.client._errors import PermissionDenied as PermissionDenied
from heterolora.client._errors import RateLimited as RateLimited
from heterolora.client._errors import ServiceUnavailable as ServiceUnavailable
from heterolora.client._errors import Timeout as Timeout
from heterolora.client._errors import Unauthorized as Unauthorized
from heterolora.plans import Plan as Plan
from heterolora.schemas import JobStatus as JobStatus

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIStatusError",
    "BadRequest",
    "Client",
    "Conflict",
    "InternalServerError",
    "JobFailed",
    "JobStatus",
    "NotFound",
    "PermissionDenied",
    "Plan",
    "RateLimited",
    "ServiceUnavailable",
    "Timeout",
    "Unauthorized",
]
