"""One ASGI app, one process: ``/v1`` goes to the lean gateway, the rest to FastAPI."""

from __future__ import annotations

import logging

from starlette.types import ASGIApp, Receive, Scope, Send

from xrouter.api.on_demand import OnDemandControlPlane
from xrouter.gateway.app import GatewayApp
from xrouter.gateway.middleware import RequestContextMiddleware, is_gateway_path
from xrouter.gc_pauses import prepare_collector
from xrouter.runtime import Runtime
from xrouter.settings import Settings

log = logging.getLogger(__name__)


class XRouterApp:
    """Dispatches by path prefix and runs the runtime's start and close in the lifespan."""

    def __init__(
        self, settings: Settings, *, handle_signals: bool = False, freeze_after_start: bool = False
    ) -> None:
        self.handle_signals = handle_signals
        self.freeze_after_start = freeze_after_start
        self.runtime = Runtime(settings)
        self.gateway = GatewayApp(self.runtime)
        self.control_plane = OnDemandControlPlane(self.runtime)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif is_gateway_path(scope["path"]):
            await self.gateway(scope, receive, send)
        else:
            await self.control_plane(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.runtime.start()
                except Exception as error:
                    log.exception("start failed")
                    await self.runtime.close()
                    await send({"type": "lifespan.startup.failed", "message": str(error)})
                    return
                if self.handle_signals:
                    self.runtime.drain.install()
                if self.freeze_after_start:
                    prepare_collector()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.runtime.close()
                await send({"type": "lifespan.shutdown.complete"})
                return


def create_app(
    settings: Settings, *, handle_signals: bool = False, freeze_after_start: bool = False
) -> ASGIApp:
    """The app; ``handle_signals`` (the real server's main thread only) drains on SIGTERM;
    ``freeze_after_start`` (a serving process of its own, not a test) keeps its startup
    objects out of later garbage collections and collects less often (``gc_pauses``)."""
    app = XRouterApp(settings, handle_signals=handle_signals, freeze_after_start=freeze_after_start)
    return RequestContextMiddleware(app)
