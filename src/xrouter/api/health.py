"""Liveness and readiness probes."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from xrouter.api.readiness import readiness

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
    status, body = await readiness(request.app.state.runtime)
    return JSONResponse(Readiness(**body).model_dump(), status_code=status)
