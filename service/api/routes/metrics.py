"""GET /metrics: Prometheus text format. Request metrics of this API process (or of all of them,
in prometheus_client's multiprocess mode), job metrics from the job store, queue depth; what each
means: service/api/metrics.py and docs/service.md."""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Header, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from service.api.metrics import scrape
from service.errors import Unauthorized

router = APIRouter(tags=["health"])


@router.get("/metrics", response_class=Response, responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})
def metrics(request: Request, authorization: str | None = Header(default=None)) -> Response:
    """Prometheus metrics; needs `Authorization: Bearer <HETEROLORA_METRICS_KEY>` when that is set."""
    key = request.app.state.settings.metrics_key
    if key:
        given = (authorization or "").partition(" ")[2].strip()
        if not hmac.compare_digest(given.encode(), key.encode()):
            raise Unauthorized("GET /metrics needs 'Authorization: Bearer <HETEROLORA_METRICS_KEY>'")
    return Response(scrape(request.app.state.queue), media_type=CONTENT_TYPE_LATEST)
