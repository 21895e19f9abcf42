"""Old import paths, kept for one release. Each still imports and gives the same object, with a
DeprecationWarning that names the new place.

- MOVED_MODULES: a module that no longer exists -> the module that took its place. A finder on
  sys.meta_path serves the new module under the old name.
- MOVED_NAMES: a module that still exists but lost some names -> {name: "new.module"} (or
  "new.module:new_name" for a renamed one); the old module's `__getattr__` asks `moved_name`.

The targets are strings, imported only when an old path is used.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings
from types import ModuleType
from typing import Any

MOVED_MODULES: dict[str, str] = {
    "heterolora.api": "heterolora.planner",
    "heterolora.cli_files": "heterolora.cli.files",
    "heterolora.cli_mlflow": "heterolora.cli.mlflow",
    "heterolora.cli_remote": "heterolora.cli.remote",
    "heterolora.cli_service": "heterolora.cli.service",
    "heterolora.gradient_init": "heterolora.init.build",
    "heterolora.init_apply": "heterolora.init.apply",
    "heterolora.init_format": "heterolora.init.format",
    # The job's planning call moved to the service; this alias resolves only where it is installed.
    "heterolora.runner": "service.jobs.run",
    # The service in two rooms: service/api (HTTP) and service/jobs (job machinery).
    "service.main": "service.api.app",
    "service.deps": "service.api.deps",
    "service.exposure": "service.api.exposure",
    "service.metrics": "service.api.metrics",
    "service.middleware": "service.api.middleware",
    "service.policy": "service.api.policy",
    "service.probes": "service.api.probes",
    "service.routes": "service.api.routes",
    "service.routes.allocate": "service.api.routes.allocate",
    "service.routes.artifacts": "service.api.routes.artifacts",
    "service.routes.health": "service.api.routes.health",
    "service.routes.jobs": "service.api.routes.jobs",
    "service.artifacts": "service.jobs.artifacts",
    "service.celery_queue": "service.jobs.celery_queue",
    "service.embedded": "service.jobs.embedded",
    "service.execute": "service.jobs.execute",
    "service.records": "service.jobs.records",
    "service.run": "service.jobs.run",
    "service.stats": "service.jobs.stats",
    "service.store": "service.jobs.store",
    "worker.lease": "service.jobs.lease",
    "worker.settings": "service.settings",
}

MOVED_NAMES: dict[str, dict[str, str]] = {
    "heterolora.engine": {
        "SearchSpace": "heterolora.sites",
        "resolve_limit": "heterolora.budget",
        "score_key": "heterolora.scoring",
        "warmed_up_head": "heterolora.scoring",
    },
    "heterolora.shortcuts": {
        "choose_ranks": "heterolora.allocation",
        "check_family_budgets": "heterolora.budget",
    },
    "heterolora.shortcuts.planning": {
        "choose_ranks": "heterolora.allocation",
        "family_groups": "heterolora.allocation",
        "check_family_budgets": "heterolora.budget",
    },
    "heterolora.dynamic.selection": {"check_budget": "heterolora.dynamic.selection:check_active_budget"},
    # service/jobs.py became the package service/jobs/; its names live in service/jobs/queue.py.
    "service.api.metrics": {"router": "service.api.routes.metrics"},
    "service.jobs": {n: "service.jobs.queue" for n in ("Caller", "JobQueue", "Limits", "internal_error")},
}


def _warn(old: str, new: str) -> None:
    warnings.warn(f"{old} moved to {new}; the old path goes in the next release", DeprecationWarning, stacklevel=3)


def moved_name(module: str, name: str) -> Any:
    """For an old module's `__getattr__`: the moved object, with a warning; else AttributeError."""
    target = MOVED_NAMES.get(module, {}).get(name)
    if target is None:
        raise AttributeError(f"module {module!r} has no attribute {name!r}")
    new_module, _, new_name = target.partition(":")
    _warn(f"{module}.{name}", f"{new_module}.{new_name or name}")
    return getattr(importlib.import_module(new_module), new_name or name)


class _Alias(importlib.abc.Loader):
    """Loads an old module name as a stand-in whose attributes are the new module's."""

    def __init__(self, new: str) -> None:
        self.new = new

    def create_module(self, spec: Any) -> ModuleType:
        _warn(spec.name, self.new)
        return ModuleType(spec.name)

    def exec_module(self, module: ModuleType) -> None:
        target = importlib.import_module(self.new)
        module.__getattr__ = lambda name: getattr(target, name)  # type: ignore[method-assign]
        module.__doc__ = f"Moved to {self.new}."


class _MovedModules(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        new = MOVED_MODULES.get(name)
        return importlib.util.spec_from_loader(name, _Alias(new)) if new else None


def install() -> None:
    """Put the finder for moved modules on sys.meta_path (once)."""
    if not any(isinstance(f, _MovedModules) for f in sys.meta_path):
        sys.meta_path.insert(0, _MovedModules())  # before path finders, which may see stale files
