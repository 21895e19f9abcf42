"""Artifact store for a job's init tensor file (issue 14; docs/service.md, "Init artifacts").

Small files live in Redis (or in memory in embedded mode) under heterolora:artifact:{job_id}; files
above `artifact_inline_max_bytes` go to HETEROLORA_ARTIFACT_DIR (a shared volume: the worker writes,
the API reads), with a Redis/memory marker carrying the same TTL as the job. So Redis never holds
more than the inline limit per job, and the directory is swept of files older than the TTL on each
write. Import-light (no torch): both the worker and the API use it.
"""

from __future__ import annotations

import os
import re
import tempfile
import threading
import time
from pathlib import Path
from typing import Protocol

import redis
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from redis.backoff import NoBackoff
from redis.retry import Retry

from service.errors import Unavailable
from service.jobs.records import artifact_key

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


class _Bytes(Protocol):
    def get(self, key: str) -> bytes | None: ...
    def put(self, key: str, value: bytes, ttl_s: int) -> None: ...


class RedisBytes:
    def __init__(self, url: str, timeout_s: float = 5.0, *, retries: bool = True) -> None:
        # The API reads without client-side retries (a dead Redis is a 503 within the timeout);
        # a worker's write may retry.
        extra = {} if retries else {"retry": Retry(NoBackoff(), 0)}
        self.client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, **extra)

    def get(self, key: str) -> bytes | None:
        try:
            return self.client.get(key)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise Unavailable(
                f"artifact store unavailable: Redis is not reachable ({type(exc).__name__})", code="broker_unavailable"
            ) from None

    def put(self, key: str, value: bytes, ttl_s: int) -> None:
        self.client.set(key, value, ex=ttl_s)


class MemoryBytes:
    def __init__(self) -> None:
        self._items: dict[str, tuple[bytes, float]] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> bytes | None:
        with self._lock:
            item = self._items.get(key)
            if item is None or item[1] < time.monotonic():
                self._items.pop(key, None)
                return None
            return item[0]

    def put(self, key: str, value: bytes, ttl_s: int) -> None:
        with self._lock:
            now = time.monotonic()
            for stale in [k for k, (_, until) in self._items.items() if until < now]:
                del self._items[stale]
            self._items[key] = (value, now + ttl_s)


class ArtifactStore:
    def __init__(self, kv: _Bytes, ttl_s: int, settings: ArtifactSettings | None = None) -> None:
        self.kv = kv
        self.ttl_s = ttl_s
        self.settings = settings or ArtifactSettings()

    @classmethod
    def for_redis(cls, url: str, ttl_s: int, timeout_s: float | None = None) -> ArtifactStore:
        """`timeout_s` given (the API): that socket timeout and no retries; else 5 s with retries."""
        kv = RedisBytes(url) if timeout_s is None else RedisBytes(url, timeout_s, retries=False)
        return cls(kv, ttl_s)

    @classmethod
    def in_memory(cls, ttl_s: int) -> ArtifactStore:
        return cls(MemoryBytes(), ttl_s)

    @staticmethod
    def key(job_id: str) -> str:
        if not _JOB_ID.fullmatch(job_id):
            raise ValueError(f"bad job id {job_id!r}")
        return artifact_key(job_id)

    def put(self, job_id: str, data: bytes) -> str:
        """Keep `data` for the job's TTL; returns where ("redis" or "dir")."""
        key = self.key(job_id)
        if len(data) <= self.settings.artifact_inline_max_bytes:
            self.kv.put(key, data, self.ttl_s)
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
        self.kv.put(key, FILE_MARKER + name.encode(), self.ttl_s)
        return "dir"

    def get(self, job_id: str) -> bytes | None:
        """The job's file, or None when there is none or it expired."""
        value = self.kv.get(self.key(job_id))
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
