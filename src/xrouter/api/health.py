"""Liveness and readiness probes."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from xrouter.runtime import Runtime

router = APIRouter(tags=["operations"])


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str
    checks: dict[str, str]


@router.get("/health", response_model=Health, summary="Liveness: the process serves requests")
async def health() -> Health:
    return Health(status="ok")


@router.get(
    "/ready",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "A dependency is unreachable"}},
    summary="Readiness: the database is reachable, and Redis too when configured "
    "(a Redis outage only degrades readiness under the fail-open rate-limit policy)",
)
async def ready(request: Request) -> JSONResponse:
    runtime: Runtime = request.app.state.runtime
    if not runtime.started:
        body = Readiness(status="starting", checks={})
        return JSONResponse(body.model_dump(), status_code=503)
    if runtime.drain.draining:
        # Going away: the load balancer must stop sending traffic; requests are still served.
        body = Readiness(status="draining", checks={})
        return JSONResponse(body.model_dump(), status_code=503)
    checks = await runtime.check_ready()
    failing = {name for name, value in checks.items() if value != "ok"}
    # With the fail-open rate-limit policy the gateway serves on without Redis: taking every
    # instance out of the load balancer then would turn a Redis outage into a full outage.
    tolerated = {"redis"} if runtime.settings.rate_limit_failure_policy == "open" else set()
    if not failing:
        status, code = "ready", 200
    elif failing <= tolerated:
        status, code = "degraded", 200
    else:
        status, code = "unavailable", 503
    return JSONResponse(Readiness(status=status, checks=checks).model_dump(), status_code=code)
