"""A PNG heatmap of ranks per layer and module type (matplotlib, imported when drawing). The text
table for terminals is `heterolora.plans.rank_table`."""

from __future__ import annotations

from pathlib import Path

from heterolora.plans import Plan, rank_grid, rank_table

__all__ = ["rank_grid", "rank_table", "save_heatmap"]


def save_heatmap(plan: Plan, path: str | Path) -> Path:
    try:
        import matplotlib
    except ImportError:
        raise ImportError("a heatmap needs matplotlib: pip install 'heterolora[plot]'") from None
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
