"""Connections to MLOps tools, each behind its own optional extra:

- `heterolora.integrations.mlflow` (`pip install "heterolora[mlflow]"`): log a plan to an MLflow run
  and read it back (`log_plan`, `load_plan`);
- `heterolora.integrations.kfp` (`pip install "heterolora[kfp]"`): a Kubeflow Pipelines component
  that plans through the service, and a plan -> train pipeline;
- `heterolora.integrations.summary`: the flat plan summary both log (no extra needed).

Importing this package imports neither tool. See docs/mlops.md.
"""

from __future__ import annotations

from heterolora.errors import HeteroLoraError


class TrackingError(HeteroLoraError):
    """The tracking store failed: it cannot be reached, the run does not exist, or the run holds
    no plan. (A plan artifact that does not match its init file is a heterolora.errors.PlanError.)"""

    code = "tracking_error"


def missing_extra(extra: str, exc: ImportError) -> ImportError:
    """The ImportError raised when an integration's optional dependency is absent."""
    return ImportError(f'this needs the {extra} extra: pip install "heterolora[{extra}]" (missing: {exc.name})')


__all__ = ["TrackingError", "missing_extra"]
