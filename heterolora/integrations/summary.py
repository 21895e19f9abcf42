"""The plan in a few flat values: what a tracking tool shows as a run's parameters (MLflow) or
a step's metrics (Kubeflow). The plan itself always travels whole, as an artifact. No torch."""

from __future__ import annotations

import hashlib
import json
from collections import Counter

from heterolora.plans import Plan

SUMMARY_PREFIX = "heterolora."
MAX_VALUE_CHARS = 500  # far under MLflow's 6,000-character param limit; a summary is for reading


def fingerprint_hash(plan: Plan) -> str:
    """sha256 of the plan without timestamps and timings: equal plans have equal hashes."""
    canonical = json.dumps(plan.fingerprint(), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def rank_histogram(plan: Plan) -> dict[int, int]:
    """rank -> how many candidate modules got it (0: not adapted), ranks ascending."""
    return dict(sorted(Counter(m.rank for m in plan.modules).items()))


def _clip(value: str) -> str:
    return value if len(value) <= MAX_VALUE_CHARS else value[: MAX_VALUE_CHARS - 3] + "..."


def plan_summary(plan: Plan) -> dict[str, str | int | float]:
    """Model, task, proxy, budget (kind, request, limit, used), rank histogram, init, seed and
    schema version. Strings are clipped to MAX_VALUE_CHARS."""
    histogram = rank_histogram(plan)
    summary: dict[str, str | int | float] = {
        "model": _clip(plan.model.id),
        "model_revision": _clip(plan.model.revision or ""),
        "task": plan.task,
        "proxy": plan.proxy,
        "budget_kind": plan.budget.kind,
        "budget_request": _clip(json.dumps(plan.budget.request, sort_keys=True, separators=(",", ":"))),
        "budget_limit": plan.budget.limit,
        "budget_used": plan.budget.used,
        "modules_adapted": sum(n for r, n in histogram.items() if r > 0),
        "max_rank": plan.max_rank,
        "rank_histogram": _clip(",".join(f"{r}:{n}" for r, n in histogram.items())),
        "init": plan.init.variant if plan.init is not None else "zero",
        "seed": plan.seed,
        "schema_version": plan.schema_version,
    }
    return summary


def numeric_summary(plan: Plan) -> dict[str, float]:
    """The numbers of `plan_summary` (for tools whose metrics must be numbers)."""
    return {k: float(v) for k, v in plan_summary(plan).items() if isinstance(v, int | float)}
