"""perf.json's headline keys, their targets, and the Markdown table written next to it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# key -> (target as text, check); a key without a check is reported, not judged.
TARGETS: dict[str, tuple[str, Callable[[float], bool] | None]] = {
    "proxy_overhead_ratio": ("<= 1.2 (gradient proxies)", lambda v: v <= 1.2),
    "memory_ratio": ("<= 1.3", lambda v: v <= 1.3),
    "cache_ratio": ("<= 0.3", lambda v: v <= 0.3),
    "rebudget_cache_ratio": ("(reported; same request, new budget)", None),
    "cached_post_p50_ms": ("<= 20", lambda v: v <= 20),
    "cached_post_p99_ms": ("(reported)", None),
    "new_job_overhead_ms": ("<= 100", lambda v: v <= 100),
    "eva_time_ratio": ("(reported)", None),
    "scaling_exponent_k": ("~ 1 (0.8 to 1.2)", lambda v: 0.8 <= v <= 1.2),
    "scaling_exponent_depth": ("~ 1 (0.8 to 1.2)", lambda v: 0.8 <= v <= 1.2),
    "threads_ratio": ("<= 1.2 (default threads / one thread, busy neighbour)", lambda v: v <= 1.2),
    "distributed_time_ratio": ("(reported; 2 ranks / 1 process on the same CPUs)", None),
    "distributed_bytes_per_site": ("(reported; float32 bytes all-reduced per site)", None),
}
GRADIENT_PROXIES = ("grad_norm", "snip", "rank_energy")


def judge(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{key: {target, met}} for every headline key present (met is None when not judged)."""
    verdicts = {}
    for key, (target, check) in TARGETS.items():
        if key not in results:
            continue
        value = results[key]
        if key == "proxy_overhead_ratio":
            met = all(check(value[p]) for p in GRADIENT_PROXIES if p in value)
        else:
            met = None if check is None else check(value)
        verdicts[key] = {"target": target, "met": met}
    return verdicts


def _cell(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {v}" for k, v in value.items())
    return str(value)


def markdown(results: dict[str, Any]) -> str:
    verdicts = results.get("targets", {})
    lines = [
        "# Performance: ratios measured side by side within each run",
        "",
        *(f"Command: `{r['command']}` (sections: {', '.join(r['sections'])})  " for r in results.get("runs", [])),
        f"Machine: {results['machine']['platform']}, torch {results['machine']['torch']}, "
        f"{results['machine']['torch_threads']} torch thread(s), {results['machine']['cpu_count']} CPUs, "
        f"GPU: {results['machine']['cuda'] or 'none'}  ",
        f"Mode: {results['mode']}; engine sections timed by {results['engine_clock']}; methods in docs/performance.md.",
        "",
        "| key | value | target | met |",
        "|---|---|---|---|",
    ]
    for key, verdict in verdicts.items():
        met = {True: "yes", False: "**no**", None: "-"}[verdict["met"]]
        lines.append(f"| `{key}` | {_cell(results[key])} | {verdict['target']} | {met} |")
    lines += ["", "## Details", ""]
    for section, values in results.get("details", {}).items():
        lines.append(f"- **{section}**: " + "; ".join(f"{k} = {_cell(v)}" for k, v in values.items()))
    return "\n".join(lines) + "\n"
