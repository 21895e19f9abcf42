"""Where the CLI writes: `--out` and `--plot` are checked before any planning or submitting, and
a plan that still cannot be written when it is ready goes to a file in the temp folder instead,
so a computed plan is never lost."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from heterolora.plans import Plan


def check_writable(path: str | None, option: str) -> None:
    """A usage error now, instead of a lost result later, when `path` cannot be written."""
    if not path:
        return
    target = Path(path)
    if target.is_dir():
        raise click.BadParameter(f"{path} is a directory; give a file name", param_hint=option)
    try:
        if target.exists():
            with target.open("ab"):  # opens for writing without changing it
                pass
            return
        folder = target.parent
        while not folder.exists():  # the folders that Plan.save would create
            folder = folder.parent
        if not folder.is_dir():
            raise NotADirectoryError(f"{folder} is not a directory")
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".heterolora-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise click.BadParameter(f"cannot write {path}: {_reason(exc)}", param_hint=option) from None


def save_plan(plan: Plan, path: str, option: str = "--out") -> Path:
    """Write the plan to `path`; when that fails, to a file in the temp folder, then exit with one
    `Error:` line naming both."""
    try:
        return plan.save(path)
    except OSError as exc:
        reason = _reason(exc)
    fd, fallback = tempfile.mkstemp(prefix="heterolora-plan-", suffix=".json")
    os.close(fd)
    try:
        plan.save(fallback)
    except OSError as exc:  # the temp folder too: print it rather than lose it
        with contextlib.suppress(OSError):
            os.unlink(fallback)
        click.echo(plan.to_json())
        raise click.ClickException(
            f"cannot write the plan to {path} ({reason}) nor to the temp folder ({_reason(exc)}); it was printed above"
        ) from None
    raise click.ClickException(f"cannot write the plan to {path} ({reason}); it was saved to {fallback} instead")


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)
