"""The performance benchmark's harness on tiny models: every headline key, the report, the maths."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from benchmarks.perf import run as perf
from benchmarks.perf.memory import child
from benchmarks.perf.report import judge, markdown
from benchmarks.perf.timing import loglog_slope, percentile


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    """The harness runs torch on one thread; give the other tests theirs back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_fit_and_percentile() -> None:
    assert loglog_slope([8, 16, 32, 64], [1.0, 2.0, 4.0, 8.0]) == pytest.approx(1.0)
    assert loglog_slope([2, 4, 8], [3.0, 12.0, 48.0]) == pytest.approx(2.0)
    values = [float(v) for v in range(1, 201)]
    assert percentile(values, 50) == 100.0 and percentile(values, 99) == 198.0


def test_judge_checks_only_gradient_proxies_and_skips_reported_keys() -> None:
    results = {
        "proxy_overhead_ratio": {"grad_norm": 1.1, "rank_energy": 1.19, "alpha_test": 40.0},
        "eva_time_ratio": 0.2,
        "cache_ratio": 0.5,
    }
    verdicts = judge(results)
    assert verdicts["proxy_overhead_ratio"]["met"] is True  # alpha_test is forward-only: not judged
    assert verdicts["eva_time_ratio"]["met"] is None
    assert verdicts["cache_ratio"]["met"] is False
    assert "memory_ratio" not in verdicts


def test_quick_engine_sections_write_json_and_table(tmp_path: Path) -> None:
    results = perf.main(["--quick", "--sections", "overhead,eva,scaling", "--out", str(tmp_path)])
    saved = json.loads((tmp_path / "perf.json").read_text())
    assert saved["command"] == f"python -m benchmarks.perf --quick --sections overhead,eva,scaling --out {tmp_path}"
    keys = {"proxy_overhead_ratio", "eva_time_ratio", "scaling_exponent_k", "scaling_exponent_depth"}
    assert keys <= saved.keys() and keys <= saved["targets"].keys()
    assert set(saved["proxy_overhead_ratio"]) == {
        "constant",
        "grad_norm",
        "snip",
        "rank_energy",
        "synflow",
        "alpha_test",
    }
    assert all(v > 0 for v in saved["proxy_overhead_ratio"].values())
    assert saved["details"]["eva"]["eva_forward_passes"] > 0
    assert saved["details"]["scaling_k"]["k"] == [2, 4]
    table = (tmp_path / "perf.md").read_text()
    assert "| `proxy_overhead_ratio` |" in table and "| `scaling_exponent_k` |" in table
    assert table == markdown(results)


@pytest.mark.parametrize("variant", ["plan", "train"])
def test_memory_child_reports_a_peak_above_its_baseline(variant: str) -> None:
    kb = child(variant, perf.TINY.to_dict())
    assert 0 < kb["imports_kb"] <= kb["loaded_kb"] <= kb["peak_kb"]
