"""Celery worker: runs planning jobs from the `gpu` queue (app.py is import-light, tasks.py loads torch)."""
