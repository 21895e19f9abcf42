"""`heterolora` command line: plan (and, registered by their modules, serve / worker / bench)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click

from heterolora.config import DEFAULT_RANK_SET, LORA_TYPES, PROXY_NAMES, AllocationConfig
from heterolora.errors import HeteroLoraError


def _ints(value: str | None, name: str) -> list[int] | None:
    if not value:
        return None
    try:
        return [int(x) for x in value.split(",") if x.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {value!r}", param_hint=name) from None


def _budget(params: int | None, like: str | None, fraction: float | None, rank: int) -> dict[str, Any] | None:
    given = [x for x in (params, like, fraction) if x is not None]
    if len(given) > 1:
        raise click.UsageError("give only one of --budget-params, --budget-like, --fraction")
    if params is not None:
        return {"trainable_params": params}
    if fraction is not None:
        return {"fraction": fraction, "rank": rank}
    if like is not None:  # "8:q,v"
        r, _, types = like.partition(":")
        if not r.isdigit():
            raise click.BadParameter("use R:TYPES, e.g. 8:q,v", param_hint="--budget-like")
        return {"like": {"r": int(r), "types": types.split(",") if types else ["q", "v"]}}
    return None


class _Bar:
    """tqdm progress bar on stderr, fed by the engine's (fraction, phase) callback."""

    def __init__(self) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=100, file=sys.stderr, leave=False, bar_format="{desc:<22}{bar}| {percentage:3.0f}%")

    def __call__(self, fraction: float, phase: str) -> None:
        self.bar.set_description_str(phase)
        self.bar.n = round(100 * fraction)
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="heterolora")
def main() -> None:
    """HeteroLoRA: plan heterogeneous LoRA ranks with zero-cost proxies."""


