"""The one TTL store of the service: job records, idempotency keys, job metrics and init files
(service/jobs/artifacts.py), in Redis, or in memory in single-machine mode.

Both expire entries after the result TTL and offer the three operations idempotency needs:
set-if-absent, compare-and-swap and plain reads; and raw bytes for files.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from service.errors import Unavailable

log = logging.getLogger("heterolora.service")

T = TypeVar("T")
# Swap `key` from ARGV[1] to ARGV[2] only if nobody changed it meanwhile.
_SWAP_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
  return 1
end
return 0
"""


class Store(Protocol):
    ttl_s: int

    def get(self, key: str) -> str | None: ...
    def put(self, key: str, value: str, *, only_new: bool = False) -> bool: ...
    def swap(self, key: str, old: str, new: str) -> bool: ...
    def delete(self, *keys: str) -> None: ...
    def incr(self, key: str, field: str, amount: float = 1, *, ttl_s: int | None = None) -> float: ...
    def counts(self, key: str) -> dict[str, float]: ...
    def get_bytes(self, key: str) -> bytes | None: ...
    def put_bytes(self, key: str, value: bytes) -> None: ...
    def ping(self) -> None: ...


def safe_url(url: str) -> str:
    """host:port/db of a Redis URL, without credentials, for error messages."""
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port or 6379}{parts.path or ''}"


class RedisStore:
    def __init__(self, url: str, ttl_s: int, timeout_s: float = 1.0, *, retries: bool = False) -> None:
        self.url = url
        self.ttl_s = ttl_s
        # No client-side retries by default: a dead Redis must turn into a 503 within the request,
        # not after redis-py's backoff schedule. A worker's file write may retry.
        options: dict[str, Any] = {"socket_timeout": timeout_s, "socket_connect_timeout": timeout_s}
        if not retries:
            options["retry"] = Retry(NoBackoff(), 0)
        self.client = redis.Redis.from_url(url, decode_responses=True, **options)
        self.raw = redis.Redis.from_url(url, **options)  # bytes in, bytes out (init files)
        self._swap = self.client.register_script(_SWAP_LUA)

    def _call(self, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            # Where Redis runs goes to the log, not to clients.
            log.warning("Redis at %s is not reachable (%s)", safe_url(self.url), type(exc).__name__)
            raise Unavailable(
                f"job store unavailable: Redis is not reachable ({type(exc).__name__})", code="broker_unavailable"
            ) from None

    def get(self, key: str) -> str | None:
        return self._call(lambda: self.client.get(key))

    def put(self, key: str, value: str, *, only_new: bool = False) -> bool:
        return bool(self._call(lambda: self.client.set(key, value, ex=self.ttl_s, nx=only_new)))

    def swap(self, key: str, old: str, new: str) -> bool:
        return bool(self._call(lambda: self._swap(keys=[key], args=[old, new, self.ttl_s])))

    def delete(self, *keys: str) -> None:
        self._call(lambda: self.client.delete(*keys))

    def incr(self, key: str, field: str, amount: float = 1, *, ttl_s: int | None = None) -> float:
        """Add `amount` to a hash field. The hash expires `ttl_s` after its creation (default: the
        store's TTL; 0: never, for counters)."""
        ttl = self.ttl_s if ttl_s is None else ttl_s

        def run() -> float:
            with self.client.pipeline() as pipe:
                pipe.hincrbyfloat(key, field, amount)
                if ttl:
                    pipe.expire(key, ttl, nx=True)
                return float(pipe.execute()[0])

        return self._call(run)

    def counts(self, key: str) -> dict[str, float]:
        return {k: float(v) for k, v in self._call(lambda: self.client.hgetall(key)).items()}

    def get_bytes(self, key: str) -> bytes | None:
        return self._call(lambda: self.raw.get(key))

    def put_bytes(self, key: str, value: bytes) -> None:
        self.raw.set(key, value, ex=self.ttl_s)  # a worker's write: its errors are the caller's

    def llen(self, key: str) -> int:
        return int(self._call(lambda: self.client.llen(key)))

    def ping(self) -> None:
        self._call(self.client.ping)


class MemoryStore:
    """The same contract in one process (embedded mode)."""

    def __init__(self, ttl_s: int) -> None:
        self.ttl_s = ttl_s
        self._items: dict[str, tuple[Any, float]] = {}  # str values, or bytes (init files)
        self._hashes: dict[str, tuple[dict[str, float], float]] = {}
        self._lock = threading.Lock()

    def _live(self, key: str) -> Any:
        item = self._items.get(key)
        if item is None or item[1] < time.monotonic():
            self._items.pop(key, None)
            return None
        return item[0]

    def get(self, key: str) -> str | None:
        with self._lock:
            return self._live(key)

    def put(self, key: str, value: str, *, only_new: bool = False) -> bool:
        with self._lock:
            if only_new and self._live(key) is not None:
                return False
            self._items[key] = (value, time.monotonic() + self.ttl_s)
            if len(self._items) % 1024 == 0:  # bound memory: drop what expired
                for stale in [k for k, (_, until) in self._items.items() if until < time.monotonic()]:
                    del self._items[stale]
            return True

    def get_bytes(self, key: str) -> bytes | None:
        return self.get(key)  # type: ignore[return-value]

    def put_bytes(self, key: str, value: bytes) -> None:
        self.put(key, value)  # type: ignore[arg-type]

    def swap(self, key: str, old: str, new: str) -> bool:
        with self._lock:
            if self._live(key) != old:
                return False
            self._items[key] = (new, time.monotonic() + self.ttl_s)
            return True

    def delete(self, *keys: str) -> None:
        with self._lock:
            for key in keys:
                self._items.pop(key, None)
                self._hashes.pop(key, None)

    def incr(self, key: str, field: str, amount: float = 1, *, ttl_s: int | None = None) -> float:
        ttl = self.ttl_s if ttl_s is None else ttl_s
        with self._lock:
            fields = self._live_hash(key)
            if fields is None:
                fields = {}
                self._hashes[key] = (fields, time.monotonic() + ttl if ttl else float("inf"))
                self._drop_expired_hashes()
            fields[field] = fields.get(field, 0.0) + amount
            return fields[field]

    def counts(self, key: str) -> dict[str, float]:
        with self._lock:
            return dict(self._live_hash(key) or {})

    def _live_hash(self, key: str) -> dict[str, float] | None:
        item = self._hashes.get(key)
        if item is None or item[1] < time.monotonic():
            self._hashes.pop(key, None)
            return None
        return item[0]

    def _drop_expired_hashes(self) -> None:
        if len(self._hashes) % 256 == 0:
            for stale in [k for k, (_, until) in self._hashes.items() if until < time.monotonic()]:
                del self._hashes[stale]

    def ping(self) -> None:
        return None
