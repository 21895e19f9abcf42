"""HTTP service: FastAPI around heterolora, with jobs run by Celery workers or in-process."""
