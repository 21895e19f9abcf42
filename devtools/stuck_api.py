"""The API app plus one route, GET /stuck, whose thread never returns: a request stuck for good,
for the shutdown tests. Test tooling only: the product has no such route.
Usage: python -m uvicorn devtools.stuck_api:app --port N."""

from __future__ import annotations

import threading

from service.api.app import create_app

NEVER = threading.Event()
app = create_app()


@app.get("/stuck", include_in_schema=False)
def stuck() -> None:
    NEVER.wait()
