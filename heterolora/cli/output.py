"""What the commands print: the progress bar, and one-line errors."""

from __future__ import annotations

import importlib.util
import sys

import click

from heterolora.errors import HeteroLoraError


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


def first_error(exc: Exception) -> tuple[str, str]:
    """(field, message) of a validation error: the library's own message and field when one of
    its validators raised it, else pydantic's message without its "Value error, " prefix."""
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return "", str(exc).splitlines()[0]
    first = errors()[0]
    cause = (first.get("ctx") or {}).get("error")
    field = ".".join(map(str, first["loc"]))
    if isinstance(cause, HeteroLoraError):
        return cause.field or field, cause.message
    if isinstance(cause, Exception):
        return field, str(cause)
    return field, str(first["msg"])


def one_line(exc: Exception) -> str:
    field, message = first_error(exc)
    return f"{field}: {message}" if field and not message.startswith(field) else message
