"""Key-value stores for job records and idempotency keys: Redis, or memory in embedded mode.

Both expire entries after the result TTL and offer the three operations idempotency needs:
set-if-absent, compare-and-swap and plain reads.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol, TypeVar
from urllib.parse import urlsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from service.errors import Unavailable

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
    def get(self, key: str) -> str | None: ...
    def put(self, key: str, value: str, *, only_new: bool = False) -> bool: ...
    def swap(self, key: str, old: str, new: str) -> bool: ...
    def delete(self, *keys: str) -> None: ...
    def ping(self) -> None: ...


def safe_url(url: str) -> str:
    """host:port/db of a Redis URL, without credentials, for error messages."""
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port or 6379}{parts.path or ''}"


class RedisStore:
    def __init__(self, url: str, ttl_s: int, timeout_s: float = 1.0) -> None:
        self.url = url
        self.ttl_s = ttl_s
        # No client-side retries: a dead Redis must turn into a 503 within the request, not after
        # redis-py's backoff schedule.
        self.client = redis.Redis.from_url(
            url,
            decode_responses=True,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),
        )
        self._swap = self.client.register_script(_SWAP_LUA)

    def _call(self, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise Unavailable(
                f"job store unavailable: Redis at {safe_url(self.url)} is not reachable ({type(exc).__name__})",
                code="broker_unavailable",
            ) from None

    def get(self, key: str) -> str | None:
        return self._call(lambda: self.client.get(key))

    def put(self, key: str, value: str, *, only_new: bool = False) -> bool:
        return bool(self._call(lambda: self.client.set(key, value, ex=self.ttl_s, nx=only_new)))

    def swap(self, key: str, old: str, new: str) -> bool:
        return bool(self._call(lambda: self._swap(keys=[key], args=[old, new, self.ttl_s])))

    def delete(self, *keys: str) -> None:
        self._call(lambda: self.client.delete(*keys))

    def ping(self) -> None:
        self._call(self.client.ping)


class MemoryStore:
    """The same contract in one process (embedded mode)."""

    def __init__(self, ttl_s: int) -> None:
        self.ttl_s = ttl_s
        self._items: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def _live(self, key: str) -> str | None:
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

    def ping(self) -> None:
        return None
