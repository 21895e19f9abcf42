"""Celery worker: runs planning jobs from the `gpu` queue (app.py is import-light, tasks.py loads torch)."""

from heterolora import _deprecated

_deprecated.install()  # old import paths still work for one release, with a warning
