"""`heterolora plan --mlflow` (library mode) and `heterolora show runs:/<id>` against a real MLflow
sqlite store and the embedded MiniLM. (`--server --mlflow`, $MLFLOW_RUN_ID and a
store that fails: tests/integration/test_mlflow_service.py.)"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from heterolora.cli import main
from heterolora.plans import Plan

mlflow = pytest.importorskip("mlflow")

pytest_plugins = ("mlflow_store",)  # fixture: mlflow_uri (a real sqlite store)
pytestmark = pytest.mark.usefixtures("mlflow_uri")

FAST = ["--budget-params", "20000", "--num-batches", "2", "--batch-size", "4"]


def cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def run_id_of(res: Result) -> str:
    found = re.findall(r"mlflow run ([0-9a-f]{32})$", res.stderr, re.M)
    assert len(found) == 1, res.stderr
    return found[0]


@pytest.mark.slow  # plans MiniLM
def test_plan_mlflow_logs_a_plan_that_plan_load_accepts_and_show_reads_back(tmp_path: Path) -> None:
    res = cli("plan", *FAST, "--mlflow", "--json", "--out", "local.json")
    assert res.exit_code == 0, res.output
    run_id = run_id_of(res)
    assert Plan.model_validate_json(res.stdout).budget.used > 0  # stdout is still exactly the plan
    local = Plan.load("local.json")

    folder = mlflow.artifacts.download_artifacts(f"runs:/{run_id}/heterolora", dst_path=str(tmp_path / "dl"))
    logged = Plan.load(Path(folder) / "plan.json")
    assert logged.fingerprint() == local.fingerprint() and logged.budget.limit == 20000
    run = mlflow.MlflowClient().get_run(run_id)
    assert run.data.params["heterolora.budget_limit"] == "20000" and run.data.params["heterolora.model"] == "minilm"
    assert "heterolora.job_id" not in run.data.tags  # a library plan has no job

    shown = cli("show", f"runs:/{run_id}")
    assert shown.exit_code == 0, shown.output
    assert "budget trainable_params: used" in shown.stdout and shown.stdout == cli("show", "local.json").stdout
    saved = cli("show", run_id, "--mlflow", "--out", "from-run.json")
    assert saved.exit_code == 0, saved.output
    assert Plan.load("from-run.json").fingerprint() == local.fingerprint()


def test_show_refuses_an_unknown_run_in_one_line() -> None:
    res = cli("show", "runs:/" + "e" * 32)
    assert res.exit_code == 1 and res.stderr.startswith("Error: cannot read the plan from MLflow"), res.output
    bad = cli("show", "runs:/no/../way")
    assert bad.exit_code == 1 and "not an MLflow run id" in bad.stderr


def test_mlflow_flags_name_the_extra_when_mlflow_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "mlflow", None)  # what an install without [mlflow] looks like
    res = cli("plan", "--mlflow")
    assert res.exit_code == 2 and "pip install 'heterolora[mlflow]'" in res.output
