"""Track plans in MLflow: `log_plan` puts a plan into a run, `load_plan` reads it back, verified.

    from heterolora.integrations.mlflow import log_plan, load_plan
    run_id = log_plan(plan)                      # the active run, else a new one
    same = load_plan(f"runs:/{run_id}")          # sha256-checked like a download from the service

What goes where (the tracking URI is MLflow's own: $MLFLOW_TRACKING_URI or its local default):
- params `heterolora.*`: the plan summary (heterolora.integrations.summary.plan_summary);
- tags: `heterolora.fingerprint`, `heterolora.version`, and `heterolora.job_id` for a plan from
  the service;
- artifacts under `heterolora/`: `plan.json`, `plan.safetensors` (a gradient init's tensors) and
  `ranks.png` (when matplotlib is installed).

Needs `pip install "heterolora[mlflow]"`. No API key, URL or sample text is ever logged.
"""

from __future__ import annotations

import importlib.util
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from heterolora.errors import PlanError
from heterolora.integrations import TrackingError, missing_extra
from heterolora.integrations.summary import SUMMARY_PREFIX, fingerprint_hash, plan_summary
from heterolora.plans import Plan

try:
    import mlflow
    from mlflow.entities import Param, RunTag
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient
except ImportError as exc:
    raise missing_extra("mlflow", exc) from exc

ARTIFACT_DIR = "heterolora"
PLAN_FILE = "plan.json"  # the init tensors go next to it as plan.safetensors (Plan.save's naming)
HEATMAP_FILE = "ranks.png"
TAG_FINGERPRINT = "heterolora.fingerprint"
TAG_VERSION = "heterolora.version"
TAG_JOB_ID = "heterolora.job_id"
RUN_ID = re.compile(r"[A-Za-z0-9_-]{1,256}")
USERINFO = re.compile(r"//[^/@\s]*@")
MAX_PLAN_BYTES = 64 << 20  # bound on a plan JSON read from a run (a 70B model's plan is under 1 MB)
# What a store raises besides MlflowException when it cannot be reached or written.
STORE_ERRORS: tuple[type[Exception], ...] = (MlflowException, OSError)


def log_plan(plan: Plan, *, run_id: str | None = None, experiment: str | None = None) -> str:
    """Log `plan` to MLflow and return the run id.

    The run is the active one (`mlflow.start_run()`), else `run_id`, else a new run in
    `experiment` (a name, created if missing; default: $MLFLOW_EXPERIMENT_NAME, else MLflow's
    default experiment). A run this call creates is ended; `mlflow.start_run(run_id=...)` or
    `MLFLOW_RUN_ID` continues it. A run holds one plan: logging a different one into it fails.

    Raises TrackingError when the store fails, PlanError for a plan whose init tensors are absent.
    """
    if plan.init is not None and plan.init_data is None:
        raise PlanError("the plan's init tensors are not attached: fetch them before logging", field="init")
    summary = plan_summary(plan)
    params = [Param(SUMMARY_PREFIX + k, str(v)) for k, v in summary.items()]  # 14 values: one batch
    tags = {TAG_FINGERPRINT: fingerprint_hash(plan), TAG_VERSION: plan.heterolora_version or _version()}
    if plan.job_id:
        tags[TAG_JOB_ID] = plan.job_id
    with _store_errors("log the plan to"):
        client = MlflowClient()
        target, created = _target_run(client, run_id, experiment)
        status = "FAILED"
        try:
            client.log_batch(target, params=params, tags=[RunTag(k, v) for k, v in tags.items()])
            with tempfile.TemporaryDirectory() as tmp:
                folder = Path(tmp) / ARTIFACT_DIR
                plan.save(folder / PLAN_FILE)
                if importlib.util.find_spec("matplotlib") is not None:
                    from heterolora.heatmap import save_heatmap

                    save_heatmap(plan, folder / HEATMAP_FILE)
                client.log_artifacts(target, str(folder), ARTIFACT_DIR)
            status = "FINISHED"
        finally:
            if created:
                client.set_terminated(target, status=status)
    return target


