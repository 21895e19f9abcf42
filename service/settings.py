"""API settings from HETEROLORA_* environment variables, behind an overridable `get_settings()`."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from worker.settings import WEEK_S

MIN_KEY_CHARS = 16
CommaList = Annotated[list[str], NoDecode]  # "a,b,c" in the environment, not JSON


def _split(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HETEROLORA_", extra="ignore")

    redis_url: str | None = Field(default=None, description="Redis for jobs; unset = single-machine (embedded) mode.")
    api_keys: CommaList = Field(default_factory=list, description="Bearer keys; empty = no auth.")
    model_allowlist: CommaList = Field(default_factory=lambda: ["*"], description="Glob patterns of allowed model ids.")
    model_dirs: CommaList = Field(default_factory=list, description="Folders local model paths must lie under.")
    max_samples: int = Field(default=4096, ge=1, le=1_000_000, description="Most samples in one request.")
    max_body_bytes: int = Field(default=32 * 2**20, ge=1024, description="Larger bodies get 413.")
    max_wait_s: float = Field(default=60.0, ge=0, le=60, description="Cap on ?wait=S.")
    result_ttl_s: int = Field(default=WEEK_S, gt=0, description="How long job records and plans are kept.")
    redis_timeout_s: float = Field(default=1.0, gt=0, le=10, description="Socket timeout for Redis calls.")

    @field_validator("api_keys", "model_allowlist", "model_dirs", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        return _split(value)

    @field_validator("api_keys")
    @classmethod
    def _keys_long(cls, keys: list[str]) -> list[str]:
        if any(len(k) < MIN_KEY_CHARS for k in keys):
            raise ValueError(f"every API key needs at least {MIN_KEY_CHARS} characters")
        return keys

    @field_validator("model_dirs")
    @classmethod
    def _dirs_absolute(cls, dirs: list[str]) -> list[str]:
        if any(not Path(d).is_absolute() for d in dirs):
            raise ValueError("HETEROLORA_MODEL_DIRS entries must be absolute paths")
        return dirs

    @property
    def embedded(self) -> bool:
        return not self.redis_url


@lru_cache
def get_settings() -> Settings:
    return Settings()
