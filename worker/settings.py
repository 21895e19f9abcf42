"""Worker settings, read from HETEROLORA_* environment variables. Import-light. The class lives
with the other settings in service/settings.py (the single-machine mode runs jobs too)."""

from __future__ import annotations

from functools import lru_cache

from service.settings import WorkerSettings

__all__ = ["WorkerSettings", "get_worker_settings"]


@lru_cache
def get_worker_settings() -> WorkerSettings:
    return WorkerSettings()
