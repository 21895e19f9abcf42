"""Settings from HETEROLORA_* environment variables. `CommonSettings` holds what the API and the
workers share; `Settings` (the API, behind an overridable `get_settings()`) and `WorkerSettings`
(Celery workers and the single-machine mode, which runs jobs too) extend it."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from heterolora.config import DeviceMap, WeightDtype

WEEK_S = 7 * 24 * 3600
MIN_KEY_CHARS = 16
CommaList = Annotated[list[str], NoDecode]  # "a,b,c" in the environment, not JSON
# A few thousand short samples: 4096 samples of ~400 bytes of JSON each is ~1.6 MiB.
DEFAULT_MAX_BODY_BYTES = 2 * 2**20


def _split(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


@dataclass(frozen=True)
class ApiKey:
    """A bearer key and the name that logs and metrics show instead of it. `tenant` (a hash of
    the key) owns jobs, de-duplication and idempotency keys."""

    name: str
    secret: str

    @property
    def tenant(self) -> str:
        return hashlib.sha256(b"heterolora-tenant\x00" + self.secret.encode()).hexdigest()[:32]


def parse_key(entry: str) -> ApiKey:
    """`name:KEY` or a plain `KEY` (named key-<first 8 hex of its hash>)."""
    name, sep, secret = entry.partition(":")
    if not sep:
        secret = entry
        name = "key-" + hashlib.sha256(secret.encode()).hexdigest()[:8]
    return ApiKey(name.strip(), secret.strip())


class CommonSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HETEROLORA_", extra="ignore")

    redis_url: str | None = Field(default=None, description="Redis for jobs; unset = single-machine (embedded) mode.")
    result_ttl_s: int = Field(default=WEEK_S, gt=0, description="How long job records and plans are kept.")
    redis_timeout_s: float = Field(default=1.0, gt=0, le=10, description="Socket timeout for Redis calls.")
    log_format: Literal["json", "text"] = Field(default="json", description="One JSON object per line, or text.")
    lease_ttl_s: float = Field(
        default=30, ge=1, le=3600, description="A running job's lease; a job whose worker died is re-queued after it."
    )

    @property
    def embedded(self) -> bool:
        return not self.redis_url


class Settings(CommonSettings):
    api_keys: CommaList = Field(default_factory=list, description="Bearer keys, `name:KEY` or `KEY`; empty = no auth.")
    auth: Literal["required", "disabled"] = Field(
        default="required", description="`disabled` allows serving without keys on a non-loopback address."
    )
    model_allowlist: CommaList = Field(default_factory=lambda: ["*"], description="Glob patterns of allowed model ids.")
    model_dirs: CommaList = Field(default_factory=list, description="Folders local model paths must lie under.")
    max_samples: int = Field(default=4096, ge=1, le=1_000_000, description="Most samples in one request.")
    max_body_bytes: int = Field(default=DEFAULT_MAX_BODY_BYTES, ge=1024, description="Larger bodies get 413.")
    max_wait_s: float = Field(default=60.0, ge=0, le=60, description="Cap on ?wait=S.")
    max_waiters: int = Field(default=64, ge=0, le=10_000, description="Requests held by ?wait at once, per process.")
    max_queued_jobs: int = Field(default=100, ge=1, description="Jobs waiting for a worker; beyond it 429.")
    rate_limit_per_minute: int = Field(
        default=60, ge=0, description="POST /allocate per key per minute, invalid bodies too; 0 = off."
    )
    metrics_key: str | None = Field(default=None, description="Bearer key for GET /metrics; unset = open.")
    health_timeout_s: float = Field(
        default=2.0, gt=0, le=60, description="/healthz fails when the request thread pool runs no task within this."
    )
    shutdown_grace_s: float = Field(
        default=10.0, gt=0, le=3600, description="After SIGTERM the API exits within this, even with stuck requests."
    )

    @field_validator("api_keys", "model_allowlist", "model_dirs", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        return _split(value)

    @field_validator("api_keys")
    @classmethod
    def _keys_long(cls, entries: list[str]) -> list[str]:
        keys = [parse_key(e) for e in entries]
        if any(len(k.secret) < MIN_KEY_CHARS for k in keys):
            raise ValueError(f"every API key needs at least {MIN_KEY_CHARS} characters")
        if any(not k.name for k in keys) or len({k.name for k in keys}) < len(keys):
            raise ValueError("API key names must be non-empty and distinct")
        return entries

    @field_validator("model_dirs")
    @classmethod
    def _dirs_absolute(cls, dirs: list[str]) -> list[str]:
        if any(not Path(d).is_absolute() for d in dirs):
            raise ValueError("HETEROLORA_MODEL_DIRS entries must be absolute paths")
        return dirs

    @property
    def keys(self) -> list[ApiKey]:
        return [parse_key(e) for e in self.api_keys]


class WorkerSettings(CommonSettings):
    model_cache_size: int = Field(default=2, ge=1, le=64, description="Loaded models kept per worker process.")
    device: str | None = Field(default=None, description="cuda, cuda:1, cpu ... (default: cuda when present).")
    dtype: WeightDtype | None = Field(
        default=None, description="Weights' dtype for requests that name none (default: the checkpoint's)."
    )
    device_map: DeviceMap | None = Field(
        default=None,
        description="'auto': spread each model over every GPU this worker sees (accelerate); run one "
        "worker per host (or per GPU group) then, not one per GPU. docs/service.md.",
    )
    worker_procs: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Processes per job: above 1, each job runs on that many ranks (torch's elastic launcher; "
        "one GPU each, or CPU with gloo). docs/performance.md, Distributed planning.",
    )
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
        if self.worker_procs > 1 and self.device_map:
            raise ValueError("worker_procs > 1 gives each rank its own device: unset device_map")
        return self


@lru_cache
def get_settings() -> Settings:
    return Settings()


@lru_cache
def get_worker_settings() -> WorkerSettings:
    """The worker's settings, read once per process."""
    return WorkerSettings()
