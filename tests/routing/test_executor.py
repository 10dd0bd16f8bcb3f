"""What routing hands on when a stream's first read held more than its first delta."""

from __future__ import annotations

from collections.abc import AsyncGenerator

from xrouter.routing.executor import ResumedLines


async def _upstream(closed: list[bool]) -> AsyncGenerator[list[bytes], None]:
    try:
        yield [b"data: 3"]
        yield [b"data: 4", b"data: 5"]
    finally:
        closed.append(True)


async def test_the_rest_of_the_first_read_comes_first_then_the_upstream() -> None:
    closed: list[bool] = []
    upstream = _upstream(closed)
    await anext(upstream)  # routing read the first batch up to its first delta
    lines = ResumedLines([b"data: 2"], upstream)
    assert [batch async for batch in lines] == [[b"data: 2"], [b"data: 4", b"data: 5"]]
    assert closed == [True]


async def test_closing_before_anything_was_read_closes_the_upstream() -> None:
    closed: list[bool] = []
    upstream = _upstream(closed)
    await anext(upstream)
    await ResumedLines([b"data: 2"], upstream).aclose()  # the client left at the first write
    assert closed == [True]
