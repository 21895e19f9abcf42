#!/usr/bin/env bash
# A pipeline step (CI job, Airflow BashOperator, Makefile rule): ask a running HeteroLoRA service
# for a plan, check it, then train with it.
#
#   HETEROLORA_SERVER=http://gpu-box:8000 HETEROLORA_API_KEY=... examples/pipeline_step.sh [OUT_DIR]
#
# The key travels in an environment variable named by --api-key-env, never as a flag value (flags
# end up in shell history and `ps`). The plan file is the same one `heterolora plan` writes locally.
set -euo pipefail

: "${HETEROLORA_SERVER:?set HETEROLORA_SERVER to the service URL}"
OUT_DIR=${1:-out/pipeline}
PYTHON=${PYTHON:-python}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

heterolora plan --server "$HETEROLORA_SERVER" --api-key-env HETEROLORA_API_KEY \
    --model minilm --budget-like 8:q,v --num-batches 4 --out "$OUT_DIR/plan.json"

# Largest rank against vLLM's --max-lora-rank; informative here: a sequence classifier that trains
# the BERT pooler is not servable by vLLM, so a failed check must not stop this step.
heterolora show "$OUT_DIR/plan.json" --check vllm --max-lora-rank 16 || echo "(not servable by vLLM as it is)"

"$PYTHON" "$HERE/train_from_plan.py" --plan "$OUT_DIR/plan.json" --out "$OUT_DIR/adapter" --steps "${STEPS:-4}"
