"""The control plane, built on its first use; the probes and metrics are answered without it.

FastAPI, the pydantic models of the API, the UI's templates and the OpenAPI document cost a
worker about 10 MiB that a gateway only probed by a load balancer and scraped by Prometheus
never uses. So ``GET /health``, ``GET /ready`` and ``GET /metrics`` are answered here, as the
control plane's own routes would (same bodies, statuses and content types; those routes stay
in the OpenAPI document), and anything else outside ``/v1`` builds the control plane first.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from xrouter.api.readiness import readiness
from xrouter.observability.multiprocess import exposition_registry
from xrouter.runtime import Runtime


class OnDemandControlPlane:
    """An ASGI app for every path outside ``/v1``."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._app: ASGIApp | None = None
        self._building = asyncio.Lock()
        self._probes: dict[str, Callable[[], Awaitable[Response]]] = {
            "/health": self._health,
            "/ready": self._ready,
            "/metrics": self._metrics,
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        probe = self._probes.get(scope["path"]) if scope.get("method") == "GET" else None
        if probe is not None:
            await (await probe())(scope, receive, send)
            return
        app = self._app if self._app is not None else await self.build()
        await app(scope, receive, send)

    async def build(self) -> ASGIApp:
        """The FastAPI control plane, built once."""
        async with self._building:
            app = self._app
            if app is None:
                # Importing takes a moment of CPU: in a thread, the event loop serves meanwhile.
                create = await asyncio.to_thread(_import_control_plane)
                if self.runtime.started:
                    # It serves the authorization server, whose keys are published ahead.
                    await self.runtime.auth.signing_keys.activate()
                app = self._app = create(self.runtime)
            return app

    async def _health(self) -> Response:
        return JSONResponse({"status": "ok"})

    async def _ready(self) -> Response:
        status, body = await readiness(self.runtime)
        return JSONResponse(body, status_code=status)

    async def _metrics(self) -> Response:
        body = generate_latest(exposition_registry(self.runtime.metrics))
        return Response(body, media_type=CONTENT_TYPE_LATEST)


def _import_control_plane() -> Callable[[Runtime], ASGIApp]:
    from xrouter.api.app import create_control_plane

    return create_control_plane
