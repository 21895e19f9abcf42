"""`heterolora worker` whose job process dies (os._exit) on one model id: a worker that really
dies mid-job, for the re-delivery tests and the fault benchmark. Test tooling only: the product
has no such hook. Usage: python -m devtools.crashing_worker <heterolora worker options>."""

from __future__ import annotations

import os
import sys
from typing import Any

CRASH_MODEL = "acme/crash-worker"
EXIT_CODE = 137  # what a process killed for memory reports


def main() -> None:
    import service.jobs.execute  # the module the task calls run_request through
    from heterolora.cli import main as cli

    real = service.jobs.execute.run_request

    def run_request(request: Any, **kwargs: Any) -> Any:
        if request.model_id == CRASH_MODEL:
            os._exit(EXIT_CODE)
        return real(request, **kwargs)

    service.jobs.execute.run_request = run_request  # set before the pool forks: every child has it
    cli(["worker", *sys.argv[1:]])


if __name__ == "__main__":
    main()
