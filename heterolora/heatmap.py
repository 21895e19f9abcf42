"""Ranks per layer and module type: a text table for terminals, a PNG heatmap for files."""

from __future__ import annotations

from pathlib import Path

from heterolora.config import LORA_TYPES, SHORTCUT_TYPES
from heterolora.plans import Plan


def rank_grid(plan: Plan) -> tuple[list[str], list[int], dict[tuple[str, int], int]]:
    """(column types in canonical order, layers, {(type, layer): rank})."""
    cells = {(m.type, m.layer): m.rank for m in plan.modules}
    present = {t for t, _ in cells}
    types = [t for t in (*LORA_TYPES, *SHORTCUT_TYPES) if t in present]
    return types, list(range(plan.model.num_layers)), cells


def rank_table(plan: Plan) -> str:
    types, layers, cells = rank_grid(plan)
    widths = {t: max(6, len(t) + 2) for t in types}
    lines = ["layer" + "".join(t.rjust(widths[t]) for t in types)]
    for layer in layers:
        row = "".join((str(cells[(t, layer)]) if (t, layer) in cells else "-").rjust(widths[t]) for t in types)
        lines.append(f"{layer:>5}{row}")
    b = plan.budget
    lines.append(
        f"budget {b.kind}: used {b.used:,} of {b.limit:,} parameters ({100 * b.used / max(b.limit, 1):.1f}%), "
        f"max rank {plan.max_rank}, proxy {plan.proxy}"
    )
    return "\n".join(lines)


def save_heatmap(plan: Plan, path: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    types, layers, cells = rank_grid(plan)
    grid = np.full((len(layers), len(types)), np.nan)
    for (t, layer), r in cells.items():
        grid[layer, types.index(t)] = r
    fig, ax = plt.subplots(figsize=(1.0 + 0.8 * len(types), 1.2 + 0.4 * len(layers)))
    im = ax.imshow(grid, cmap="viridis", aspect="auto", vmin=0)
    ax.set_xticks(range(len(types)), types, rotation=45 if len(types) > 8 else 0)
    ax.set_yticks(range(len(layers)), [str(x) for x in layers])
    ax.set_xlabel("module type")
    ax.set_ylabel("layer")
    for (i, j), r in np.ndenumerate(grid):
        if not np.isnan(r):
            ax.text(j, i, int(r), ha="center", va="center", color="w" if r < np.nanmax(grid) / 2 else "k")
    ax.set_title(f"{plan.model.id.split('/')[-1]} · {plan.proxy} · {plan.budget.used:,} params")
    fig.colorbar(im, ax=ax, label="rank")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
