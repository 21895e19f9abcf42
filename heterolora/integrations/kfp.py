"""Kubeflow Pipelines (KFP v2): a component that asks a HeteroLoRA service for a plan, a component
that trains with it, and the two-step pipeline plan -> train. Needs `pip install "heterolora[kfp]"`.

    from kfp import compiler
    from heterolora.integrations.kfp import make_pipeline
    compiler.Compiler().compile(make_pipeline("registry.example.com/heterolora:1.0"), "pipeline.yaml")

The steps run in an image with heterolora installed (docker-compose.yml builds `heterolora:latest`).
The plan step reads the API key from the environment variable named by `api_key_env` (mount a
Kubernetes secret there); a key is never a pipeline parameter, because parameters are recorded
with every run. Outputs: `plan` (a folder with plan.json and, for a gradient init, plan.safetensors;
`Plan.load(os.path.join(plan.path, "plan.json"))` verifies it), `summary` (the plan summary's
numbers as metrics), and the trained `adapter` (PEFT's files plus plan.json).
"""

# No `from __future__ import annotations` here: KFP reads the steps' parameter types at run time.

from collections.abc import Callable
from typing import Any

from heterolora.integrations import missing_extra

try:
    from kfp import dsl
    from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output
except ImportError as exc:
    raise missing_extra("kfp", exc) from exc

DEFAULT_IMAGE = "heterolora:latest"


def plan_step(
    server_url: str,
    samples: Input[Dataset],
    plan: Output[Artifact],
    summary: Output[Metrics],
    model_id: str = "minilm",
    budget_params: int = 0,
    num_batches: int = 0,
    init: str = "",
    seed: int = -1,
    api_key_env: str = "HETEROLORA_API_KEY",
    timeout_s: float = 1800.0,
) -> None:
    """Plan LoRA ranks on a HeteroLoRA service. `samples`: JSONL rows {text, text_pair?, label?}.
    0, "" and -1 leave an option to the service's default (budget: as many parameters as LoRA r=8
    on q, v)."""
    import json
    import os
    from pathlib import Path

    from heterolora.client import Client
    from heterolora.integrations.summary import fingerprint_hash, numeric_summary

    text = Path(samples.path).read_text()
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    budget = {"trainable_params": budget_params} if budget_params else None
    given = {"num_batches": num_batches or None, "init": init or None, "seed": None if seed < 0 else seed}
    options = {k: v for k, v in given.items() if v is not None}
    with Client(server_url, api_key=os.environ.get(api_key_env)) as client:
        result = client.plan(model_id, rows, budget, timeout=timeout_s, **options)
    folder = Path(plan.path)
    folder.mkdir(parents=True, exist_ok=True)
    result.save(folder / "plan.json")  # with a gradient init, plan.safetensors next to it
    plan.metadata.update(
        {"fingerprint": fingerprint_hash(result), "job_id": result.job_id or "", "model": result.model.id}
    )
    for name, value in numeric_summary(result).items():
        summary.log_metric(name, value)


def train_step(
    plan: Input[Artifact],
    train_data: Input[Dataset],
    adapter: Output[Model],
    steps: int = 100,
    batch_size: int = 8,
    learning_rate: float = 0.0,
    max_length: int = 128,
) -> None:
    """Fine-tune the plan's base model (sequence classification) with the plan applied, on JSONL
    rows {text, text_pair?, label}, with the optimizer of the plan's training section (`make_optimizer`);
    a non-zero `learning_rate` replaces the section's rate."""
    import json
    from pathlib import Path

    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    import heterolora
    from heterolora.loading import resolve_source
    from heterolora.samples import class_names

    planned = heterolora.Plan.load(Path(plan.path) / "plan.json")
    text = Path(train_data.path).read_text()
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    labels = list(planned.labels or class_names([r.get("label") for r in rows], required=True))
    source = resolve_source(planned.model.id)[0]
    tokenizer = AutoTokenizer.from_pretrained(source)
    base = AutoModelForSequenceClassification.from_pretrained(source, num_labels=len(labels))
    model = heterolora.apply_plan(base, planned, learning_rate=learning_rate or None)
    # the plan's training section (rate, LoRA+ ratio); a non-zero learning_rate overrides its rate
    optimizer = heterolora.make_optimizer(model, **({"learning_rate": learning_rate} if learning_rate else {}))
    pairs = [r.get("text_pair") for r in rows]
    enc = tokenizer([r["text"] for r in rows], pairs if any(pairs) else None, truncation=True, max_length=max_length)
    data = [{**{k: enc[k][i] for k in enc}, "labels": labels.index(r["label"])} for i, r in enumerate(rows)]
    args = TrainingArguments(
        output_dir=str(Path(adapter.path) / "trainer"),
        max_steps=steps,
        per_device_train_batch_size=batch_size,
        learning_rate=optimizer.defaults["lr"],
        save_strategy="no",
        report_to="none",
        use_cpu=not torch.cuda.is_available(),
    )
    collator = DataCollatorWithPadding(tokenizer)
    Trainer(model=model, args=args, train_dataset=data, data_collator=collator, optimizers=(optimizer, None)).train()
    if any(m.rank > 0 for m in planned.shortcut_modules):
        heterolora.save_adapted(model, adapter.path)
    else:
        model.save_pretrained(adapter.path)
        planned.save(Path(adapter.path) / "plan.json")
    adapter.metadata.update({"base_model": planned.model.id, "plan_fingerprint": plan.metadata.get("fingerprint", "")})


def make_components(image: str = DEFAULT_IMAGE) -> tuple[Any, Any]:
    """(plan component, train component), both running in `image`."""
    return dsl.component(base_image=image)(plan_step), dsl.component(base_image=image)(train_step)


def make_pipeline(image: str = DEFAULT_IMAGE) -> Callable[..., Any]:
    """The pipeline plan -> train. Its parameters: the service URL, the URIs of the scoring sample
    and of the training data (JSONL; imported as datasets), the model and the planning/training knobs."""
    plan_op, train_op = make_components(image)

    @dsl.pipeline(name="heterolora-plan-train", description="Plan heterogeneous LoRA ranks, then train with them.")
    def plan_train(
        server_url: str,
        samples_uri: str,
        train_uri: str,
        model_id: str = "minilm",
        budget_params: int = 0,
        num_batches: int = 0,
        init: str = "",
        steps: int = 100,
    ) -> None:
        samples = dsl.importer(artifact_uri=samples_uri, artifact_class=Dataset, reimport=False)
        train_data = dsl.importer(artifact_uri=train_uri, artifact_class=Dataset, reimport=False)
        planned = plan_op(
            server_url=server_url,
            samples=samples.output,
            model_id=model_id,
            budget_params=budget_params,
            num_batches=num_batches,
            init=init,
        )
        train_op(plan=planned.outputs["plan"], train_data=train_data.output, steps=steps)

    return plan_train


plan_op, train_op = make_components()
plan_train_pipeline = make_pipeline()

__all__ = [
    "DEFAULT_IMAGE",
    "make_components",
    "make_pipeline",
    "plan_op",
    "plan_step",
    "plan_train_pipeline",
    "train_op",
    "train_step",
]
