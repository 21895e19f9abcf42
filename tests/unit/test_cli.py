"""`heterolora plan` / `show`: default job, outputs, and one-line errors without tracebacks."""

from __future__ import annotations

import json

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
    assert 19_000 <= plan.budget.used <= 20_000


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "./no/such/model"], "model path './no/such/model' does not exist"),
        (["--data", "EMPTY"], "the data sample is empty"),
        (["--data", "UNLABELLED"], "this proxy needs labels"),
        (["--budget-params", "100"], "below the cheapest module"),
        (["--proxy", "fisher"], "Invalid value for '--proxy'"),
        (["--types", "q,zz"], "unknown site types"),
    ],
)
def test_bad_input_is_one_line_and_non_zero(tmp_path, args: list[str], message: str) -> None:
    (tmp_path / "empty.jsonl").write_text("")
    (tmp_path / "unlabelled.jsonl").write_text('{"text": "hello there"}\n')
    args = [
        {"EMPTY": str(tmp_path / "empty.jsonl"), "UNLABELLED": str(tmp_path / "unlabelled.jsonl")}.get(a, a)
        for a in args
    ]
    res = CliRunner().invoke(main, ["plan", *FAST, *args])
    assert res.exit_code in (1, 2)
    assert message in res.output
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
