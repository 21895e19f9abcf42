"""Job leases: a dead worker's job is found within about a minute, not after the broker's
visibility timeout (hours, so that long jobs are never handed out twice; it stays the backstop).

- While a job runs, its worker holds `heterolora:lease:{id}`, a Redis key with a TTL of
  HETEROLORA_LEASE_TTL_S that a heartbeat thread renews every third of it, and lists the job in
  the hash `heterolora:running` (job id -> "token started_at"). A worker that dies (killed, out of
  memory, its host gone) stops renewing; a job that is alive keeps its lease however long it runs.
- A sweep, every third of the TTL in each worker's main process and in the API, claims each job
  whose lease lapsed (atomically: one sweeper per job), marks it queued, and puts its
  unacknowledged broker message back at the head of the queue with kombu's own restore.
- The next delivery counts the dead one (worker.tasks.start_delivery), so a job that kills every
  worker that runs it still fails `worker_lost` after HETEROLORA_MAX_REDELIVERIES.

Import-light (Redis and Celery, no torch): the API sweeps too.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
import uuid
from types import TracebackType
from typing import Any

import redis
from celery import Celery, states

from service.jobs.records import RUNNING_KEY, lease_key
from service.logs import event

# Claim a lapsed job: only when its lease is gone and its entry is still the one the sweep read.
_CLAIM_LUA = """
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
return 1
"""
# End a lease: only this delivery's entry and key (a later delivery may hold newer ones).
_RELEASE_LUA = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then redis.call('HDEL', KEYS[1], ARGV[1]) end
if redis.call('GET', KEYS[2]) == ARGV[3] then redis.call('DEL', KEYS[2]) end
return 1
"""


class Lease:
    """`with Lease(client, job_id, ttl_s):` around a job's run: held and renewed while it runs."""

    def __init__(self, client: redis.Redis, job_id: str, ttl_s: float) -> None:
        self.client = client
        self.job_id = job_id
        self.ttl_s = ttl_s
        self.token = uuid.uuid4().hex
        self.entry = f"{self.token} {time.time():.3f}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heterolora-lease-{job_id}", daemon=True)

    def __enter__(self) -> Lease:
        with self.client.pipeline() as pipe:
            pipe.set(lease_key(self.job_id), self.token, px=int(1000 * self.ttl_s))
            pipe.hset(RUNNING_KEY, self.job_id, self.entry)
            pipe.execute()
        self._thread.start()
        return self

    def _beat(self) -> None:
        while not self._stop.wait(self.ttl_s / 3):
            try:
                self.client.set(lease_key(self.job_id), self.token, px=int(1000 * self.ttl_s))
            except redis.RedisError as exc:  # Redis away for a moment: the next beat tries again
                event("lease renewal failed", logging.WARNING, job_id=self.job_id, error=type(exc).__name__)

    def __exit__(self, *_: type[BaseException] | BaseException | TracebackType | None) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        with contextlib.suppress(redis.RedisError):
            self.client.eval(_RELEASE_LUA, 2, RUNNING_KEY, lease_key(self.job_id), self.job_id, self.entry, self.token)


def sweep(client: redis.Redis, celery: Celery) -> list[str]:
    """Hand back every job whose lease lapsed; the ids of those whose message went back."""
    requeued = []
    for job_id, entry in client.hgetall(RUNNING_KEY).items():
        job_id, entry = _text(job_id), _text(entry)
        if client.exists(lease_key(job_id)):
            continue
        if not client.eval(_CLAIM_LUA, 2, RUNNING_KEY, lease_key(job_id), job_id, entry):
            continue  # another sweeper took it, or a new delivery holds it now
        started = float(entry.split()[1])
        if _requeue(client, celery, job_id, started):
            requeued.append(job_id)
            event("lease lapsed: job re-queued", logging.WARNING, job_id=job_id)
        else:  # its worker's main process handed the message back itself (only the child died)
            event("lease lapsed: message already back in the queue", job_id=job_id)
    return requeued


def _requeue(client: redis.Redis, celery: Celery, job_id: str, started: float) -> bool:
    """Restore the job's unacknowledged message(s) delivered before its lease began (a message
    reserved after that belongs to a newer delivery)."""
    with celery.connection_for_write() as conn:
        channel: Any = conn.default_channel
        tags = []
        for tag, raw in client.hscan_iter(channel.unacked_key):
            message = json.loads(raw)[0]
            if message.get("headers", {}).get("id") == job_id:
                delivered = client.zscore(channel.unacked_index_key, tag)
                if delivered is not None and delivered <= started:
                    tags.append(tag)
        if not tags:
            return False
        celery.backend.store_result(job_id, None, states.PENDING)  # queued again, before anyone starts it
        for tag in tags:
            channel.qos.restore_by_tag(_text(tag))
    return True


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


class Sweeper:
    """Runs `sweep` every `interval_s` on a daemon thread until `stop()`; never dies of an error."""

    def __init__(self, client: redis.Redis, celery: Celery, interval_s: float) -> None:
        self.client = client
        self.celery = celery
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heterolora-lease-sweeper", daemon=True)

    def start(self) -> Sweeper:
        self._thread.start()
        return self

    def _run(self) -> None:
        while True:
            try:
                sweep(self.client, self.celery)
            except Exception as exc:  # Redis away, a broker hiccup: try again next round
                event("lease sweep failed", logging.WARNING, error=f"{type(exc).__name__}: {exc}"[:200])
            if self._stop.wait(self.interval_s):
                return

    def stop(self) -> None:
        self._stop.set()
