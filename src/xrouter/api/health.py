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
    summary="Readiness: the database (and Redis, when configured) are reachable",
)
async def ready(request: Request) -> JSONResponse:
    runtime: Runtime = request.app.state.runtime
    if not runtime.started:
        body = Readiness(status="starting", checks={})
        return JSONResponse(body.model_dump(), status_code=503)
    checks = await runtime.check_ready()
    ok = all(value == "ok" for value in checks.values())
    body = Readiness(status="ready" if ok else "unavailable", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)
