"""Real servers on loopback for tests: an event loop in a background thread runs them, so
synchronous clients (the openai SDK, httpx) talk to them over real HTTP."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

import uvicorn
from sqlalchemy import select

from xrouter.app import XRouterApp
from xrouter.gateway.middleware import RequestContextMiddleware
from xrouter.keys.service import CreatedKey
from xrouter.server import HTTP_PROTOCOL
from xrouter.settings import Settings
from xrouter.storage.database import session_factory
from xrouter.storage.models import UsageRecord

T = TypeVar("T")


class BackgroundLoop:
    """An asyncio loop running in a daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        return future.result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


class RunningGateway:
    """The whole app under uvicorn on a free loopback port."""

    def __init__(self, settings: Settings, loop: BackgroundLoop) -> None:
        self.app = XRouterApp(settings)
        self.runtime = self.app.runtime
        self.loop = loop
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            RequestContextMiddleware(self.app),
            loop="none",
            http=HTTP_PROTOCOL,
            lifespan="on",
            log_config=None,
            timeout_graceful_shutdown=5,
        )
        self._server = uvicorn.Server(config)
        self._task = asyncio.run_coroutine_threadsafe(self._server.serve(sockets=[sock]), loop.loop)
        deadline = time.monotonic() + 30
        while not self._server.started:
            if self._task.done():
                self._task.result()
                raise RuntimeError("the gateway stopped during start")
            if time.monotonic() > deadline:
                raise TimeoutError("the gateway did not start")
            time.sleep(0.02)

    def create_key(self, name: str = "test") -> CreatedKey:
        """A new API key, returned once the running gateway accepts it."""
        created: CreatedKey = self.loop.run(self.runtime.key_service.create(name))
        deadline = time.monotonic() + 10
        while self.runtime.keys.lookup(created.key) is None:
            if time.monotonic() > deadline:
                raise TimeoutError("the key never reached the gateway's cache")
            time.sleep(0.05)
        return created

    def revoke_key(self, key_id: str) -> None:
        self.loop.run(self.runtime.key_service.revoke(key_id))

    def usage_records(self, request_id: str, timeout: float = 5) -> list[UsageRecord]:
        """The usage records of one request, once the recorder has written them."""

        async def query() -> list[UsageRecord]:
            async with session_factory(self.runtime.engine)() as session:
                rows = await session.scalars(
                    select(UsageRecord).where(UsageRecord.request_id == request_id)
                )
                return list(rows)

        deadline = time.monotonic() + timeout
        while not (found := self.loop.run(query())) and time.monotonic() < deadline:
            time.sleep(0.05)
        return found

    def stop(self) -> None:
        self._server.should_exit = True
        self._task.result(30)
