"""Upstream work is cancelled when the client goes away, and only then."""

from __future__ import annotations

import asyncio

import pytest
from starlette.types import Message

from xrouter.routing.disconnect import ClientDisconnectedError, unless_disconnected


class Client:
    """The ASGI ``receive`` of a request whose body has been read: it answers only when the
    client disconnects."""

    def __init__(self) -> None:
        self._left = asyncio.Event()

    def leave(self) -> None:
        self._left.set()

    async def receive(self) -> Message:
        await self._left.wait()
        return {"type": "http.disconnect"}


async def test_the_answer_comes_back_when_the_client_stays() -> None:
    client = Client()

    async def work() -> str:
        await asyncio.sleep(0.01)
        return "answer"

    assert await unless_disconnected(client.receive, work()) == "answer"
    task = asyncio.current_task()
    assert task is not None
    assert task.cancelling() == 0


async def test_a_client_leaving_cancels_the_work_and_is_reported() -> None:
    client = Client()
    closed = asyncio.Event()

    async def work() -> str:
        try:
            await asyncio.sleep(10)
        finally:
            closed.set()  # e.g. the upstream connection being closed
        return "never"

    asyncio.get_running_loop().call_later(0.01, client.leave)
    with pytest.raises(ClientDisconnectedError):
        await unless_disconnected(client.receive, work())
    assert closed.is_set()
    task = asyncio.current_task()
    assert task is not None
    # The request's task is not left half-cancelled: later awaits and timeouts work.
    assert task.cancelling() == 0
    async with asyncio.timeout(1):
        await asyncio.sleep(0)


async def test_a_cancellation_from_elsewhere_goes_on() -> None:
    client = Client()
    started = asyncio.Event()

    async def work() -> None:
        started.set()
        await asyncio.sleep(10)

    task = asyncio.create_task(unless_disconnected(client.receive, work()))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
