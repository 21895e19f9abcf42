"""Dynamic HeteroLoRA with a transformers Trainer: MiniLM on the built-in sentence pairs, a few
steps, the active modules re-scored every 2 steps. Runs in well under a minute on a CPU.

    python examples/dynamic_trainer.py --out out/dynamic
"""

from __future__ import annotations

import argparse
from pathlib import Path

from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

import heterolora.dynamic
from heterolora.samples import builtin_sample


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="out/dynamic", help="Trainer output folder; the plan goes to plan.json here.")
    parser.add_argument("--steps", type=int, default=6, help="Optimizer steps.")
    args = parser.parse_args()
    out = Path(args.out)

    rows = builtin_sample()  # 128 labelled sentence pairs
    model, callback = heterolora.dynamic.attach(
        "minilm",
        rows,
        budget={"trainable_params": 60_000},  # adapter parameters active at any time
        realloc_every=2,  # re-score every 2 optimizer steps
        num_batches=2,  # scoring batches (K)
        max_length=64,
        device="cpu",
        export_to=out / "plan.json",
    )
    tokenizer = callback.tokenizer
    train = [
        dict(tokenizer(r["text"], r["text_pair"], truncation=True, max_length=64), labels=int(r["label"])) for r in rows
    ]
    trainer = Trainer(
        model=model,
        args=TrainingArguments(
            str(out),
            max_steps=args.steps,
            per_device_train_batch_size=8,
            learning_rate=2e-4,
            save_strategy="no",
            report_to=[],
            use_cpu=True,
            remove_unused_columns=False,
        ),
        train_dataset=train,
        data_collator=DataCollatorWithPadding(tokenizer),
        callbacks=[callback],
    )
    trainer.train()
    controller = callback.controller
    for record in controller.history:
        print(f"step {record['step']}: {len(record['active'])} modules active, {record['active_params']:,} parameters")
    plan = controller.export_plan()
    print(f"final plan: {len(plan.ranks)} modules, {plan.budget.used:,} parameters -> {out / 'plan.json'}")


if __name__ == "__main__":
    main()
