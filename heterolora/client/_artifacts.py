"""Download and verify a plan's init tensor file (issue 14). No torch."""

from __future__ import annotations

from typing import TYPE_CHECKING

from heterolora.plans import Plan

if TYPE_CHECKING:
    from heterolora.client._client import Client


def fetch_init(client: Client, job_id: str, plan: Plan) -> Plan:
    """Attach the job's init file to `plan` after checking its size and sha256 against plan.init
    (heterolora.errors.PlanError when they differ: a changed or foreign file is never used)."""
    if plan.init is None:
        return plan
    response = client._request("GET", f"/jobs/{job_id}/adapter.safetensors")
    return plan.attach_init_data(response.content)
