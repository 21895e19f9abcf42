"""Plans in MLflow: log_plan / load_plan against a real MLflow sqlite store (no mocks of MLflow)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import random_batches, tiny_model

from heterolora.config import AllocationConfig
from heterolora.errors import PlanError
from heterolora.integrations import TrackingError
from heterolora.integrations.summary import fingerprint_hash, plan_summary, rank_histogram
from heterolora.plans import Plan

mlflow = pytest.importorskip("mlflow")
import heterolora.integrations.mlflow as tracking  # noqa: E402
from heterolora.integrations.mlflow import load_plan, log_plan, parse_run_ref  # noqa: E402

pytest_plugins = ("mlflow_store",)  # fixture: mlflow_uri (a real sqlite store)
pytestmark = pytest.mark.usefixtures("mlflow_uri")


@pytest.fixture(scope="module")
def init_plan() -> Plan:
    """A real plan of a tiny BERT with a gradient init (its tensor file attached), from job j-42."""
    from heterolora.engine import compute_plan

    config = AllocationConfig(budget={"trainable_params": 1500}, num_batches=2, init="gradient")
    plan = compute_plan(tiny_model("bert"), random_batches(2), config, model_id="tiny-bert")
    assert plan.init is not None and plan.init_data
    plan.job_id = "j-42"
    return plan


def artifacts(run_id: str) -> set[str]:
    return {f.path for f in mlflow.MlflowClient().list_artifacts(run_id, "heterolora")}


def test_summary_is_flat_small_and_counts_every_module(init_plan: Plan) -> None:
    summary = plan_summary(init_plan)
    hist = rank_histogram(init_plan)
    assert sum(hist.values()) == len(init_plan.modules) and summary["modules_adapted"] == len(init_plan.ranks)
    assert summary["rank_histogram"] == ",".join(f"{r}:{n}" for r, n in hist.items())
    assert summary["budget_used"] == init_plan.budget.used and summary["budget_kind"] == "trainable_params"
    assert json.loads(str(summary["budget_request"])) == {"trainable_params": 1500}
    assert summary["init"] == init_plan.init.variant and summary["model"] == "tiny-bert"
    assert all(isinstance(v, str | int | float) and len(str(v)) <= 500 for v in summary.values())


def test_log_plan_new_run_then_load_round_trips(init_plan: Plan) -> None:
    run_id = log_plan(init_plan, experiment="plans")
    run = mlflow.MlflowClient().get_run(run_id)
    assert run.info.status == "FINISHED"
    assert mlflow.MlflowClient().get_experiment(run.info.experiment_id).name == "plans"
    params, tags = run.data.params, run.data.tags
    assert params["heterolora.budget_used"] == str(init_plan.budget.used)
    assert params["heterolora.proxy"] == init_plan.proxy and params["heterolora.seed"] == str(init_plan.seed)
    assert tags["heterolora.fingerprint"] == fingerprint_hash(init_plan)
    assert tags["heterolora.job_id"] == "j-42" and tags["heterolora.version"] == init_plan.heterolora_version
    assert artifacts(run_id) == {"heterolora/plan.json", "heterolora/plan.safetensors", "heterolora/ranks.png"}
    for ref in (run_id, f"runs:/{run_id}", f"runs:/{run_id}/heterolora/"):
        back = load_plan(ref)
        assert back.fingerprint() == init_plan.fingerprint()
        assert back.init_data == init_plan.init_data and back.job_id == "j-42"


def test_log_plan_uses_the_active_run_then_a_given_run(init_plan: Plan) -> None:
    zero = init_plan.model_copy(update={"init": None})
    with mlflow.start_run() as active:
        assert log_plan(zero) == active.info.run_id
        with pytest.raises(TrackingError, match="differs from the active run"):
            log_plan(zero, run_id="0" * 32)
    assert mlflow.MlflowClient().get_run(active.info.run_id).info.status == "FINISHED"
    assert artifacts(active.info.run_id) == {"heterolora/plan.json", "heterolora/ranks.png"}
    given = mlflow.MlflowClient().create_run("0").info.run_id
    assert log_plan(zero, run_id=given) == given
    assert mlflow.MlflowClient().get_run(given).info.status == "RUNNING"  # the caller's run stays open
    assert "heterolora.job_id" in mlflow.MlflowClient().get_run(given).data.tags  # model_copy kept it
    assert load_plan(given).init is None


def test_a_run_holds_one_plan(init_plan: Plan) -> None:
    run_id = log_plan(init_plan)
    other = init_plan.model_copy(update={"seed": init_plan.seed + 1})
    with pytest.raises(TrackingError, match="cannot log the plan"):
        log_plan(other, run_id=run_id)


def test_load_plan_refuses_a_run_without_a_plan_and_a_tampered_init(
    init_plan: Plan, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = mlflow.MlflowClient()
    empty = client.create_run("0").info.run_id
    with pytest.raises(TrackingError, match=r"holds no heterolora/plan\.json") as err:
        load_plan(empty)
    assert err.value.field == "run_id"
    with pytest.raises(TrackingError, match="cannot read the plan"):
        load_plan("f" * 32)  # no such run
    with pytest.raises(TrackingError, match="not an MLflow run id"):
        parse_run_ref("runs:/../etc")

    run_id = log_plan(init_plan)
    stored = Path(client.get_run(run_id).info.artifact_uri.removeprefix("file://")) / "heterolora"
    tensors = stored / "plan.safetensors"
    original = tensors.read_bytes()
    tensors.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
    with pytest.raises(PlanError) as err:
        load_plan(run_id)
    assert err.value.field == "init.sha256"
    tensors.write_bytes(original + b"!")  # refused by its listed size, before any download
    with pytest.raises(PlanError, match="bytes, the plan says") as err:
        load_plan(run_id)
    assert err.value.field == "init.size"
    tensors.unlink()
    with pytest.raises(PlanError, match="missing"):
        load_plan(run_id)
    with monkeypatch.context() as mp, pytest.raises(PlanError, match="bytes, over 100"):
        mp.setattr(tracking, "MAX_PLAN_BYTES", 100)
        load_plan(run_id)
    (stored / "plan.json").write_text('{"schema_version": "1.2"}')
    with pytest.raises(PlanError, match="not a valid plan"):
        load_plan(run_id)


def test_a_plan_without_its_init_tensors_is_refused_before_any_run(init_plan: Plan) -> None:
    bare = Plan.model_validate_json(init_plan.to_json())  # init section, tensors not attached
    before = len(mlflow.MlflowClient().search_runs(["0"]))
    with pytest.raises(PlanError, match="not attached"):
        log_plan(bare)
    assert len(mlflow.MlflowClient().search_runs(["0"])) == before


def test_an_unusable_store_is_one_tracking_error(init_plan: Plan, tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/a-file/mlflow.db")
    with pytest.raises(TrackingError, match="cannot log the plan to MLflow at sqlite:///"):
        log_plan(init_plan)


def test_a_store_error_names_the_store_without_its_password(init_plan: Plan, monkeypatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://ci:s3cret-pw@127.0.0.1:9")  # nothing listens on port 9
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    with pytest.raises(TrackingError, match=r"MLflow at http://\*\*\*@127\.0\.0\.1:9: ") as err:
        log_plan(init_plan)
    assert "s3cret-pw" not in str(err.value)


def test_without_mlflow_the_import_names_the_extra() -> None:
    code = "import sys; sys.modules['mlflow'] = None\nimport heterolora.integrations.mlflow"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 1
    assert 'ImportError: this needs the mlflow extra: pip install "heterolora[mlflow]"' in out.stderr
