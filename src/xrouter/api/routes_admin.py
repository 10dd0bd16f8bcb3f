"""The admin API for routing: inspect the live routes and breakers, reload the routes file.

Administrators only: a signed-in administrator's UI session (with its CSRF token in
``X-CSRF-Token`` for the reload), or an administrator's management key as a bearer token.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from xrouter.api.caller import admin_of, runtime_of
from xrouter.errors import GatewayError, InvalidRequestError
from xrouter.routing.breaker import BreakerState
from xrouter.routing.build import Routing
from xrouter.routing.routes import Route, RoutesError

router = APIRouter(prefix="/api/admin", tags=["admin"])


def _error(error: GatewayError) -> JSONResponse:
    body = msgspec.to_builtins(error.body())
    return JSONResponse(body, status_code=error.status, headers=error.headers)


def _time(unix: float | None) -> str | None:
    if not unix:
        return None
    return datetime.fromtimestamp(unix, UTC).isoformat(timespec="seconds")


def _target_json(routing: Routing, route: Route, index: int) -> dict[str, Any]:
    config = route.config.targets[index]
    key = route.targets[index].public_id
    state, open_until = routing.breakers.states().get(key, (BreakerState.CLOSED, None))
    latency = routing.latency.average(key)
    return {
        "model": key,
        "weight": config.weight,
        "retries": config.retries,
        "timeouts": config.timeouts.model_dump(exclude_none=True) if config.timeouts else None,
        "params": config.params,
        "breaker": state.name.lower(),
        "breaker_open_until": _time(open_until),
        "first_byte_ms": round(latency * 1000, 1) if latency is not None else None,
    }


def _route_json(routing: Routing, route: Route) -> dict[str, Any]:
    config = route.config
    return {
        "name": route.name,
        "alias": route.alias,
        "strategy": config.strategy,
        "retries": config.retries,
        "deadline_seconds": config.deadline_seconds,
        "allow_fallbacks": config.allow_fallbacks,
        "keys": config.keys,
        "owners": config.owners,
        "targets": [_target_json(routing, route, i) for i in range(len(route.targets))],
    }


def _routes_json(routing: Routing) -> dict[str, Any]:
    live = routing.routes
    breakers = {
        key: {"state": state.name.lower(), "open_until": _time(until)}
        for key, (state, until) in sorted(routing.breakers.states().items())
    }
    return {
        "routes_file": str(live.routes_file) if live.routes_file else None,
        "loaded_at": _time(live.loaded_at),
        "data": [_route_json(routing, route) for route in live.table.routes],
        "breakers": breakers,
    }


@router.get("/routes", summary="Live routes, circuit breakers and latencies (administrators)")
async def list_routes(request: Request) -> JSONResponse:
    try:
        await admin_of(request)
    except GatewayError as error:
        return _error(error)
    return JSONResponse(_routes_json(runtime_of(request).routing))


@router.post("/routes/reload", summary="Reload the routes file now (administrators)")
async def reload_routes(request: Request) -> JSONResponse:
    try:
        await admin_of(request, changes=True)
        routing = runtime_of(request).routing
        try:
            await routing.routes.reload()
        except RoutesError as problem:
            raise InvalidRequestError(
                f"Routes not reloaded, the current ones stay: {problem}", code="invalid_routes"
            ) from None
    except GatewayError as error:
        return _error(error)
    return JSONResponse(_routes_json(routing))
