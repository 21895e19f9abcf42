"""Worker settings, read from HETEROLORA_* environment variables. Import-light."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field, model_validator

from service.settings import CommonSettings


class WorkerSettings(CommonSettings):
    model_cache_size: int = Field(default=2, ge=1, le=64, description="Loaded models kept per worker process.")
    device: str | None = Field(default=None, description="cuda, cuda:1, cpu ... (default: cuda when present).")
    dtype: Literal["float32", "float16", "bfloat16"] | None = Field(default=None, description="Load dtype.")
    soft_time_limit_s: int = Field(default=1800, gt=0, description="Job gets SoftTimeLimitExceeded after this.")
    time_limit_s: int = Field(default=1900, gt=0, description="Job process is killed after this.")
    visibility_timeout_s: int = Field(
        default=7200, gt=0, description="An unacknowledged job is redelivered after this (killed worker)."
    )
    max_retries: int = Field(default=3, ge=0, le=10, description="Retries for transient errors only.")
    max_redeliveries: int = Field(
        default=2, ge=0, le=10, description="Deliveries after a worker died on the job; then it fails `worker_lost`."
    )
    preload_models: str = Field(
        default="", description="Comma-separated model ids loaded into the cache when a worker process starts."
    )

    @model_validator(mode="after")
    def _limits_ordered(self) -> WorkerSettings:
        # A visibility timeout below the hard limit would hand a running job to a second worker.
        if not self.soft_time_limit_s < self.time_limit_s < self.visibility_timeout_s:
            raise ValueError("need soft_time_limit_s < time_limit_s < visibility_timeout_s")
        return self


@lru_cache
def get_worker_settings() -> WorkerSettings:
    return WorkerSettings()
