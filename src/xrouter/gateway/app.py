"""The ``/v1`` application: a plain path-and-method table in front of the handlers, because
the proxied path needs nothing more and pays for nothing more."""

from __future__ import annotations

from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from xrouter.errors import MethodNotAllowedError, NotFoundError
from xrouter.gateway.handlers import GatewayHandlers, Handler, guarded
from xrouter.gateway.http import error_response
from xrouter.runtime import Runtime


class GatewayApp:
    def __init__(self, runtime: Runtime) -> None:
        handlers = GatewayHandlers(runtime)
        self.routes: dict[str, dict[str, Handler]] = {
            "/v1/chat/completions": {"POST": guarded(handlers.chat_completions)},
            "/v1/embeddings": {"POST": guarded(handlers.embeddings)},
            "/v1/models": {"GET": guarded(handlers.models)},
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"]
        methods = self.routes.get(path) or self.routes.get(path.rstrip("/"))
        if methods is None:
            response = error_response(
                NotFoundError(f"Unknown endpoint {path}.", code="unknown_url")
            )
        elif (handler := methods.get(scope["method"])) is None:
            allowed = ", ".join(methods)
            error = MethodNotAllowedError(
                f"{scope['method']} is not allowed on {path}; use {allowed}.",
                headers={"allow": allowed},
            )
            response = error_response(error)
        else:
            response = await handler(Request(scope, receive))
        await response(scope, receive, send)
