"""What the commands print: the progress bar, and one-line errors."""

from __future__ import annotations

import importlib.util
import sys

import click


class ProgressBar:
    """tqdm progress bar on stderr, fed by the engine's (fraction, phase) callback."""

    def __init__(self) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=100, file=sys.stderr, leave=False, bar_format="{desc:<22}{bar}| {percentage:3.0f}%")

    def __call__(self, fraction: float, phase: str) -> None:
        self.bar.set_description_str(phase)
        self.bar.n = round(100 * fraction)
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()


def check_plot(plot: str | None) -> None:
    if plot and importlib.util.find_spec("matplotlib") is None:
        raise click.UsageError("--plot needs matplotlib: pip install 'heterolora[plot]'")


def one_line(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        e = errors()[0]
        return f"invalid option {'.'.join(map(str, e['loc']))}: {e['msg']}"
    return str(exc).splitlines()[0]
