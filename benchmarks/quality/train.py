"""Fine-tune MiniLM with one arm's LoRA and report validation accuracy and F1 after every epoch.

One call of `run_one` = one (task, arm, seed): it writes one JSON file, so long benchmarks run in
parts (per arm, per seed, in several processes) and are merged afterwards by `report.merge`.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from benchmarks.quality.arms import (
    FAMILY_RECIPE,
    INIT_ARMS,
    ArmSpec,
    alpha_mode,
    arm_options,
    build_arm,
    family_of,
    kind_of,
)
from benchmarks.quality.data import Encoded, bucketed_order, collate, encode, eval_batches, holdout_split, load_rows
from benchmarks.quality.data import subset as take
from benchmarks.quality.head import mean_head
from heterolora.loading import load_model
from heterolora.samples import make_batches
from heterolora.search_space import head_modules


@dataclass(frozen=True)
class Settings:
    """One schedule for every arm."""

    epochs: int = 3  # baselines still improve after 1 epoch (docs/quality.md); 3 fits the CPU budget
    batch_size: int = 16
    lr: float | None = None  # A rate. None: the arm family's (arms.FAMILY_RECIPE); a number: every arm, in the run name
    ratio: float | None = None  # LoRA+ ratio, B rate / A rate. None: the family's; a number: in the run name
    weight_decay: float = 0.01
    warmup_ratio: float = 0.06
    max_length: int = 128
    scoring_batches: int = 32  # K batches of 8 train examples for proxies and EVA
    train_limit: int | None = None  # quick mode: a tiny subset
    eval_limit: int | None = None
    pilot: bool = False  # train on 2/3 of train, evaluate on the other 1/3 (never on validation)
    head: str = "shipped"  # "shipped": the head apply_plan trains on the model as loaded (for MiniLM: mean pooling +
    # classifier, as the checkpoint declares); "mean": masked mean pooling + classifier on any model (docs/quality.md)
    threads: int = 1
    device: str = "auto"  # auto: cuda when available


HEADS = ("shipped", "mean")


def with_family_rate(settings: Settings, arm_name: str) -> Settings:
    """`settings` with the rate and LoRA+ ratio this arm trains at: the explicit ones, else its
    family's (FAMILY_RECIPE)."""
    recipe = FAMILY_RECIPE[family_of(arm_name)]
    return replace(settings, lr=settings.lr or recipe.lr, ratio=settings.ratio or recipe.ratio)


def run_label(arm_label: str, settings: Settings) -> str:
    """The run file's arm name: an explicit learning rate or LoRA+ ratio (sweeps) is part of it."""
    lr = "" if settings.lr is None else f"__lr-{settings.lr:g}"
    ratio = "" if settings.ratio is None else f"__ratio-{settings.ratio:g}"
    return f"{arm_label}{lr}{ratio}"


def training_settings(spec: ArmSpec, settings: Settings) -> dict[str, Any]:
    """The recipe one run trained with (the report's per-arm `training`)."""
    options = arm_options(spec)
    init = spec.name in INIT_ARMS
    return {
        "learning_rate": settings.lr,
        "lora_plus_ratio": settings.ratio,
        "alpha_mode": alpha_mode(spec.name),
        "init": "gradient" if init else "zero",
        "init_step": options["init_step"] if init else None,
        "head_warmup_steps": int(options.get("head_warmup_steps", 0)),
    }


def make_optimizer(model: Any, settings: Settings) -> torch.optim.Optimizer:
    """What `heterolora.make_optimizer` builds: PEFT's LoRA+ optimizer (AdamW; B at ratio x the A rate)."""
    from peft.optimizers import create_loraplus_optimizer

    return create_loraplus_optimizer(
        model, torch.optim.AdamW, lr=settings.lr, loraplus_lr_ratio=settings.ratio,
        loraplus_weight_decay=settings.weight_decay,
    )  # fmt: skip


