"""The control plane: everything outside ``/v1``, served by FastAPI."""

from __future__ import annotations

from collections.abc import Mapping

import msgspec
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse
from starlette.exceptions import HTTPException
from starlette.staticfiles import StaticFiles

from xrouter import __version__
from xrouter.api import (
    admin_clients,
    admin_users,
    health,
    keys,
    metrics,
    oauth,
    openrouter_auth,
    openrouter_keys,
    routes_admin,
    ui_auth,
    ui_keys,
)
from xrouter.api.docs import DOCS_PATH, install_docs
from xrouter.api.openapi import install_openapi
from xrouter.errors import ErrorBody, ErrorDetail, GatewayError
from xrouter.runtime import Runtime
from xrouter.ui.pages import STATIC_DIR, STATIC_PATH

_TYPES = {401: "authentication_error", 403: "permission_error", 404: "not_found_error"}


def create_control_plane(runtime: Runtime) -> FastAPI:
    app = FastAPI(
        title="XRouter",
        version=__version__,
        description="OpenAI-compatible gateway for GigaChat and YandexGPT.",
        # /docs is served from the package's own Swagger UI files (api/docs.py).
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    app.state.runtime = runtime
    app.include_router(health.router)
    app.include_router(metrics.router)
    app.include_router(oauth.router)
    app.include_router(openrouter_auth.router)
    app.include_router(ui_auth.router)
    app.include_router(admin_clients.router)
    app.include_router(routes_admin.router)
    app.include_router(keys.router)
    app.include_router(openrouter_keys.router)
    app.include_router(admin_users.router)
    app.include_router(ui_keys.router)
    app.mount(STATIC_PATH, StaticFiles(directory=STATIC_DIR), name="ui-static")
    install_openapi(app)
    install_docs(app)

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse(DOCS_PATH)

    @app.exception_handler(GatewayError)
    async def gateway_error(request: Request, error: GatewayError) -> JSONResponse:
        body = msgspec.to_builtins(error.body())
        return JSONResponse(body, status_code=error.status, headers=error.headers)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        return _error(error.status_code, str(error.detail), None, error.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0]
        param = ".".join(str(part) for part in first["loc"][1:]) or None
        return _error(422, str(first["msg"]), param, None)

    return app


def _error(
    status: int, message: str, param: str | None, headers: Mapping[str, str] | None
) -> JSONResponse:
    body = ErrorBody(ErrorDetail(message, _TYPES.get(status, "invalid_request_error"), param))
    return JSONResponse(msgspec.to_builtins(body), status_code=status, headers=headers)