def load_plan(run_id_or_uri: str) -> Plan:
    """The plan logged to a run: `runs:/<run_id>` (optionally `/<folder>`, default `heterolora`)
    or a bare run id. Its init tensors are checked against the plan's size and sha256.

    Raises TrackingError (no such run, no plan in it, store unreachable) or PlanError (the plan
    JSON is invalid, or its init file is missing or was changed).
    """
    run_id, folder = parse_run_ref(run_id_or_uri)
    with _store_errors("read the plan from"), tempfile.TemporaryDirectory() as tmp, _quiet_downloads():
        client = MlflowClient()
        run = client.get_run(run_id)
        sizes = {Path(f.path).name: f.file_size for f in client.list_artifacts(run_id, folder) if not f.is_dir}
        if PLAN_FILE not in sizes:
            raise TrackingError(f"MLflow run {run_id} holds no {folder}/{PLAN_FILE}", field="run_id")
        if (sizes[PLAN_FILE] or 0) > MAX_PLAN_BYTES:
            raise PlanError(f"{folder}/{PLAN_FILE} of run {run_id} has {sizes[PLAN_FILE]} bytes, over {MAX_PLAN_BYTES}")
        local = Path(client.download_artifacts(run_id, f"{folder}/{PLAN_FILE}", tmp))
        try:
            plan = Plan.model_validate_json(local.read_text())
        except ValueError as exc:
            raise PlanError(f"{folder}/{PLAN_FILE} of run {run_id} is not a valid plan: {_first_line(exc)}") from None
        # plan.init.file is a bare name (InitInfo checks it). A missing file is Plan.load's error; one
        # of the wrong size is refused before it is downloaded (a store may not report sizes: then after).
        if plan.init is not None and plan.init.file in sizes:
            if sizes[plan.init.file] not in (None, plan.init.size):
                raise PlanError(
                    f"{folder}/{plan.init.file} has {sizes[plan.init.file]} bytes, the plan says {plan.init.size}",
                    field="init.size",
                )
            client.download_artifacts(run_id, f"{folder}/{plan.init.file}", tmp)
        loaded = Plan.load(local)
    job_id = run.data.tags.get(TAG_JOB_ID)
    if job_id:
        loaded.job_id = job_id
    return loaded


def parse_run_ref(ref: str) -> tuple[str, str]:
    """(run id, artifact folder) from `runs:/<id>[/<folder>]` or a bare run id."""
    text = ref.strip()
    folder = ARTIFACT_DIR
    if text.startswith("runs:/"):
        run_id, _, rest = text.removeprefix("runs:/").strip("/").partition("/")
        folder = rest.strip("/") or ARTIFACT_DIR
    else:
        run_id = text
    if not RUN_ID.fullmatch(run_id) or ".." in folder.split("/"):
        raise TrackingError(f"{ref!r} is not an MLflow run id or runs:/<run_id> URI", field="run_id")
    return run_id, folder


def _target_run(client: MlflowClient, run_id: str | None, experiment: str | None) -> tuple[str, bool]:
    """(run id to log into, whether this call created it)."""
    active = mlflow.active_run()
    if active is not None:
        if run_id not in (None, active.info.run_id):
            raise TrackingError(f"run_id {run_id} differs from the active run {active.info.run_id}", field="run_id")
        return active.info.run_id, False
    if run_id is not None:
        return client.get_run(run_id).info.run_id, False
    run = client.create_run(_experiment_id(client, experiment))
    return run.info.run_id, True


def _experiment_id(client: MlflowClient, name: str | None) -> str:
    name = name or os.environ.get("MLFLOW_EXPERIMENT_NAME")
    if not name:
        return os.environ.get("MLFLOW_EXPERIMENT_ID") or "0"  # "0": MLflow's default experiment
    found = client.get_experiment_by_name(name)
    return found.experiment_id if found is not None else client.create_experiment(name)


@contextmanager
def _store_errors(action: str) -> Iterator[None]:
    """MLflow's and the store's own exceptions as one TrackingError naming the store."""
    try:
        yield
    except Exception as exc:
        # MLflow's own errors, the file system's, and a store backend's driver errors (sqlalchemy, requests)
        driver = type(exc).__module__.split(".")[0] in ("sqlalchemy", "requests", "urllib3")
        if not (isinstance(exc, STORE_ERRORS) or driver):
            raise
        message = f"cannot {action} MLflow at {mlflow.get_tracking_uri()}: {_first_line(exc)}"
        raise TrackingError(redact(message)) from None  # the chained error would repeat any password


def redact(text: str) -> str:
    """`text` with the user:password@ part of every URL in it masked."""
    return USERINFO.sub("//***@", text)


@contextmanager
def _quiet_downloads() -> Iterator[None]:
    """No download progress bars unless the user asked for them."""
    key = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    if key in os.environ:
        yield
        return
    os.environ[key] = "false"
    try:
        yield
    finally:
        os.environ.pop(key, None)


def _first_line(exc: BaseException) -> str:
    text = getattr(exc, "message", None) or str(exc)
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__


def _version() -> str:
    from heterolora._version import __version__

    return __version__


__all__ = ["ARTIFACT_DIR", "PLAN_FILE", "load_plan", "log_plan", "parse_run_ref"]