def resolve_device(name: str) -> str:
    return ("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else name


def splits(data_dir: str, task: str, settings: Settings) -> tuple[list, list]:
    train = load_rows(data_dir, task, "train")
    if settings.pilot:
        train, held = holdout_split(train)
    else:
        held = load_rows(data_dir, task, "validation")
    return take(train, settings.train_limit), take(held, settings.eval_limit)


def f1_pos(pred: list[int], gold: list[int]) -> float:
    tp = sum(p == g == 1 for p, g in zip(pred, gold, strict=True))
    fp = sum(p == 1 and g == 0 for p, g in zip(pred, gold, strict=True))
    fn = sum(p == 0 and g == 1 for p, g in zip(pred, gold, strict=True))
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


@torch.no_grad()
def predict(model: Any, data: Encoded, pad_id: int, batch_size: int = 64) -> list[int]:
    """The predicted label of every example, in the data's order."""
    model.eval()
    pred = [0] * len(data)
    device = next(model.parameters()).device
    for idx in eval_batches(data, batch_size):
        batch = {k: v.to(device) for k, v in collate(data, idx, pad_id).items() if k != "labels"}
        for i, p in zip(idx, model(**batch).logits.argmax(-1).tolist(), strict=True):
            pred[i] = p
    return pred


def accuracy(pred: list[int], gold: list[int]) -> float:
    return 100 * sum(p == g for p, g in zip(pred, gold, strict=True)) / len(gold)


def schedule(optimizer: torch.optim.Optimizer, total: int, warmup: int) -> torch.optim.lr_scheduler.LambdaLR:
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total - step) / max(1, total - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def train(model: Any, train_data: Encoded, held: Encoded, settings: Settings, seed: int, pad_id: int) -> dict:
    opt = make_optimizer(model, settings)
    device = next(model.parameters()).device
    lengths = [len(x) for x in train_data.input_ids]
    per_epoch = math.ceil(len(train_data) / settings.batch_size)
    total = per_epoch * settings.epochs
    sched = schedule(opt, total, max(1, round(settings.warmup_ratio * total)))
    torch.manual_seed(20_000 + seed)  # dropout masks (seeds CUDA too)
    acc, f1, losses, preds = [], [], [], []
    dynamic = getattr(model, "heterolora_dynamic", None)  # arm (h): re-allocates during training
    if dynamic is not None:
        dynamic.steps_per_epoch = per_epoch
    t0 = time.perf_counter()
    for epoch in range(settings.epochs):
        model.train()
        running = 0.0
        for i, idx in enumerate(bucketed_order(lengths, settings.batch_size, seed * 1000 + epoch)):
            if dynamic is not None:
                dynamic.maybe_reallocate(epoch * per_epoch + i)
            loss = model(**{k: v.to(device) for k, v in collate(train_data, idx, pad_id).items()}).loss
            loss.backward()
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            running += loss.item()
        preds.append(predict(model, held, pad_id))
        acc.append(round(accuracy(preds[-1], held.labels), 4))
        f1.append(round(100 * f1_pos(preds[-1], held.labels), 4))
        losses.append(round(running / per_epoch, 5))
    seconds = round(time.perf_counter() - t0, 2)
    # per-example predictions after every epoch (the two-way bootstrap resamples them), with the labels
    return {"accuracy": acc, "f1": f1, "train_loss": losses, "train_seconds": seconds, "gold": held.labels,
            "predictions": preds}  # fmt: skip


@dataclass(frozen=True)
class Prepared:
    """What an arm's plan is built from: the run's settings, the data split, the loaded model and its
    scoring batches. One place, so a run and a plan rebuilt without training (`init_steps`) match."""

    settings: Settings
    train_rows: list
    held_rows: list
    tokenizer: Any
    model: Any
    scoring: list


def prepare(task: str, spec: ArmSpec, seed: int, data_dir: str, settings: Settings) -> Prepared:
    device = resolve_device(settings.device)
    if device == "cpu":
        torch.set_num_threads(settings.threads)
    settings = replace(with_family_rate(settings, spec.name), device=device)
    train_rows, held_rows = splits(data_dir, task, settings)
    loaded = load_model("minilm", "seq-cls", num_labels=2)  # seeds the new head itself: one init for all arms and seeds
    model = mean_head(loaded.model) if settings.head == "mean" else loaded.model
    model.to(device)
    scoring = make_batches(
        train_rows, loaded.tokenizer, task="seq-cls", batch_size=8, num_batches=settings.scoring_batches,
        max_length=settings.max_length, seed=seed, labels={0: 0, 1: 1},
    )  # fmt: skip
    return Prepared(settings, train_rows, held_rows, loaded.tokenizer, model, scoring)


def run_one(
    task: str, arm: str, seed: int, data_dir: str, settings: Settings, out_dir: str | Path, command: str = ""
) -> dict:
    """Train one arm with one seed; write and return its result record."""
    spec = ArmSpec.parse(arm)
    label = run_label(spec.label, settings)
    prep = prepare(task, spec, seed, data_dir, settings)
    settings, tok, model = prep.settings, prep.tokenizer, prep.model
    head_params = sum(p.numel() for n in head_modules(model) for p in model.get_submodule(n).parameters())
    peft_model, plan_seconds, ranks = build_arm(spec, model, prep.scoring, seed, settings.lr)
    train_data, held = (encode(rows, tok, settings.max_length) for rows in (prep.train_rows, prep.held_rows))
    result = train(peft_model, train_data, held, settings, seed, tok.pad_token_id)
    record = {
        "task": task,
        "arm": label,
        "name": spec.name,
        "kind": kind_of(spec.name),
        "family": family_of(spec.name),
        "lr": settings.lr,
        "training": training_settings(spec, settings),
        "seed": seed,
        "split": "train-heldout" if settings.pilot else "validation",
        "lora_params": adapter_params(peft_model, head_params),
        "head_params": head_params,
        "plan_seconds": round(plan_seconds, 3),
        **result,
        "ranks": ranks,
        **reallocations(peft_model),
        "settings": asdict(settings),
        "sizes": {"train": len(train_data), "eval": len(held)},
        "command": command,
    }
    out = Path(out_dir) / f"{label}-s{seed}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1) + "\n")
    return record


def adapter_params(peft_model: Any, head_params: int) -> int:
    """Trainable adapter parameters (LoRA and shortcut factors; the head is counted apart). For the
    dynamic arm: the most that is active at once, the budget it is compared at."""
    dynamic = getattr(peft_model, "heterolora_dynamic", None)
    if dynamic is not None:
        return int(dynamic.config.active_params)
    return sum(p.numel() for p in peft_model.parameters() if p.requires_grad) - head_params


def reallocations(peft_model: Any) -> dict[str, list[dict[str, int]]]:
    """For the dynamic arm, each re-allocation's step, active units and parameters, and how many units
    it switched on that were off before (the churn); nothing for a static arm."""
    dynamic = getattr(peft_model, "heterolora_dynamic", None)
    if dynamic is None:
        return {}
    rows, before = [], set()
    for record in dynamic.history:
        active = set(record["active"])
        rows.append(
            {
                "step": record["step"],
                "active": len(active),
                "active_params": record["active_params"],
                "switched": len(active - before),
            }
        )
        before = active
    return {"reallocations": rows}
