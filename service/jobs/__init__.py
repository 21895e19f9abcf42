"""The job machinery: the queue contract (queue.py) with its two implementations, Celery through
Redis (celery_queue.py, celery_app.py) and the single-machine thread (embedded.py); running one
job (execute.py, run.py); records and Redis keys (records.py); the TTL store for results and
artifacts (store.py, artifacts.py); leases (lease.py) and job metrics (metrics.py)."""

from heterolora._deprecated import moved_name


def __getattr__(name: str) -> object:
    return moved_name(__name__, name)
