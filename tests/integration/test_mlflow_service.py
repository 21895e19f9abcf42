"""Plans from a real `heterolora serve` (API key on) tracked in a real MLflow sqlite store: the
CLI's `plan --server --mlflow`, and the SDK's `Client.plan` -> `log_plan`. The run records the
service job, and nothing logged to it holds the API key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from devtools.stack import API_KEY, Api
from heterolora.cli import main
from heterolora.client import Client
from heterolora.plans import Plan
from heterolora.samples import builtin_sample

mlflow = pytest.importorskip("mlflow")
from heterolora.integrations.mlflow import load_plan, log_plan  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("mlflow_uri")]
pytest_plugins = ("stack_fixtures", "embedded_api", "mlflow_store")  # model_root, embedded_api, mlflow_uri

# One request for both tests (the service answers the second from the first's job).
BUDGET = 20000
OPTIONS = {"num_batches": 2, "batch_size": 4, "init": "gradient"}
CLI_OPTIONS = ["--budget-params", str(BUDGET), "--num-batches", "2", "--batch-size", "4", "--init", "gradient"]


def everything_logged(run_id: str, folder: Path) -> str:
    """Params, tags (names and values) and the bytes of every artifact of the run, as one text."""
    run = mlflow.MlflowClient().get_run(run_id)
    parts = [f"{k}={v}" for k, v in {**run.data.params, **run.data.tags}.items()]
    local = Path(mlflow.artifacts.download_artifacts(run_id=run_id, dst_path=str(folder)))
    files = [p for p in local.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"plan.json", "plan.safetensors"}
    parts += [p.read_bytes().decode("latin-1") for p in files]
    return "\n".join(parts)


def test_cli_plan_on_server_logs_to_the_run_in_mlflow_run_id(
    embedded_api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = mlflow.MlflowClient().create_run("0").info.run_id
    monkeypatch.setenv("MLFLOW_RUN_ID", run_id)  # a pipeline step that continues its run
    monkeypatch.setenv("HETEROLORA_API_KEY", API_KEY)
    res = CliRunner().invoke(main, ["plan", *CLI_OPTIONS, "--server", embedded_api.url, "--mlflow", "--out", "p.json"])
    assert res.exit_code == 0, res.output
    assert re.search(rf"mlflow run {run_id}$", res.stderr, re.M), res.stderr
    job_id = re.search(r"job ([0-9a-f]+) on ", res.stderr).group(1)

    run = mlflow.MlflowClient().get_run(run_id)
    assert run.data.tags["heterolora.job_id"] == job_id and run.data.params["heterolora.init"] != "zero"
    logged = load_plan(f"runs:/{run_id}")  # init tensors verified against the plan's sha256
    assert logged.fingerprint() == Plan.load("p.json").fingerprint() and logged.job_id == job_id
    assert logged.init_data == Plan.load("p.json").init_data
    text = everything_logged(run_id, tmp_path / "all")
    assert API_KEY not in text and API_KEY[:12] not in text
    assert job_id in text  # the search itself can find what is there


def test_a_store_that_fails_is_one_error_line_and_the_plan_is_still_written_and_printed(
    embedded_api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/a-file/mlflow.db")
    monkeypatch.setenv("HETEROLORA_API_KEY", API_KEY)
    res = CliRunner().invoke(main, ["plan", *CLI_OPTIONS, "--server", embedded_api.url, "--mlflow", "--out", "p.json"])
    assert res.exit_code == 1
    errors = [line for line in res.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "the plan was not logged to MLflow" in errors[0], res.stderr
    assert "Traceback" not in res.output and API_KEY not in res.output
    assert "budget trainable_params: used" in res.stdout  # printed
    assert Plan.load("p.json").budget.limit == BUDGET  # written, with its init file


def test_sdk_plan_then_log_plan_records_the_job(embedded_api: Api, tmp_path: Path) -> None:
    with Client(embedded_api.url, api_key=API_KEY) as client:
        plan = client.plan("minilm", builtin_sample(), {"trainable_params": BUDGET}, **OPTIONS)
    assert plan.job_id and plan.init_data
    run_id = log_plan(plan, experiment="from-the-service")
    run = mlflow.MlflowClient().get_run(run_id)
    assert run.data.tags["heterolora.job_id"] == plan.job_id
    back = load_plan(run_id)
    assert back.fingerprint() == plan.fingerprint() and back.init_data == plan.init_data
    assert API_KEY not in everything_logged(run_id, tmp_path / "all")
