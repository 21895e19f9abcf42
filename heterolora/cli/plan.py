"""`heterolora plan` and `heterolora show`: plan locally (or on a service with --server) and read
plans back."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, get_args, get_origin

import click
from pydantic.fields import FieldInfo

from heterolora.cli.files import check_writable, save_plan
from heterolora.cli.mlflow import is_run_ref, log_to_mlflow, plan_from_mlflow, require_mlflow
from heterolora.cli.output import ProgressBar, check_plot, first_error, one_line
from heterolora.cli.remote import DEFAULT_API_KEY_ENV
from heterolora.config import DEFAULT_LIKE, DEVICE_MAPS, WEIGHT_DTYPES, AllocationConfig
from heterolora.errors import HeteroLoraError
from heterolora.serving import STACKS, VLLM_DEFAULT_MAX_LORA_RANK


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
        return {"like": {"r": int(r), "types": types.split(",") if types else DEFAULT_LIKE["types"]}}
    return None


# AllocationConfig's fields become `plan` options: name, type, default and help come from the field,
# so a new knob cannot be forgotten here. The budget has its own options (three forms).
OPTION_NAMES = {"proxy": ["--proxy", "-p"], "head_warmup_steps": ["--head-warmup"], "use_rslora": ["--rslora"]}
NOT_OPTIONS = {"budget"}
BUDGET_OPTIONS = {"--budget-params": "budget_params", "--budget-like": "budget_like", "--fraction": "fraction"}


def config_option(name: str, field: FieldInfo) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A click option for one AllocationConfig field."""
    names = OPTION_NAMES.get(name, ["--" + name.replace("_", "-")])
    kwargs: dict[str, Any] = {"help": field.description, "show_default": True}
    default = field.get_default(call_default_factory=True)
    kind = field.annotation
    if isinstance(kind, UnionType):  # X | None: an optional X
        kind = next(a for a in get_args(kind) if a is not type(None))
    if get_origin(kind) is Literal:
        kwargs |= {"type": click.Choice(get_args(kind)), "default": default}
    elif kind is bool:  # --x / --no-x, so a default that is on can be turned off
        names = [f"{names[0]}/--no-{names[0].removeprefix('--')}", *names[1:]]
        kwargs |= {"default": default, "show_default": True}
    elif get_origin(kind) is list:  # comma-separated
        item = get_args(kind)[0]
        kwargs["help"] = f"{field.description} Comma-separated."
        kwargs["default"] = None if default is None else ",".join(map(str, default))
        if item is int or get_origin(item) is Annotated:
            kwargs["callback"] = lambda ctx, param, value: _ints(value, param.opts[0])
        else:
            kwargs["callback"] = lambda ctx, param, value: value.split(",") if value else None
    else:
        kwargs |= {"type": kind, "default": default}
    return click.option(*names, name, **kwargs)


def config_options(command: Callable[..., Any]) -> Callable[..., Any]:
    for name, field in reversed(AllocationConfig.model_fields.items()):
        if name not in NOT_OPTIONS:
            command = config_option(name, field)(command)
    return command


@click.command("plan")
@click.option("--model", "-m", default="minilm", show_default=True, help="Hub id, local folder or 'minilm'.")
@click.option("--data", "-d", type=click.Path(dir_okay=False), help="JSONL or TSV (text, text_pair, label).")
@click.option("--budget-params", type=int, help="Exact trainable LoRA parameters.")
@click.option("--budget-like", help="Match uniform LoRA, R:TYPES (default 8:q,v).")
@click.option("--fraction", type=float, help="Paper mode: top fraction of modules at --rank.")
@click.option("--rank", type=int, default=8, show_default=True, help="Rank for --fraction.")
@config_options
@click.option("--dtype", type=click.Choice(WEIGHT_DTYPES), help="Weights' dtype (default: the checkpoint's).")
@click.option("--device", help="cpu, cuda, cuda:1 ... (default: cuda if available).")
@click.option("--device-map", type=click.Choice(DEVICE_MAPS), help="Spread the model over every visible GPU.")
@click.option("--out", "-o", type=click.Path(dir_okay=False), help="Write the plan JSON here.")
@click.option("--plot", type=click.Path(dir_okay=False), help="Write a rank heatmap PNG here.")
@click.option("--json", "as_json", is_flag=True, help="Print the plan JSON instead of the table.")
@click.option("--server", help="Plan on this HeteroLoRA service (URL) instead of locally.")
@click.option("--api-key-env", default=DEFAULT_API_KEY_ENV, show_default=True, help="Env var holding the API key.")
@click.option(
    "--mlflow",
    "to_mlflow",
    is_flag=True,
    help="Also log the plan to MLflow ($MLFLOW_TRACKING_URI; $MLFLOW_RUN_ID's run, else a new one); "
    "prints the run id on stderr.",
)
def plan_cmd(**kw: Any) -> None:
    """Score every candidate module and print a rank plan (defaults: MiniLM, built-in sample)."""
    from heterolora.heatmap import rank_table, save_heatmap
    from heterolora.planner import plan
    from heterolora.samples import read_samples
    from heterolora.threads import apply_threads

    apply_threads()  # threads that fit this process's CPUs, unless HETEROLORA_TORCH_THREADS says otherwise

    check_plot(kw["plot"])
    check_writable(kw["out"], "--out")
    check_writable(kw["plot"], "--plot")
    require_mlflow(kw["to_mlflow"])
    options = {name: kw[name] for name in AllocationConfig.model_fields if name not in NOT_OPTIONS}
    budget = _budget(kw["budget_params"], kw["budget_like"], kw["fraction"], kw["rank"])
    if budget is not None:
        options["budget"] = budget
    bar = None
    main_rank = os.environ.get("RANK", "0") == "0"  # under torchrun, rank 0 alone reports and writes
    try:
        config = AllocationConfig(**options)
        samples = read_samples(kw["data"]) if kw["data"] else None
        bar = ProgressBar() if main_rank else None
        start = time.perf_counter()
        if kw["server"]:  # same request, computed by the service (heterolora/cli/remote.py)
            from heterolora.cli.remote import plan_on_server, remote_samples

            if kw["device"] or kw["device_map"]:
                raise click.UsageError("--device/--device-map: the server places models on its own GPUs")
            remote = options | {"dtype": kw["dtype"]}
            args = (kw["server"], kw["api_key_env"], kw["model"], remote_samples(samples), remote, bar)
            result = plan_on_server(*args)
        else:
            place = {"device": kw["device"], "dtype": kw["dtype"], "device_map": kw["device_map"]}
            result = plan(kw["model"], samples, config, progress=bar, **place)
            if not main_rank:
                return
        if bar is not None:
            bar.close()
        bar = None
    except HeteroLoraError as exc:
        raise click.ClickException(exc.message) from None
    except ValueError as exc:  # pydantic validation of options
        raise option_error(exc, _budget_option(kw)) from None
    finally:
        if bar is not None:
            bar.close()
        launched = sys.modules.get("heterolora.distributed")  # loaded only when a plan ran here
        if launched is not None:
            launched.release()
    if kw["out"]:
        save_plan(result, kw["out"])
    if kw["plot"]:
        save_heatmap(result, kw["plot"])
    if kw["as_json"]:
        click.echo(result.to_json())
    else:
        click.echo(rank_table(result))
        click.echo(f"planned in {time.perf_counter() - start:.1f}s", err=True)
    if kw["to_mlflow"]:  # last: a store that fails cannot cost the plan written and printed above
        log_to_mlflow(result)


