"""The ``/v1`` application: a plain path-and-method table in front of the handlers, because
the proxied path needs nothing more and pays for nothing more."""

from __future__ import annotations

from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from xrouter.errors import MethodNotAllowedError, NotFoundError
from xrouter.gateway.anthropic.handlers import AnthropicHandlers
from xrouter.gateway.handlers import GatewayHandlers, Handler, guarded
from xrouter.gateway.http import error_response
from xrouter.gateway.middleware import REQUEST_ID_HEADER, RESPONSE_STARTED
from xrouter.gateway.responses.handlers import ResponsesHandlers
from xrouter.observability.access_log import MODEL_PATH_PREFIX, report_when_sent
from xrouter.runtime import Runtime


class GatewayApp:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        handlers = GatewayHandlers(runtime)
        anthropic = AnthropicHandlers(handlers)
        responses = ResponsesHandlers(handlers)
        self.routes: dict[str, dict[str, Handler]] = {
            "/v1/chat/completions": {"POST": guarded(handlers.chat_completions)},
            # Anthropic's endpoints render their own (Anthropic-shaped) errors.
            "/v1/messages": {"POST": anthropic.messages},
            "/v1/messages/count_tokens": {"POST": anthropic.count_tokens},
            "/v1/responses": {"POST": guarded(responses.create)},
            "/v1/embeddings": {"POST": guarded(handlers.embeddings)},
            "/v1/models": {"GET": guarded(handlers.models)},
        }
        # GET /v1/models/{id}: matched by prefix, the id being the rest of the path.
        self.model_routes: dict[str, Handler] = {"GET": guarded(handlers.model)}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        observer = self.runtime.observer
        observer.begin(scope)
        path = scope["path"]
        methods = self.routes.get(path) or self.routes.get(path.rstrip("/"))
        if methods is None and path.startswith(MODEL_PATH_PREFIX):
            methods = self.model_routes
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
            try:
                response = await handler(Request(scope, receive))
            except BaseException:
                # Served, then failed to render: its report runs all the same.
                report_when_sent(scope["state"])
                raise
        # ``RequestContextMiddleware`` leaves the request id header to this app.
        state = scope["state"]
        id_header = state.get(REQUEST_ID_HEADER)
        if id_header is not None:
            response.raw_headers.append(id_header)
        state[RESPONSE_STARTED] = True
        await observer.send(response, scope, receive, send)
