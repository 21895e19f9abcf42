"""The Celery app: broker, backend, queue and delivery guarantees. Import-light (no torch): the
API imports this module to send tasks by name; a worker (`celery -A worker.app worker`, which
imports this app) loads the tasks of worker/tasks.py."""

from __future__ import annotations

from typing import Any

from celery import Celery

from service.jobs.records import QUEUE_GPU, TASK_ALLOCATE
from service.settings import WorkerSettings, get_worker_settings

# Lets the app be built without Redis configured; a worker refuses to start on it (worker/app.py).
UNCONFIGURED_URL = "redis://unconfigured.invalid:6379/0"


def celery_config(settings: WorkerSettings) -> dict[str, Any]:
    restore_every = max(1, min(10, settings.visibility_timeout_s // 10))
    return {
        "task_routes": {TASK_ALLOCATE: {"queue": QUEUE_GPU}},
        "task_default_queue": QUEUE_GPU,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        # At-least-once delivery: a job is acknowledged only when it ends, and a job whose worker
        # dies is handed out again (the task is idempotent: same request and seed, same plan).
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "task_track_started": True,
        "task_soft_time_limit": settings.soft_time_limit_s,
        "task_time_limit": settings.time_limit_s,
        "result_expires": settings.result_ttl_s,
        "broker_transport_options": {
            "visibility_timeout": settings.visibility_timeout_s,
            # Sweep for abandoned jobs often enough that a lost job waits about one visibility timeout.
            "unacked_restore_interval": restore_every,
            "unacked_restore_throttle": 1,
        },
        "broker_connection_retry_on_startup": True,
        "broker_connection_timeout": 2,
        "redis_socket_connect_timeout": 2,
        "redis_socket_timeout": 5,
        # The API answers 503 quickly instead of blocking a request on a dead broker.
        "task_publish_retry_policy": {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2},
    }


def make_celery(settings: WorkerSettings) -> Celery:
    url = settings.redis_url or UNCONFIGURED_URL
    app = Celery("heterolora", broker=url, backend=url, include=["worker.tasks"])
    app.conf.update(celery_config(settings))
    return app


celery_app = make_celery(get_worker_settings())
