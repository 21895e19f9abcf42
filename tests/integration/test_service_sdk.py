"""The SDK end to end: heterolora.client -> API (uvicorn) -> Celery worker -> Plan -> apply_plan."""

from __future__ import annotations

import pytest

from devtools.stack import API_KEY, Stack
from heterolora.client import BadRequest, Client, JobFailed, PermissionDenied, Timeout, Unauthorized
from heterolora.data import builtin_sample

pytestmark = pytest.mark.integration
pytest_plugins = ("devtools.stack",)  # fixtures: stack, model_root
OPTIONS = {"num_batches": 2, "batch_size": 4, "max_length": 48}


class Frame:
    """Duck-typed like a pandas DataFrame (pandas is not installed here): columns + to_dict(orient=)."""

    def __init__(self, rows: list[dict]) -> None:
        self.rows = rows
        self.columns = list(rows[0])

    def to_dict(self, orient: str) -> list[dict]:
        assert orient == "records"
        return [dict(r) for r in self.rows]


def test_three_line_pipeline(stack: Stack) -> None:
    from transformers import AutoModelForSequenceClassification

    import heterolora

    with Client(stack.api.url, api_key=API_KEY) as client:
        plan = client.plan(stack.tiny, Frame(builtin_sample()[:16]), {"trainable_params": 3000}, seed=11, **OPTIONS)
    assert isinstance(plan, heterolora.Plan)
    assert plan.model.id == stack.tiny and 0 < plan.budget.used <= 3000
    base = AutoModelForSequenceClassification.from_pretrained(stack.tiny)
    model = heterolora.apply_plan(base, plan)  # checks ranks and parameter counts against the plan
    lora = sum(p.numel() for n, p in model.named_parameters() if p.requires_grad and "lora_" in n)
    assert lora == plan.budget.used


def test_typed_errors(stack: Stack) -> None:
    samples = builtin_sample()[:8]
    with Client(stack.api.url, api_key=API_KEY) as client:
        with pytest.raises(BadRequest) as bad:
            client.submit(stack.tiny, [{"text": "no label"}], **OPTIONS)
        assert (bad.value.status, bad.value.code, bad.value.field) == (422, "invalid_data", "samples.0.label")
        with pytest.raises(PermissionDenied) as denied:
            client.submit("evil/model", samples)
        assert denied.value.field == "model_id"
        with pytest.raises(JobFailed) as failed:
            client.plan("acme/missing", samples, {"trainable_params": 3000}, **OPTIONS)
        assert failed.value.code == "model_not_found" and failed.value.field == "model_id"
        with pytest.raises(Timeout):
            client.plan(stack.tiny, samples, {"trainable_params": 3001}, timeout=0.01, **OPTIONS)
    with Client(stack.api.url) as anon, pytest.raises(Unauthorized):
        anon.job("0123")


def test_submit_job_cancel(stack: Stack) -> None:
    with Client(stack.api.url, api_key=API_KEY) as client:
        job = client.submit(stack.tiny, builtin_sample()[:8], {"trainable_params": 3002}, wait=30, **OPTIONS)
        assert job.status == "succeeded" and job.plan is not None
        assert client.job(job.job_id).plan == job.plan
        assert client.wait(job.job_id).budget.limit == 3002
        slow = client.submit("minilm", builtin_sample()[:32], num_batches=8, batch_size=4, seed=12)
        assert client.cancel(slow.job_id).status == "cancelled"
        with pytest.raises(JobFailed) as cancelled:
            client.wait(slow.job_id)
        assert cancelled.value.code == "cancelled"
