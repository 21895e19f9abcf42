"""The worker's entry point, `celery -A worker.app worker`: the service's Celery app
(service/jobs/celery_app.py), torch threads per pool process (worker/threads.py: OpenMP waits
passively; nothing here loads torch), and the tasks (worker/tasks.py, loaded by the app's `include`)."""

from __future__ import annotations

from typing import Any

from celery.signals import celeryd_init

from service.jobs.celery_app import celery_app as celery_app
from service.settings import get_worker_settings
from worker import threads as threads


@celeryd_init.connect
def _require_redis(**_: Any) -> None:
    if not get_worker_settings().redis_url:
        raise RuntimeError("HETEROLORA_REDIS_URL is not set: a worker needs Redis (the API alone runs embedded)")
