"""Client for the HeteroLoRA service: submit, poll with backoff, return the Plan. No torch."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx

from heterolora.client._errors import APIConnectionError, JobFailed, Timeout, error_for
from heterolora.client._retry import backoff, should_retry
from heterolora.plans import Plan
from heterolora.schemas import JobStatus, sample_rows

DEFAULT_BASE_URL = "http://localhost:8000"
DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=5.0)
DEFAULT_MAX_RETRIES = 2
DEFAULT_JOB_TIMEOUT_S = 600.0
POLL_FIRST_S = 0.2
POLL_MAX_S = 2.0


class Client:
    """Talk to a HeteroLoRA service.

    Args:
        base_url: service URL; default $HETEROLORA_BASE_URL, then http://localhost:8000.
        api_key: Bearer key; default $HETEROLORA_API_KEY.
        timeout: per HTTP call (an httpx.Timeout or seconds).
        max_retries: retries on connection errors, 429, 502, 503 and 504.
        transport: an httpx transport (tests pass httpx.MockTransport).
    """

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        base_url = base_url or os.environ.get("HETEROLORA_BASE_URL") or DEFAULT_BASE_URL
        api_key = api_key or os.environ.get("HETEROLORA_API_KEY")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.max_retries = max_retries
        self._http = httpx.Client(base_url=base_url, headers=headers, timeout=timeout, transport=transport)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # ---- jobs ------------------------------------------------------------------------------
    def submit(
        self,
        model_id: str,
        samples: Any,
        budget: Any = None,
        *,
        wait: float | None = None,
        idempotency_key: str | None = None,
        **options: Any,
    ) -> JobStatus:
        """Submit a planning job; returns its status (already finished if the plan was known).

        Args:
            samples: list of {text, text_pair?, label?}, a pandas DataFrame or a datasets.Dataset.
            budget: {"trainable_params": N}, {"like": {"r": 8, "types": ["q", "v"]}} or
                {"fraction": 0.25, "rank": 8}; None = the service default.
            wait: let the service hold the call up to this many seconds (<= 60) for the result.
            options: task, proxy, shortcuts, types, rank_set, max_rank, seed, num_batches, ...
        """
        body: dict[str, Any] = {"model_id": model_id, "samples": sample_rows(samples), **options}
        if budget is not None:
            body["budget"] = budget.model_dump() if hasattr(budget, "model_dump") else budget
        # One key per call, reused by every retry: a retried POST never starts a second job.
        headers = {"Idempotency-Key": idempotency_key or uuid.uuid4().hex}
        params = {"wait": wait} if wait else None
        response = self._request("POST", "/allocate", json=body, headers=headers, params=params)
        return JobStatus.model_validate(response.json())

    def job(self, job_id: str) -> JobStatus:
        return JobStatus.model_validate(self._request("GET", f"/jobs/{job_id}").json())

    def cancel(self, job_id: str) -> JobStatus:
        return JobStatus.model_validate(self._request("DELETE", f"/jobs/{job_id}").json())

    def wait(self, job_id: str, *, timeout: float = DEFAULT_JOB_TIMEOUT_S) -> Plan:
        """Poll until the job ends. Raises JobFailed (failed or cancelled) or Timeout."""
        return self._finish(self.job(job_id), timeout)

    def plan(
        self, model_id: str, samples: Any, budget: Any = None, *, timeout: float = DEFAULT_JOB_TIMEOUT_S, **options: Any
    ) -> Plan:
        """Submit and wait: the Plan for `model_id` on `samples` within `budget`."""
        return self._finish(self.submit(model_id, samples, budget, **options), timeout)

    def follow(
        self,
        job: JobStatus,
        *,
        timeout: float = DEFAULT_JOB_TIMEOUT_S,
        on_progress: Callable[[float, str], None] | None = None,
    ) -> JobStatus:
        """Poll `job` until it ends (backing off from POLL_FIRST_S to POLL_MAX_S), calling
        `on_progress(fraction, phase)` with each status seen. Raises Timeout."""
        deadline = time.monotonic() + timeout
        delay = POLL_FIRST_S
        if on_progress:
            on_progress(job.progress.fraction, job.progress.phase)
        while not job.done:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Timeout(f"job {job.job_id} still {job.status} after {timeout:.0f}s", job=job)
            time.sleep(min(delay, left))
            delay = min(delay * 1.5, POLL_MAX_S)
            job = self.job(job.job_id)
            if on_progress:
                on_progress(job.progress.fraction, job.progress.phase)
        return job

    def _finish(self, job: JobStatus, timeout: float) -> Plan:
        job = self.follow(job, timeout=timeout)
        if job.status != "succeeded" or job.plan is None:
            raise JobFailed(job)
        return self.fetch_init(job.job_id, job.plan)  # init="gradient": download + verify its file

    def fetch_init(self, job_id: str, plan: Plan) -> Plan:
        """Attach the job's init file to `plan` after checking its size and sha256 against plan.init
        (heterolora.errors.PlanError when they differ: a changed or foreign file is never used)."""
        if plan.init is None:
            return plan
        response = self._request("GET", f"/jobs/{job_id}/adapter.safetensors")
        return plan.attach_init_data(response.content)

    # ---- transport -------------------------------------------------------------------------
    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        attempt = 0
        while True:
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                if attempt >= self.max_retries:
                    raise self._transport_error(method, path, exc) from exc
                pause = backoff(attempt)
            else:
                if response.is_success:
                    return response
                if attempt >= self.max_retries or not should_retry(response):
                    raise error_for(response)
                pause = backoff(attempt, response.headers.get("Retry-After"))
            time.sleep(pause)
            attempt += 1

    def _transport_error(self, method: str, path: str, exc: httpx.TransportError) -> Exception:
        if isinstance(exc, httpx.TimeoutException):
            return Timeout(f"{method} {path} timed out: {exc}")
        return APIConnectionError(f"cannot reach {self._http.base_url}: {exc}")
