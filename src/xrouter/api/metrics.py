"""``GET /metrics``: this worker's Prometheus metrics in the text exposition format.

With several worker processes each serves its own; scrape each instance (or run one worker per
container, the usual deployment). Metric labels never carry secrets.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from xrouter.runtime import Runtime

router = APIRouter(tags=["operations"])


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    return Response(generate_latest(runtime.metrics), media_type=CONTENT_TYPE_LATEST)
