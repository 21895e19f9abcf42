"""`python -m benchmarks.quality`: the fine-tuning benchmark on MRPC, SST-2 and RTE (docs/quality.md)."""

from __future__ import annotations

import shlex
from dataclasses import replace
from pathlib import Path

import click

from benchmarks import GLUE, REPO, RESULTS
from benchmarks.quality.arms import ROUND4_ARMS, ArmSpec
from benchmarks.quality.train import HEADS, Settings

QUICK_OUT = REPO / "out" / "bench-quick"


@click.command("quality")
@click.option("--task", "tasks", default="mrpc,sst2", show_default=True, help="Comma-separated: mrpc, sst2, rte.")
@click.option(
    "--data-dir", default=str(GLUE), show_default=True, help="Folder with <task>/{train,validation}.tsv, or 'hf'."
)
@click.option("--arms", default=None, help="Comma-separated arm names (default: the five round-4 arms).")
@click.option("--seeds", default=None, help="Comma-separated seeds (default 0,1,2; quick: 0).")
@click.option("--epochs", type=int, default=None, help="Epochs per run (default 3, as committed; quick: 1).")
@click.option("--workers", type=int, default=2, show_default=True, help="Parallel 1-thread processes.")
@click.option("--pilot", is_flag=True, help="Train on 2/3 of train, evaluate on the held-out 1/3 (choosing defaults).")
@click.option(
    "--lr", type=float, default=None, help="One (A) learning rate for every arm (default: per family, FAMILY_RECIPE)."
)
@click.option(
    "--ratio",
    type=click.FloatRange(1, 64),
    default=None,
    help="LoRA+ ratio (B rate / A rate) for every arm (default: per family, FAMILY_RECIPE).",
)
@click.option(
    "--sweep-lr",
    default=None,
    help="Comma-separated rates, e.g. 3e-4,1e-3,3e-3: every arm at every rate on the train hold-out; "
    "writes quality-sweep-<task>.* with the rate picked per family.",
)
@click.option("--head", type=click.Choice(HEADS), default="shipped", show_default=True, help="Classification head.")
@click.option("--device", default="auto", show_default=True, help="auto (cuda when available), cpu, cuda, cuda:1 ...")
@click.option("--quick", is_flag=True, help="Tiny subset, 1 epoch, two arms: checks the harness.")
@click.option("--out-dir", default=None, help="Results folder (default benchmarks/results; quick: out/bench-quick).")
@click.option("--rerun", is_flag=True, help="Run jobs again even when their result file exists.")
@click.option("--merge-only", is_flag=True, help="Only merge existing run files into the report.")
def quality(**kw: object) -> None:
    """Fine-tune MiniLM with every arm at an equal LoRA budget; write quality-<task>.{json,md,png}."""
    from benchmarks.quality.report import write_report
    from benchmarks.quality.runner import QUICK, StaleRunFile, pending_jobs, run_jobs

    quick = bool(kw["quick"])
    settings = QUICK if quick else Settings()
    if kw["epochs"]:
        settings = replace(settings, epochs=int(kw["epochs"]))
    if kw["lr"] is not None and kw["sweep_lr"]:
        raise click.UsageError("give --lr or --sweep-lr, not both")
    sweep = [float(x) for x in str(kw["sweep_lr"]).split(",")] if kw["sweep_lr"] else []
    lrs: list[float | None] = sweep or [kw["lr"]]  # type: ignore[list-item]
    settings = replace(settings, pilot=bool(kw["pilot"]) or bool(sweep), head=str(kw["head"]), device=str(kw["device"]))
    settings = replace(settings, ratio=kw["ratio"])  # type: ignore[arg-type]
    arms = _arms(str(kw["arms"]) if kw["arms"] else None, quick)
    tasks = str(kw["tasks"]).split(",")
    seeds = [int(s) for s in str(kw["seeds"] or ("0" if quick else "0,1,2")).split(",")]
    out = Path(str(kw["out_dir"])) if kw["out_dir"] else (QUICK_OUT if quick else RESULTS)
    prefix = "quality-sweep" if sweep else "quality-pilot" if settings.pilot else "quality"
    runs_root = out / f"{prefix}-runs"
    failed: list[str] = []
    command = _command_line(click.get_current_context())
    if not kw["merge_only"]:
        try:
            jobs = pending_jobs(tasks, arms, seeds, runs_root, bool(kw["rerun"]), lrs, settings)
        except StaleRunFile as exc:  # never merge another round's run into this one
            raise click.ClickException(str(exc)) from None
        click.echo(f"{len(jobs)} runs to do ({settings.epochs} epochs each)", err=True)
        lines = run_jobs(jobs, str(kw["data_dir"]), settings, runs_root, int(kw["workers"]), command)
        failed = [line for line in lines if line.startswith("FAILED")]
        for line in failed:
            click.echo(line, err=True)
    for task in tasks:
        paths = write_report(task, runs_root / task, out, prefix, command)
        if paths:
            click.echo(paths[1].read_text())
    if failed:
        raise click.ClickException(f"{len(failed)} runs failed")


def _arms(given: str | None, quick: bool) -> list[str]:
    """The arms to run: the named ones, else the round-4 arms."""
    if given is None:
        return ["uniform_all", "heterolora"] if quick else list(ROUND4_ARMS)
    arms = given.split(",")
    for arm in arms:
        try:
            ArmSpec.parse(arm)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--arms") from None
    return arms


def _command_line(ctx: click.Context) -> str:
    """The invocation as `python -m benchmarks.quality ...`, with every option that was given."""
    words = ["python", "-m", "benchmarks.quality"]
    for param in ctx.command.params:
        value = ctx.params.get(param.name or "")
        if (
            value in (None, False)
            or ctx.get_parameter_source(param.name or "") != click.core.ParameterSource.COMMANDLINE
        ):
            continue
        words.append(param.opts[0])
        if value is not True:
            words.append(str(value))
    return shlex.join(words)
