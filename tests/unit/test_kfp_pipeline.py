"""The Kubeflow pipeline plan -> train compiles offline, with the inputs, outputs and wiring its
users rely on. (The steps' code runs for real in tests/integration/test_kfp_steps.py.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

kfp = pytest.importorskip("kfp")
from kfp import compiler  # noqa: E402

from heterolora.integrations.kfp import make_pipeline, plan_op  # noqa: E402


def compiled(tmp_path: Path, what: Any, name: str) -> dict[str, Any]:
    path = tmp_path / name
    compiler.Compiler().compile(what, str(path))
    docs = list(yaml.safe_load_all(path.read_text()))
    return docs[0]


def io(component: dict[str, Any], side: str) -> dict[str, Any]:
    """{name: type} of a component's inputs or outputs: artifacts by schema title, parameters by type."""
    spec = component.get(f"{side}Definitions", {})
    out = {k: v["artifactType"]["schemaTitle"] for k, v in spec.get("artifacts", {}).items()}
    out |= {k: v["parameterType"] for k, v in spec.get("parameters", {}).items()}
    return out


def test_the_pipeline_compiles_with_its_inputs_outputs_and_wiring(tmp_path: Path) -> None:
    spec = compiled(tmp_path, make_pipeline("registry.example.com/heterolora:1.2"), "pipeline.yaml")
    assert spec["pipelineInfo"]["name"] == "heterolora-plan-train"
    root = io(spec["root"], "input")
    assert root == {
        "server_url": "STRING",
        "samples_uri": "STRING",
        "train_uri": "STRING",
        "model_id": "STRING",
        "budget_params": "NUMBER_INTEGER",
        "num_batches": "NUMBER_INTEGER",
        "init": "STRING",
        "steps": "NUMBER_INTEGER",
    }
    components = spec["components"]
    plan_step, train_step = components["comp-plan-step"], components["comp-train-step"]
    assert io(plan_step, "output") == {"plan": "system.Artifact", "summary": "system.Metrics"}
    plan_inputs = io(plan_step, "input")
    assert plan_inputs["samples"] == "system.Dataset" and plan_inputs["server_url"] == "STRING"
    assert plan_inputs["api_key_env"] == "STRING"  # the name of a variable; no key is a parameter
    assert plan_step["inputDefinitions"]["parameters"]["api_key_env"]["defaultValue"] == "HETEROLORA_API_KEY"
    assert io(train_step, "input") == {
        "plan": "system.Artifact",
        "train_data": "system.Dataset",
        "steps": "NUMBER_INTEGER",
        "batch_size": "NUMBER_INTEGER",
        "learning_rate": "NUMBER_DOUBLE",
        "max_length": "NUMBER_INTEGER",
    }
    assert io(train_step, "output") == {"adapter": "system.Model"}
    # train consumes plan's `plan` output, so it runs after it
    tasks = spec["root"]["dag"]["tasks"]
    wired = tasks["train-step"]["inputs"]["artifacts"]["plan"]["taskOutputArtifact"]
    assert wired == {"producerTask": "plan-step", "outputArtifactKey": "plan"}
    assert tasks["plan-step"]["inputs"]["artifacts"]["samples"]["taskOutputArtifact"]["producerTask"] == "importer"
    executors = spec["deploymentSpec"]["executors"]
    images = {name: e["container"].get("image") for name, e in executors.items() if "container" in e}
    assert images == dict.fromkeys(["exec-plan-step", "exec-train-step"], "registry.example.com/heterolora:1.2")


def test_the_plan_component_compiles_alone(tmp_path: Path) -> None:
    spec = compiled(tmp_path, plan_op, "component.yaml")
    assert io(spec["root"], "output") == {"plan": "system.Artifact", "summary": "system.Metrics"}
    assert spec["deploymentSpec"]["executors"]["exec-plan-step"]["container"]["image"] == "heterolora:latest"


def test_without_kfp_the_import_names_the_extra() -> None:
    code = "import sys; sys.modules['kfp'] = None\nimport heterolora.integrations.kfp"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 1
    assert 'ImportError: this needs the kfp extra: pip install "heterolora[kfp]"' in out.stderr
