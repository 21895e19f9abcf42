"""HTTP service: FastAPI around heterolora, with jobs run by Celery workers or in-process."""

from heterolora import _deprecated

_deprecated.install()  # old import paths still work for one release, with a warning
