"""Upstream work is cancelled when the client goes away, and only then: through the gateway
protocol's disconnect extension over a real server, or a watcher task elsewhere."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

import pytest
from starlette.types import Message, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from tests.gateway.test_http_protocol import Connection, serving
from xrouter.gateway.http_protocol import GatewayHttpProtocol
from xrouter.routing.disconnect import (
    DISCONNECT_EXTENSION,
    ClientDisconnectedError,
    unless_disconnected,
)


class Client:
    """A request whose body has been read, seen by ``unless_disconnected`` as under another
    ASGI server (its ``receive`` answers only when the client disconnects) or as under the
    gateway's protocol (its scope's disconnect extension runs the registered callbacks)."""

    def __init__(self, extension: bool) -> None:
        self._left = asyncio.Event()
        self.callbacks: list[Callable[[], object]] = []
        self.scope: Scope = {"type": "http"}
        if extension:
            notice = {"add": self.callbacks.append, "discard": self.callbacks.remove}
            self.scope["extensions"] = {DISCONNECT_EXTENSION: notice}

    def leave(self) -> None:
        self._left.set()
        for callback in list(self.callbacks):
            callback()

    async def receive(self) -> Message:
        await self._left.wait()
        return {"type": "http.disconnect"}


@pytest.fixture(params=[False, True], ids=["watcher", "extension"])
def client(request: pytest.FixtureRequest) -> Iterator[Client]:
    client = Client(extension=request.param)
    yield client
    assert client.callbacks == []  # every callback registered was discarded


async def test_the_answer_comes_back_when_the_client_stays(client: Client) -> None:
    async def work() -> str:
        await asyncio.sleep(0.01)
        return "answer"

    assert await unless_disconnected(client.scope, client.receive, work()) == "answer"
    task = asyncio.current_task()
    assert task is not None
    assert task.cancelling() == 0


async def test_a_client_leaving_cancels_the_work_and_is_reported(client: Client) -> None:
    closed = asyncio.Event()

    async def work() -> str:
        try:
            await asyncio.sleep(10)
        finally:
            closed.set()  # e.g. the upstream connection being closed
        return "never"

    departures: list[None] = []
    asyncio.get_running_loop().call_later(0.01, client.leave)
    with pytest.raises(ClientDisconnectedError):
        await unless_disconnected(
            client.scope, client.receive, work(), lambda: departures.append(None)
        )
    assert closed.is_set()
    assert len(departures) == 1  # counted once, by the caller's callback
    task = asyncio.current_task()
    assert task is not None
    # The request's task is not left half-cancelled: later awaits and timeouts work.
    assert task.cancelling() == 0
    async with asyncio.timeout(1):
        await asyncio.sleep(0)


@pytest.mark.parametrize("client_leaves_too", [False, True])
async def test_a_cancellation_from_elsewhere_goes_on(
    client: Client, client_leaves_too: bool
) -> None:
    started = asyncio.Event()

    async def work() -> None:
        started.set()
        await asyncio.sleep(10)

    task = asyncio.create_task(unless_disconnected(client.scope, client.receive, work()))
    await started.wait()
    if client_leaves_too:
        client.leave()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


class UpstreamApp:
    """An app whose upstream call never answers: what happens to it when the client leaves."""

    def __init__(self) -> None:
        self.working = asyncio.Event()
        self.closed = asyncio.Event()
        self.outcome: BaseException | None = None
        self.tasks_before = 0
        self.tasks_during = 0
        self.cancelling_after = -1

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await receive()  # the body
        self.tasks_before = len(asyncio.all_tasks())
        try:
            await unless_disconnected(scope, receive, self.upstream())
        except ClientDisconnectedError as error:
            self.outcome = error
        task = asyncio.current_task()
        assert task is not None
        self.cancelling_after = task.cancelling()

    async def upstream(self) -> None:
        self.tasks_during = len(asyncio.all_tasks())
        self.working.set()
        try:
            await asyncio.sleep(10)
        finally:
            self.closed.set()


async def leave_mid_request(app: UpstreamApp, protocol: type[asyncio.Protocol]) -> None:
    async with serving(app, protocol) as port:
        connection = await Connection.open(port)
        connection.request("/v1/chat/completions", method="POST", extra="content-length: 0\r\n")
        await asyncio.wait_for(app.working.wait(), 5)
        await connection.close()
        await asyncio.wait_for(app.closed.wait(), 5)
        for _ in range(100):
            if app.cancelling_after >= 0:
                break
            await asyncio.sleep(0.01)


async def test_under_the_gateway_protocol_a_leaving_client_cancels_without_a_task() -> None:
    app = UpstreamApp()
    await leave_mid_request(app, GatewayHttpProtocol)
    assert isinstance(app.outcome, ClientDisconnectedError)
    assert app.cancelling_after == 0
    assert app.tasks_during == app.tasks_before  # no watcher task


async def test_under_another_server_a_watcher_task_does_it() -> None:
    app = UpstreamApp()
    await leave_mid_request(app, HttpToolsProtocol)
    assert isinstance(app.outcome, ClientDisconnectedError)
    assert app.cancelling_after == 0
    assert app.tasks_during == app.tasks_before + 1
