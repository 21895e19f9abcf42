"""Plan, train and keep the adapter in ONE MLflow run (needs `pip install "heterolora[mlflow]"`).

    MLFLOW_TRACKING_URI=sqlite:///mlflow.db python examples/track_with_mlflow.py --out out/tracked

1. plan MiniLM's ranks on the built-in sample: locally, or on a service with --server URL (the
   API key comes from $HETEROLORA_API_KEY and is never logged);
2. `log_plan`: the plan, its init, its summary (params) and fingerprint (tag) go into a new run;
3. `MLFLOW_RUN_ID` = that run: transformers' MLflowCallback (`report_to=["mlflow"]`) continues it
   and logs the training metrics there;
4. the trained adapter (PEFT's adapter_config.json carries the plan's rank_pattern) goes into the
   same run under `adapter/`.

The last line printed is `mlflow run <run_id>`; `heterolora show runs:/<run_id>` prints its plan.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import mlflow
import torch
from train_from_plan import NUM_LABELS, base_model_source, training_rows  # the same folder
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    Trainer,
    TrainingArguments,
)

import heterolora
from heterolora import Plan
from heterolora.integrations.mlflow import log_plan
from heterolora.samples import builtin_sample

BUDGET = {"like": {"r": 8, "types": ["q", "v"]}}  # as many parameters as uniform LoRA r=8 on q, v
PLANNING = {"num_batches": 2, "batch_size": 8}  # a demonstration: real plans score more batches


def make_plan(server: str | None) -> Plan:
    if server:  # the same request, computed by a HeteroLoRA service; the plan carries its job id
        from heterolora.client import Client

        with Client(server) as client:
            return client.plan("minilm", builtin_sample(), BUDGET, **PLANNING)
    return heterolora.plan("minilm", builtin_sample(), budget=BUDGET, **PLANNING)


def train_in_run(plan: Plan, run_id: str, out: Path, steps: int) -> Path:
    """Fine-tune with `plan` while the Trainer reports to run `run_id`; returns the adapter folder."""
    os.environ["MLFLOW_RUN_ID"] = run_id  # MLflowCallback resumes this run instead of starting one
    source = base_model_source(plan)
    torch.manual_seed(0)  # the new classifier head is drawn from torch's RNG
    base = AutoModelForSequenceClassification.from_pretrained(source, num_labels=NUM_LABELS)
    tokenizer = AutoTokenizer.from_pretrained(source)
    model = heterolora.apply_plan(base, plan)
    optimizer = heterolora.make_optimizer(model)  # the plan's training section: rate, LoRA+ ratio
    args = TrainingArguments(
        output_dir=str(out / "trainer"),
        max_steps=steps,
        per_device_train_batch_size=8,
        learning_rate=optimizer.defaults["lr"],  # logged; the optimizer below is what trains
        save_strategy="no",
        report_to=["mlflow"],
        use_cpu=not torch.cuda.is_available(),
        disable_tqdm=True,
        logging_steps=1,
        seed=0,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=training_rows(tokenizer),
        data_collator=DataCollatorWithPadding(tokenizer),
        optimizers=(optimizer, None),  # None: the Trainer's linear schedule on this optimizer
    )
    trainer.train()  # the callback ends the run when training ends; artifacts can still be added
    adapter = out / "adapter"
    if any(m.rank > 0 for m in plan.shortcut_modules):
        heterolora.save_adapted(model, adapter)  # shortcuts are not PEFT modules (docs/shortcuts.md)
    else:
        model.save_pretrained(adapter)
    return adapter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("out/tracked"), help="Folder for the trainer and adapter.")
    parser.add_argument("--steps", type=int, default=4, help="Optimizer steps (a demonstration, not a fine-tune).")
    parser.add_argument("--experiment", help="MLflow experiment name (default: $MLFLOW_EXPERIMENT_NAME or MLflow's).")
    parser.add_argument("--server", help="Plan on this HeteroLoRA service instead of locally.")
    args = parser.parse_args()

    plan = make_plan(args.server)
    run_id = log_plan(plan, experiment=args.experiment)
    adapter = train_in_run(plan, run_id, args.out, args.steps)
    mlflow.MlflowClient().log_artifacts(run_id, str(adapter), "adapter")
    print(f"trained {args.steps} steps with {len(plan.ranks)} adapted modules ({plan.budget.used:,} parameters)")
    print(f"mlflow run {run_id}")


if __name__ == "__main__":
    main()
