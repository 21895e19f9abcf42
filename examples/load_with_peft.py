"""Load a trained HeteroLoRA adapter with plain transformers + PEFT, without heterolora.

    python examples/load_with_peft.py --base MODEL --adapter DIR --inputs in.safetensors --out logits.safetensors

This is what an inference host runs: heterolora is not needed (here it is made unimportable, as on
a host where it is not installed, and the script checks that nothing loaded it). The per-module
ranks come from `rank_pattern` / `alpha_pattern` in the adapter's adapter_config.json.
"""

from __future__ import annotations

import argparse
import importlib.abc
import sys


class _NotInstalled(importlib.abc.MetaPathFinder):
    """Import hook: behave as if heterolora were not installed."""

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name == "heterolora" or name.startswith("heterolora."):
            raise ModuleNotFoundError(f"No module named {name!r}")


def main() -> None:
    sys.meta_path.insert(0, _NotInstalled())
    import torch
    from peft import PeftModel
    from safetensors.torch import load_file, save_file
    from transformers import AutoModelForSequenceClassification

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="base model: hub id or folder")
    parser.add_argument("--adapter", required=True, help="folder written by save_pretrained")
    parser.add_argument("--inputs", required=True, help="safetensors with input_ids, attention_mask, ...")
    parser.add_argument("--out", required=True, help="where to write the logits (safetensors)")
    parser.add_argument("--num-labels", type=int, default=2)
    args = parser.parse_args()

    base = AutoModelForSequenceClassification.from_pretrained(args.base, num_labels=args.num_labels)
    model = PeftModel.from_pretrained(base, args.adapter).eval()
    with torch.no_grad():
        logits = model(**load_file(args.inputs)).logits
    save_file({"logits": logits.contiguous()}, args.out)
    loaded = sorted(m for m in sys.modules if m.split(".")[0] == "heterolora")
    assert not loaded, f"heterolora was imported: {loaded}"
    print(f"loaded {args.adapter} with PEFT only; logits {tuple(logits.shape)}")


if __name__ == "__main__":
    main()
