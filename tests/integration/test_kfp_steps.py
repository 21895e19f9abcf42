"""The Kubeflow steps' own code, run as the KFP executor runs it (the function, with artifacts at
local paths), against a real `heterolora serve` (API key on) and the embedded MiniLM. No cluster
and no container: those exist only on Kubernetes; the compiled YAML is tests/unit/test_kfp_pipeline.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from devtools.stack import API_KEY, Api
from heterolora.plans import Plan
from heterolora.samples import builtin_sample

kfp = pytest.importorskip("kfp")
from kfp.dsl import Artifact, Dataset, Metrics, Model  # noqa: E402

from heterolora.integrations.kfp import plan_step, train_step  # noqa: E402
from heterolora.integrations.summary import fingerprint_hash, numeric_summary  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.slow]
pytest_plugins = ("stack_fixtures", "embedded_api")  # fixtures: model_root, embedded_api


def jsonl(path: Path, rows: list[dict]) -> Dataset:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return Dataset(uri=str(path))


def test_plan_step_then_train_step(embedded_api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPELINE_KEY", API_KEY)  # as a Kubernetes secret mounted into the step's env
    plan, summary = Artifact(uri=str(tmp_path / "plan")), Metrics(uri=str(tmp_path / "metrics"))
    plan_step(
        server_url=embedded_api.url,
        samples=jsonl(tmp_path / "samples", builtin_sample()),  # no suffix, as KFP names artifact files
        plan=plan,
        summary=summary,
        budget_params=30000,
        num_batches=2,
        api_key_env="PIPELINE_KEY",
    )
    planned = Plan.load(Path(plan.path) / "plan.json")
    assert planned.budget.limit == 30000 and planned.settings["num_batches"] == 2
    assert plan.metadata["fingerprint"] == fingerprint_hash(planned) and plan.metadata["job_id"]
    assert summary.metadata == numeric_summary(planned) and summary.metadata["budget_used"] == planned.budget.used
    assert API_KEY not in json.dumps(plan.metadata) + (Path(plan.path) / "plan.json").read_text()

    adapter = Model(uri=str(tmp_path / "adapter"))
    train_step(plan=plan, train_data=jsonl(tmp_path / "train", builtin_sample()[:32]), adapter=adapter, steps=2)
    config = json.loads((Path(adapter.path) / "adapter_config.json").read_text())
    assert config["rank_pattern"] == planned.peft.rank_pattern
    assert (Path(adapter.path) / "adapter_model.safetensors").stat().st_size > 0
    assert adapter.metadata == {"base_model": "minilm", "plan_fingerprint": plan.metadata["fingerprint"]}
