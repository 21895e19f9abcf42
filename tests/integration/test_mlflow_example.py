"""examples/track_with_mlflow.py as a user runs it, against a real MLflow sqlite store: one run
holds the plan, the training metrics and the trained adapter."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from devtools.stack import REPO

mlflow = pytest.importorskip("mlflow")
from heterolora.integrations.mlflow import load_plan  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.slow]
pytest_plugins = ("stack_fixtures", "embedded_api", "mlflow_store")  # user_env, mlflow_uri

STEPS = 2


def test_the_example_plans_trains_and_saves_the_adapter_in_one_run(
    mlflow_uri: str, user_env: Callable[..., dict[str, str]], tmp_path: Path
) -> None:
    env = user_env(MLFLOW_TRACKING_URI=mlflow_uri)
    args = [sys.executable, str(REPO / "examples" / "track_with_mlflow.py"), "--out", "out", "--steps", str(STEPS)]
    res = subprocess.run([*args, "--experiment", "example"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    run_id = re.fullmatch(r"mlflow run ([0-9a-f]{32})", res.stdout.splitlines()[-1]).group(1)

    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name("example")
    assert [r.info.run_id for r in client.search_runs([experiment.experiment_id])] == [run_id]  # one run only
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    # the plan: summary params, fingerprint tag, artifact, and load_plan reads it back
    plan = load_plan(f"runs:/{run_id}")
    assert run.data.params["heterolora.budget_used"] == str(plan.budget.used) and plan.model.id == "minilm"
    assert "heterolora.fingerprint" in run.data.tags
    # the training: the Trainer's params and one loss per step, in the same run
    assert run.data.params["max_steps"] == str(STEPS) and "train_runtime" in run.data.metrics
    losses = client.get_metric_history(run_id, "loss")
    assert sorted(m.step for m in losses) == list(range(1, STEPS + 1)) and all(m.value > 0 for m in losses)
    # the adapter, with the plan's ranks in PEFT's own config
    names = {f.path for f in client.list_artifacts(run_id, "adapter")}
    assert {"adapter/adapter_config.json", "adapter/adapter_model.safetensors"} <= names
    local = mlflow.artifacts.download_artifacts(f"runs:/{run_id}/adapter/adapter_config.json", dst_path=str(tmp_path))
    config = json.loads(Path(local).read_text())
    assert config["rank_pattern"] == plan.peft.rank_pattern and len(set(plan.ranks.values())) > 1
