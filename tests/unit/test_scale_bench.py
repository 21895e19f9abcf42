"""The scale benchmark's memory model and report writer (benchmarks/perf/), without running it."""

from __future__ import annotations

import json

from benchmarks.perf.memory_model import llama_shape, predict, sketch_bytes, smallest_gpu
from benchmarks.perf.scale_report import markdown, write_report


def test_memory_model_orders_the_variants_and_sketches_are_capped_by_dense() -> None:
    mb = predict(llama_shape("7B"), tokens=4096, r_max=64)
    assert mb["rank_energy/stream"] < mb["rank_energy/stream-k4"] < mb["rank_energy/exact"]
    # a LoRA step keeps the sites' inputs for its A factors (~4.7 GB here), streamed scoring 1.4 GB of sketches
    assert mb["rank_energy/stream"] < mb["train"] < mb["rank_energy/stream"] + 5_000
    # exact adds 6 bytes per adapted bf16 weight (the .grad and its float32 copy): ~36 GB for 6.5B
    assert 33_000 < mb["rank_energy/exact"] - mb["rank_energy/stream"] < 36_500  # MB
    assert sketch_bytes([[64, 64]], 64, 2) == 4 * 64 * 64  # a small site is held densely
    assert sketch_bytes([[4096, 4096]], 64, 2) == 4 * (4096 * 129 + 259 * 4096)
    assert smallest_gpu(30_000) == "40 GB" and smallest_gpu(200_000) == "4 x 80 GB"


def test_report_merges_a_scale_section_into_perf_json(tmp_path) -> None:
    (tmp_path / "perf.json").write_text(json.dumps({"memory_ratio": 0.85, "command": "x"}))
    run = {
        "spec": {"config": {"num_batches": 2}, "shape": {"params": 1e6, "sites": [[8, 8]]}, "cost_per_rank": {}},
        "train_mb": 10.0, "loaded_mb": 1.0, "plain_s": 1.0, "tokens_per_batch": 16,
        "memory_ratio": {"rank_energy/stream": 1.05}, "time_ratio": {"rank_energy/stream": 0.8},
        "mb": {"rank_energy/stream": 10.5, "train": 10.0}, "passes": {"rank_energy/stream": 1},
        "agreement": {"top_energy_max_rel_err": 0.01, "plan_overlap": 1.0},
        "agreement_k4": {"top_energy_max_rel_err": 0.0, "plan_overlap": 1.0},
        "predicted_mb": {"train": 11.0, "rank_energy/stream": 10.5},
    }  # fmt: skip
    write_report(tmp_path, {"tiny": run}, "python -m benchmarks.perf.scale", 1.0)
    merged = json.loads((tmp_path / "perf.json").read_text())
    assert merged["memory_ratio"] == 0.85 and merged["command"] == "x"  # other sections untouched
    scale = merged["scale"]["models"]["tiny"]
    assert scale["memory_model_ratio"] == {"train": 1.1, "rank_energy/stream": 1.0}
    assert scale["spec"]["shape"]["sites"] == 1 and "cost_per_rank" not in scale["spec"]
    assert "| rank_energy/stream | 10 | 1.050 | 0.800 | 1 | 10.5 |" in markdown(merged["scale"])