@main.command("plan")
@click.option("--model", "-m", default="minilm", show_default=True, help="Hub id, local folder or 'minilm'.")
@click.option("--data", "-d", type=click.Path(dir_okay=False), help="JSONL or TSV (text, text_pair, label).")
@click.option("--task", type=click.Choice(["seq-cls", "causal-lm"]), default="seq-cls", show_default=True)
@click.option("--proxy", "-p", type=click.Choice(PROXY_NAMES), default="grad_norm", show_default=True)
@click.option("--budget-params", type=int, help="Exact trainable LoRA parameters.")
@click.option("--budget-like", help="Match uniform LoRA, R:TYPES (default 8:q,v).")
@click.option("--fraction", type=float, help="Paper mode: top fraction of modules at --rank.")
@click.option("--rank", type=int, default=8, show_default=True, help="Rank for --fraction.")
@click.option("--rank-set", default=",".join(map(str, DEFAULT_RANK_SET)), show_default=True)
@click.option("--max-rank", type=int, help="Cap every rank (serving stacks such as vLLM).")
@click.option("--types", help=f"Comma-separated site types from {','.join(LORA_TYPES)}.")
@click.option("--layers", help="Comma-separated layer indices.")
@click.option("--normalize", type=click.Choice(["none", "layer", "type"]), default=None)
@click.option("--head-warmup", type=int, default=None, help="Head-only steps before scoring.")
@click.option("--num-batches", type=int, default=32, show_default=True)
@click.option("--batch-size", type=int, default=8, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--rslora", is_flag=True, help="rsLoRA scaling (one alpha) instead of constant alpha/r.")
@click.option("--shortcuts", is_flag=True, help="Add LoRA-adapted shortcut connections (docs/shortcuts.md).")
@click.option("--shortcut-mode", type=click.Choice(["combined", "separated"]), help="One ranking, or a share each.")
@click.option("--shortcut-share", type=float, help="Budget share of shortcuts in separated mode.")
@click.option("--scoring", type=click.Choice(["auto", "exact", "stream"]), default=None, help="Gradient state mode.")
@click.option("--dtype", type=click.Choice(["float32", "bfloat16", "float16"]), help="Weights' dtype.")
@click.option("--device", help="cpu, cuda, cuda:1 ... (default: cuda if available).")
@click.option("--out", "-o", type=click.Path(dir_okay=False), help="Write the plan JSON here.")
@click.option("--plot", type=click.Path(dir_okay=False), help="Write a rank heatmap PNG here.")
@click.option("--json", "as_json", is_flag=True, help="Print the plan JSON instead of the table.")
def plan_cmd(**kw: Any) -> None:
    """Score every candidate module and print a rank plan (defaults: MiniLM, built-in sample)."""
    from heterolora.api import plan
    from heterolora.data import read_samples
    from heterolora.heatmap import rank_table, save_heatmap

    options: dict[str, Any] = {
        "task": kw["task"],
        "proxy": kw["proxy"],
        "rank_set": _ints(kw["rank_set"], "--rank-set"),
        "max_rank": kw["max_rank"],
        "types": kw["types"].split(",") if kw["types"] else None,
        "layers": _ints(kw["layers"], "--layers"),
        "num_batches": kw["num_batches"],
        "batch_size": kw["batch_size"],
        "seed": kw["seed"],
        "use_rslora": kw["rslora"],
        "shortcuts": kw["shortcuts"],
    }
    for key in ("shortcut_mode", "shortcut_share", "scoring"):
        if kw[key] is not None:
            options[key] = kw[key]
    if kw["normalize"] is not None:
        options["normalize"] = kw["normalize"]
    if kw["head_warmup"] is not None:
        options["head_warmup_steps"] = kw["head_warmup"]
    budget = _budget(kw["budget_params"], kw["budget_like"], kw["fraction"], kw["rank"])
    if budget is not None:
        options["budget"] = budget
    bar = None
    try:
        config = AllocationConfig(**options)
        samples = read_samples(kw["data"]) if kw["data"] else None
        bar = _Bar()
        start = time.perf_counter()
        result = plan(kw["model"], samples, config, device=kw["device"], dtype=kw["dtype"], progress=bar)
        bar.close()
        bar = None
    except HeteroLoraError as exc:
        raise click.ClickException(exc.message) from None
    except ValueError as exc:  # pydantic validation of options
        raise click.ClickException(_one_line(exc)) from None
    finally:
        if bar is not None:
            bar.close()
    if kw["out"]:
        result.save(kw["out"])
    if kw["plot"]:
        save_heatmap(result, kw["plot"])
    if kw["as_json"]:
        click.echo(result.to_json())
    else:
        click.echo(rank_table(result))
        click.echo(f"planned in {time.perf_counter() - start:.1f}s", err=True)


def _one_line(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        e = errors()[0]
        return f"invalid option {'.'.join(map(str, e['loc']))}: {e['msg']}"
    return str(exc).splitlines()[0]


@main.command("show")
@click.argument("plan_file", type=click.Path(exists=True, dir_okay=False))
@click.option("--plot", type=click.Path(dir_okay=False), help="Write a rank heatmap PNG here.")
@click.option("--peft", is_flag=True, help="Print the LoraConfig keyword arguments.")
def show_cmd(plan_file: str, plot: str | None, peft: bool) -> None:
    """Print a saved plan as a table (and optionally its heatmap or PEFT kwargs)."""
    from heterolora.heatmap import rank_table, save_heatmap
    from heterolora.plans import Plan

    try:
        loaded = Plan.load(plan_file)
    except ValueError as exc:
        raise click.ClickException(f"{Path(plan_file).name} is not a valid plan: {_one_line(exc)}") from None
    click.echo(json.dumps(loaded.peft.model_dump(exclude_none=True), indent=2) if peft else rank_table(loaded))
    if plot:
        save_heatmap(loaded, plot)


from heterolora.bench.cli import bench  # noqa: E402  (click only; the benchmark imports lazily)

main.add_command(bench)

from heterolora.cli_service import serve_cmd, worker_cmd  # noqa: E402  (service/worker load inside the commands)

main.add_command(serve_cmd)
main.add_command(worker_cmd)

if __name__ == "__main__":
    main()