def _budget_option(kw: dict[str, Any]) -> str:
    given = [name for name, key in BUDGET_OPTIONS.items() if kw.get(key) is not None]
    return given[0] if given else "--budget-params"


def option_error(exc: Exception, budget_option: str) -> click.ClickException:
    """An invalid `plan` option, named as the user typed it (`--num-batches`, not num_batches)."""
    field, message = first_error(exc)
    name = field.split(".")[0]
    if name == "budget":
        return click.BadParameter(message, param_hint=budget_option)
    if name in AllocationConfig.model_fields:
        return click.BadParameter(message, param_hint=OPTION_NAMES.get(name, ["--" + name.replace("_", "-")])[0])
    return click.ClickException(message)


@click.command("show")
@click.argument("plan_file")
@click.option("--plot", type=click.Path(dir_okay=False), help="Write a rank heatmap PNG here.")
@click.option("--peft", is_flag=True, help="Print the LoraConfig keyword arguments.")
@click.option("--check", type=click.Choice(STACKS), help="Can this serving stack load it? Exit 1 if not.")
@click.option("--max-lora-rank", type=int, default=VLLM_DEFAULT_MAX_LORA_RANK, show_default=True, help="For --check.")
@click.option("--server", help="PLAN_FILE is a job id on this service.")
@click.option("--api-key-env", default=DEFAULT_API_KEY_ENV, show_default=True, help="Env var holding the API key.")
@click.option("--mlflow", "from_mlflow", is_flag=True, help="PLAN_FILE is an MLflow run id (runs:/<id> needs no flag).")
@click.option(
    "--out", "-o", type=click.Path(dir_okay=False), help="With --server or an MLflow run: write the plan here."
)
def show_cmd(
    plan_file: str,
    plot: str | None,
    peft: bool,
    check: str | None,
    max_lora_rank: int,
    from_mlflow: bool,
    **remote: Any,
) -> None:
    """Print a saved plan (or, with --server, a job's status and plan; or an MLflow run's plan) as a table."""
    from heterolora.heatmap import rank_table, save_heatmap
    from heterolora.plans import Plan

    check_plot(plot)
    check_writable(remote["out"], "--out")
    check_writable(plot, "--plot")
    if remote["server"]:
        from heterolora.cli.remote import show_job

        need = bool(check or remote["out"])
        loaded = show_job(remote["server"], remote["api_key_env"], plan_file, remote["out"], require_plan=need)
        if loaded is None:
            return
    elif is_run_ref(plan_file, from_mlflow):
        loaded = plan_from_mlflow(plan_file)
        if remote["out"]:
            save_plan(loaded, remote["out"])
    elif not Path(plan_file).is_file():
        raise click.BadParameter(f"no such file {plan_file!r}", param_hint="PLAN_FILE")
    else:
        try:
            loaded = Plan.load(plan_file)
        except ValueError as exc:
            raise click.ClickException(f"{Path(plan_file).name} is not a valid plan: {one_line(exc)}") from None
    if check:
        from heterolora.serving import check_plan

        try:
            verdict = check_plan(loaded, check, max_lora_rank=max_lora_rank)
        except HeteroLoraError as exc:
            raise click.BadParameter(exc.message, param_hint="--max-lora-rank") from None
        click.echo(verdict.report())
        if not verdict.ok:
            raise SystemExit(1)
        return
    click.echo(json.dumps(loaded.peft.model_dump(exclude_none=True), indent=2) if peft else rank_table(loaded))
    if plot:
        save_heatmap(loaded, plot)
