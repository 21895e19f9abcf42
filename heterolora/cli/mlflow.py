"""`heterolora plan --mlflow` and `heterolora show runs:/<run_id>`: the command line's side of
heterolora.integrations.mlflow. The tracking store is MLflow's own choice ($MLFLOW_TRACKING_URI,
else its local default); the run id goes to stderr, so `--json` output stays a plan."""

from __future__ import annotations

import importlib.util
import os

import click

from heterolora.errors import HeteroLoraError
from heterolora.plans import Plan

RUN_URI_PREFIX = "runs:/"


def require_mlflow(wanted: bool, option: str = "--mlflow") -> None:
    """A usage error before any work when MLflow is wanted but not installed."""
    if wanted and importlib.util.find_spec("mlflow") is None:
        raise click.UsageError(f"{option} needs MLflow: pip install 'heterolora[mlflow]'")


def log_to_mlflow(plan: Plan) -> str:
    """Log `plan` (a new run, or $MLFLOW_RUN_ID's) and print the run id on stderr. A store that
    fails is one error line (exit 1); the caller has written and printed the plan already."""
    from heterolora.integrations.mlflow import log_plan

    try:
        run_id = log_plan(plan, run_id=_env_run_id())
    except HeteroLoraError as exc:
        raise click.ClickException(f"the plan was not logged to MLflow: {exc.message}") from None
    click.echo(f"mlflow run {run_id}", err=True)
    return run_id


def is_run_ref(value: str, flag: bool) -> bool:
    return flag or value.startswith(RUN_URI_PREFIX)


def plan_from_mlflow(ref: str) -> Plan:
    """The plan logged to run `ref` (a run id or runs:/<run_id>), verified like a download."""
    require_mlflow(True, "an MLflow run")
    from heterolora.integrations.mlflow import load_plan

    try:
        return load_plan(ref)
    except HeteroLoraError as exc:
        raise click.ClickException(exc.message) from None


def _env_run_id() -> str | None:
    return os.environ.get("MLFLOW_RUN_ID") or None
