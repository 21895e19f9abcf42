"""Which gradient-init variant for init="gradient": a short pilot on the MRPC train hold-out.

Uniform r=2 on all six linear types (the quality benchmark's uniform_all arm and head), MiniLM,
trained on 2/3 of MRPC train and evaluated on the held-out 1/3 (never on validation), the quality
harness's schedule with the given epochs and learning rate. Arms: zero (standard LoRA), lora_ga,
gora, each initialised from the same K scoring batches. One process, one thread, one run at a time.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/init_variant_pilot.py --epochs 1 --lr 1e-3 \
        --arms zero,lora_ga,gora --out benchmarks/results/init-variant-pilot.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch
from peft import get_peft_model

from benchmarks.quality.arms import ALL_TYPES, template_plan, uniform_ranks, with_ranks
from benchmarks.quality.data import encode
from benchmarks.quality.head import mean_head
from benchmarks.quality.peers import ALPHA_RATIO
from benchmarks.quality.train import Settings, splits, train
from heterolora.init.apply import apply_init_artifact
from heterolora.init.build import init_for_ranks
from heterolora.loading import load_model
from heterolora.samples import make_batches

DATA = "/work/shared/data/glue"


def run(arm: str, seed: int, settings: Settings) -> dict:
    torch.set_num_threads(1)
    train_rows, held_rows = splits(DATA, "mrpc", settings)
    loaded = load_model("minilm", "seq-cls", num_labels=2)
    tok, model = loaded.tokenizer, mean_head(loaded.model)
    scoring = make_batches(
        train_rows, tok, task="seq-cls", batch_size=8, num_batches=settings.scoring_batches,
        max_length=settings.max_length, seed=seed, labels={0: 0, 1: 1},
    )  # fmt: skip
    ranks = uniform_ranks(model, ALL_TYPES, 2)
    t0 = time.perf_counter()
    artifact = None
    if arm != "zero":
        artifact = init_for_ranks(
            model, scoring, ranks, alpha_ratio=ALPHA_RATIO, variant=arm, learning_rate=settings.lr, seed=seed
        )
    torch.manual_seed(10_000 + seed)  # LoRA A init: the harness's stream
    lora_config = with_ranks(template_plan(model, seed), ranks, "uniform").to_lora_config()
    peft_model = get_peft_model(model, lora_config)
    if artifact is not None:
        apply_init_artifact(peft_model, artifact.info, artifact.data)
    init_s = time.perf_counter() - t0
    data, held = encode(train_rows, tok, settings.max_length), encode(held_rows, tok, settings.max_length)
    result = train(peft_model, data, held, settings, seed, tok.pad_token_id)
    return {"arm": arm, "seed": seed, "init_s": round(init_s, 2), **result}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--arms", default="zero,lora_ga,gora")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/init-variant-pilot.json"))
    args = parser.parse_args(argv)
    settings = Settings(epochs=args.epochs, lr=args.lr, pilot=True, head="mean")
    old = json.loads(args.out.read_text()) if args.out.exists() else {"runs": []}
    runs = [r for r in old["runs"] if not (r["lr"] == args.lr and r["epochs"] == args.epochs)]
    for arm in args.arms.split(","):
        record = run(arm, args.seed, settings) | {"lr": args.lr, "epochs": args.epochs}
        runs.append(record)
        print(json.dumps(record), flush=True)
        out = {
            "what": "MiniLM, MRPC train hold-out (2/3 train, 1/3 eval), uniform r=2 on q,k,v,o,up,down, mean head",
            "command": "PYTHONPATH=$PWD .venv/bin/python benchmarks/init_variant_pilot.py "
            + " ".join(argv if argv is not None else sys.argv[1:]),
            "settings": asdict(settings),
            "runs": runs,
        }
        args.out.write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
