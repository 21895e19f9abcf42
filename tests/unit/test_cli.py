"""`heterolora plan` / `show`: default job, outputs, and one-line errors without tracebacks."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from heterolora.cli import main
from heterolora.plans import Plan

FAST = ["--num-batches", "2"]


def _run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_default_plan_prints_table_and_writes_outputs(tmp_path) -> None:
    out, png = tmp_path / "plan.json", tmp_path / "ranks.png"
    res = _run("plan", *FAST, "--out", str(out), "--plot", str(png))
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert lines[0].split() == ["layer", "q", "k", "v", "o", "up", "down"]
    assert [line.split()[0] for line in lines[1:7]] == ["0", "1", "2", "3", "4", "5"]
    assert "of 73,728 parameters" in lines[7]
    plan = Plan.load(out)
    assert (
        plan.proxy == "rank_energy" and plan.model.id
    )  # the one default proxy (issue 12) == "minilm" and plan.budget.kind == "like"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    shown = _run("show", str(out), "--peft")
    assert json.loads(shown.stdout)["target_modules"] == plan.peft.target_modules


def test_json_output_and_options(tmp_path) -> None:
    data = tmp_path / "d.tsv"
    data.write_text("text\ttext_pair\tlabel\n" + "".join(f"s {i}\tt {i}\t{i % 2}\n" for i in range(16)))
    res = _run(
        "plan",
        *FAST,
        "--data",
        str(data),
        "--types",
        "q,v",
        "--layers",
        "4,5",
        "--budget-params",
        "20000",
        "--proxy",
        "snip",
        "--json",
    )
    assert res.exit_code == 0, res.output
    plan = Plan.model_validate_json(res.stdout)
    assert {(m.type, m.layer) for m in plan.modules} == {(t, ly) for t in "qv" for ly in (4, 5)}
    assert 17_000 <= plan.budget.used <= 20_000  # within a few rank units (768 parameters each) of the limit


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "./no/such/model"], "model path './no/such/model' does not exist"),
        (["--data", "EMPTY"], "the data sample is empty"),
        (["--data", "UNLABELLED"], "this proxy needs labels"),
        (["--budget-params", "100"], "below the cheapest module"),
        (["--proxy", "fisher"], "Invalid value for '--proxy'"),
        (["--types", "q,zz"], "unknown site types"),
        (["--budget-params", "-5"], "Invalid value for --budget-params: invalid budget"),
        (["--num-batches", "0"], "Invalid value for --num-batches: "),
        (["--out", "A_FILE/plan.json"], "Invalid value for --out: cannot write"),
        (["--plot", "A_FILE/ranks.png"], "Invalid value for --plot: cannot write"),
    ],
)
def test_bad_input_is_one_line_and_non_zero(tmp_path, args: list[str], message: str) -> None:
    (tmp_path / "empty.jsonl").write_text("")
    (tmp_path / "unlabelled.jsonl").write_text('{"text": "hello there"}\n')
    (tmp_path / "a-file").write_text("")
    paths = {"EMPTY": "empty.jsonl", "UNLABELLED": "unlabelled.jsonl"}
    args = [str(tmp_path / paths[a]) if a in paths else a.replace("A_FILE", str(tmp_path / "a-file")) for a in args]
    res = CliRunner().invoke(main, ["plan", *FAST, *args])
    assert res.exit_code in (1, 2)
    assert message in res.output
    assert "Value error" not in res.output and "invalid option" not in res.output
    assert "Traceback" not in res.output
    assert res.exception is None or isinstance(res.exception, SystemExit)


def test_every_config_field_is_a_plan_option_with_its_default_and_help() -> None:
    from heterolora.config import AllocationConfig

    options = {p.name: p for p in main.commands["plan"].params}
    for name, field in AllocationConfig.model_fields.items():
        if name == "budget":  # three forms: --budget-params, --budget-like, --fraction/--rank
            assert {"budget_params", "budget_like", "fraction", "rank"} <= set(options)
            continue
        assert name in options, f"AllocationConfig.{name} has no `heterolora plan` option"
        option, default = options[name], field.get_default(call_default_factory=True)
        assert field.description and option.help.startswith(field.description)
        if isinstance(default, list):
            assert option.default == ",".join(map(str, default))
        else:
            assert option.default == default


def test_no_arguments_means_the_library_defaults(monkeypatch) -> None:
    import heterolora.planner
    from heterolora.config import AllocationConfig

    seen = []

    def record(model: str, samples: object, config: AllocationConfig, **_: object) -> None:
        seen.append((model, samples, config))
        raise SystemExit(0)  # stop before printing: only the call is under test

    monkeypatch.setattr(heterolora.planner, "plan", record)
    CliRunner().invoke(main, ["plan"])
    assert seen == [("minilm", None, AllocationConfig())]


def test_a_plan_that_cannot_be_written_is_kept_in_the_temp_folder(tmp_path, monkeypatch) -> None:
    """/dev/full accepts the open and fails the write (a full disk): the check before planning
    passes, the final write fails, and the plan goes to the temp folder with one Error line."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the fallback lands here
    res = CliRunner().invoke(main, ["plan", *FAST, "--out", "/dev/full"])
    assert res.exit_code == 1 and "Traceback" not in res.output
    (line,) = [x for x in res.output.splitlines() if x.startswith("Error:")]
    assert "cannot write the plan to /dev/full (No space left on device)" in line
    kept = Path(line.split("saved to ")[1].split(" instead")[0])
    assert kept.parent == tmp_path
    assert Plan.load(kept).proxy == "rank_energy"
