"""Train with a HeteroLoRA plan file: the training half of a pipeline step (see pipeline_step.sh).

    python examples/train_from_plan.py --plan plan.json --out adapter/ [--steps 4]

Loads the base model the plan was made for, applies the plan with PEFT (`heterolora.apply_plan`),
fine-tunes a few steps with `transformers.Trainer` on the built-in sample (swap `training_rows`
for your data), and saves the adapter with `save_pretrained`. The saved folder loads with plain
PEFT (`PeftModel.from_pretrained`), without heterolora, unless the plan has shortcut modules:
those are not PEFT modules, so such a plan is saved with `heterolora.save_adapted` and needs
`heterolora.load_adapted` to load (docs/shortcuts.md).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    Trainer,
    TrainingArguments,
)

import heterolora
from heterolora import Plan
from heterolora.loading import resolve_source
from heterolora.samples import builtin_sample

NUM_LABELS = 2  # the built-in sample is sentence-pair paraphrase detection
DEFAULT_STEPS = 4  # a demonstration, not a fine-tune


def base_model_source(plan: Plan) -> str:
    """What `from_pretrained` takes for the plan's model: a hub id, a folder, or the embedded MiniLM."""
    return resolve_source(plan.model.id)[0]


def training_rows(tokenizer: Any, max_length: int = 128) -> list[dict[str, Any]]:
    rows = builtin_sample()
    enc = tokenizer([r["text"] for r in rows], [r["text_pair"] for r in rows], truncation=True, max_length=max_length)
    return [{**{k: enc[k][i] for k in enc}, "labels": int(r["label"])} for i, r in enumerate(rows)]


def train(plan: Plan, out: Path, *, steps: int = DEFAULT_STEPS, seed: int = 0) -> tuple[Any, Any]:
    """Apply `plan` to its base model, train `steps` steps, save the adapter to `out`.
    Returns (the trained PeftModel in eval mode, the tokenizer)."""
    if plan.task != "seq-cls":
        raise SystemExit(f"this example trains a sequence classifier; the plan is for {plan.task}")
    source = base_model_source(plan)
    torch.manual_seed(seed)  # the new classifier head is drawn from torch's RNG
    base = AutoModelForSequenceClassification.from_pretrained(source, num_labels=NUM_LABELS)
    tokenizer = AutoTokenizer.from_pretrained(source)
    model = heterolora.apply_plan(base, plan)  # PEFT LoRA at the planned ranks, verified
    optimizer = heterolora.make_optimizer(model)  # the plan's training section: rate, LoRA+ ratio
    args = TrainingArguments(
        output_dir=str(out / "trainer"),
        max_steps=steps,
        per_device_train_batch_size=8,
        learning_rate=optimizer.defaults["lr"],  # logged; the optimizer below is what trains
        save_strategy="no",
        report_to="none",
        use_cpu=not torch.cuda.is_available(),
        disable_tqdm=True,
        logging_steps=max(1, steps // 2),
        seed=seed,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=training_rows(tokenizer),
        data_collator=DataCollatorWithPadding(tokenizer),
        optimizers=(optimizer, None),  # None: the Trainer's linear schedule on this optimizer
    )
    trainer.train()
    if any(m.rank > 0 for m in plan.shortcut_modules):
        heterolora.save_adapted(model, out)  # PEFT files + shortcuts.safetensors + plan.json
    else:
        model.save_pretrained(out)  # adapter_config.json keeps rank_pattern / alpha_pattern
        plan.save(out / "plan.json")  # provenance; PEFT ignores it
    return model.eval(), tokenizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plan", required=True, type=Path, help="plan.json from `heterolora plan`")
    parser.add_argument("--out", required=True, type=Path, help="folder for the trained adapter")
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS)
    args = parser.parse_args()
    plan = Plan.load(args.plan)
    train(plan, args.out, steps=args.steps)
    print(f"trained {args.steps} steps on {plan.model.id}; adapter in {args.out}")


if __name__ == "__main__":
    main()
