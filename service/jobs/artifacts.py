"""A job's init tensor file (docs/service.md, "Init artifacts").

Small files live in the job store (Redis, or memory in embedded mode) under heterolora:artifact:{job_id}; files
above `artifact_inline_max_bytes` go to HETEROLORA_ARTIFACT_DIR (a shared volume: the worker writes,
the API reads), with a Redis/memory marker carrying the same TTL as the job. So Redis never holds
more than the inline limit per job, and the directory is swept of files older than the TTL on each
write. Import-light (no torch): both the worker and the API use it.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from service.jobs.records import artifact_key
from service.jobs.store import RedisStore, Store

FILE_MARKER = b"file:"
_JOB_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


class ArtifactTooLarge(Exception):
    """A file above the inline limit with no artifact directory configured."""


class ArtifactSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HETEROLORA_", extra="ignore")

    artifact_dir: Path | None = Field(
        default=None, description="Folder (shared by API and workers) for init files above the inline limit."
    )
    artifact_inline_max_bytes: int = Field(
        default=4 * 2**20, ge=0, le=64 * 2**20, description="Init files up to this size are kept in Redis."
    )


class ArtifactStore:
    """Init files in the job store (same TTL as the job), or on disk with a marker in the store."""

    def __init__(self, store: Store, settings: ArtifactSettings | None = None) -> None:
        self.store = store
        self.ttl_s = store.ttl_s
        self.settings = settings or ArtifactSettings()

    @classmethod
    def for_redis(cls, url: str, ttl_s: int) -> ArtifactStore:
        """A worker's: 5 s socket timeout, with retries (the API shares its own job store)."""
        return cls(RedisStore(url, ttl_s, 5.0, retries=True))

    @staticmethod
    def key(job_id: str) -> str:
        if not _JOB_ID.fullmatch(job_id):
            raise ValueError(f"bad job id {job_id!r}")
        return artifact_key(job_id)

    def put(self, job_id: str, data: bytes) -> str:
        """Keep `data` for the job's TTL; returns where ("redis" or "dir")."""
        key = self.key(job_id)
        if len(data) <= self.settings.artifact_inline_max_bytes:
            self.store.put_bytes(key, data)
            return "redis"
        folder = self.settings.artifact_dir
        if folder is None:
            raise ArtifactTooLarge(
                f"init file of {len(data)} bytes is above HETEROLORA_ARTIFACT_INLINE_MAX_BYTES="
                f"{self.settings.artifact_inline_max_bytes} and HETEROLORA_ARTIFACT_DIR is not set"
            )
        folder.mkdir(parents=True, exist_ok=True)
        self._sweep(folder)
        name = f"{job_id}.safetensors"
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".tmp-", delete=False) as tmp:
            tmp.write(data)
        os.replace(tmp.name, folder / name)  # readers never see a half-written file
        self.store.put_bytes(key, FILE_MARKER + name.encode())
        return "dir"

    def get(self, job_id: str) -> bytes | None:
        """The job's file, or None when there is none or it expired."""
        value = self.store.get_bytes(self.key(job_id))
        if value is None or not value.startswith(FILE_MARKER):
            return value
        folder = self.settings.artifact_dir
        path = folder / value[len(FILE_MARKER) :].decode() if folder else None
        return path.read_bytes() if path is not None and path.is_file() else None

    def _sweep(self, folder: Path) -> None:
        """Drop files older than the TTL (their markers have expired with the job)."""
        cutoff = time.time() - self.ttl_s
        for path in folder.glob("*.safetensors"):
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink()
            except FileNotFoundError:
                pass  # another worker swept it first
