"""``GET /metrics``: this worker's Prometheus metrics in the text exposition format.

With several worker processes (``--workers N``) any worker answers with the sum of all workers'
metrics (see ``observability/multiprocess.py``). Metric labels never carry secrets.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from xrouter.observability.multiprocess import exposition_registry
from xrouter.runtime import Runtime

router = APIRouter(tags=["operations"])


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    body = generate_latest(exposition_registry(runtime.metrics))
    return Response(body, media_type=CONTENT_TYPE_LATEST)
