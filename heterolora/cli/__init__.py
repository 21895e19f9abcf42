"""The `heterolora` command line: `plan` and `show` (heterolora/cli/plan.py), `serve` and `worker`
(heterolora/cli/service.py; the service and worker packages load inside those commands)."""

from __future__ import annotations

import click

from heterolora.cli.plan import plan_cmd, show_cmd
from heterolora.cli.service import serve_cmd, worker_cmd


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="heterolora")
def main() -> None:
    """HeteroLoRA: plan heterogeneous LoRA ranks with zero-cost proxies."""
    from heterolora.threads import passive_wait

    passive_wait()  # before torch loads OpenMP (heterolora/threads.py)


for _command in (plan_cmd, show_cmd, serve_cmd, worker_cmd):
    main.add_command(_command)
