"""The OpenAI SSE framing of a stream: what the client receives, item by item (one item is
one write), and what usage recording is told when the stream ends. The upstream's lines come
a network read at a time: ``upstream`` gives each line its own read unless told otherwise."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from xrouter.errors import GatewayError, UpstreamError
from xrouter.gateway.streaming import DONE, ChunkStream, StreamOutcome
from xrouter.gateway.wire import ChatCompletionChunk, Usage
from xrouter.providers.base import StreamDecoder, StreamDelta

USAGE = Usage(3, 2, 5)


class LineDecoder(StreamDecoder):
    """``text`` -> one content delta; ``end`` -> a finish delta and usage; ``two`` -> two
    deltas; ``bad`` -> an upstream error; anything else -> nothing."""

    def feed(self, line: bytes) -> list[StreamDelta]:
        if line == b"bad":
            raise UpstreamError("the upstream sent nonsense", provider="test")
        if line == b"two":
            return [StreamDelta(content="a", model_version="v1"), StreamDelta(content="b")]
        if line == b"end":
            return [StreamDelta(finish_reason="stop", usage=USAGE)]
        return [StreamDelta(content=line.decode(), model_version="v1")] if line else []

    def close(self) -> list[StreamDelta]:
        return []


async def upstream(*reads: bytes | list[bytes]) -> AsyncIterator[list[bytes]]:
    """One network read per argument: a line, or a list of lines that arrived together."""
    for read in reads:
        yield read if isinstance(read, list) else [read]


def stream(include_usage: bool, finished: list[StreamOutcome]) -> ChunkStream:
    return ChunkStream(
        "chatcmpl-1", "gigachat/GigaChat", include_usage, LineDecoder(), finished.append
    )


def events_of(item: bytes) -> list[Any]:
    """The data of each ``data:`` event in ``item``, decoded (``[DONE]`` as a string)."""
    assert item.endswith(b"\n\n")
    events = item[:-2].split(b"\n\n")
    assert all(event.startswith(b"data: ") for event in events)
    return ["[DONE]" if event == b"data: [DONE]" else json.loads(event[6:]) for event in events]


async def test_each_network_read_is_one_write_and_the_last_carries_usage_and_done() -> None:
    finished: list[StreamOutcome] = []
    items = [
        item async for item in stream(True, finished).events(b"hi", upstream(b"", b"two", b"end"))
    ]
    first, second, third, last = (events_of(item) for item in items)
    # The role chunk goes with the first line's chunk, and carries its version.
    assert [event["choices"][0]["delta"] for event in first] == [
        {"role": "assistant", "content": ""},
        {"content": "hi"},
    ]
    assert first[0]["system_fingerprint"] == "v1"
    # A blank line writes nothing; a line of two deltas is one write of two events.
    assert [event["choices"][0]["delta"]["content"] for event in second] == ["a", "b"]
    assert third[0]["choices"][0]["finish_reason"] == "stop"
    assert last[0]["choices"] == []
    assert last[0]["usage"] == {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    assert last[1] == "[DONE]"
    assert all(event["id"] == "chatcmpl-1" for item in (first, second, third) for event in item)
    assert [outcome.usage for outcome in finished] == [USAGE]
    assert finished[0].error is None


async def test_lines_that_arrived_together_leave_in_one_write() -> None:
    finished: list[StreamOutcome] = []
    chunk_stream = stream(True, finished)
    items = [item async for item in chunk_stream.events(b"hi", upstream([b"two", b"x", b"end"]))]
    assert len(items) == 3
    together = events_of(items[1])
    assert [event["choices"][0]["delta"].get("content") for event in together] == [
        "a",
        "b",
        "x",
        None,
    ]
    assert together[-1]["choices"][0]["finish_reason"] == "stop"
    assert events_of(items[2])[-1] == "[DONE]"
    assert [outcome.usage for outcome in finished] == [USAGE]


async def test_without_usage_the_last_write_is_done_alone() -> None:
    finished: list[StreamOutcome] = []
    items = [item async for item in stream(False, finished).events(b"hi", upstream(b"end"))]
    assert items[-1] == DONE
    assert all("usage" not in event for item in items[:-1] for event in events_of(item))


async def test_an_ended_upstream_sends_its_first_chunks_then_done() -> None:
    finished: list[StreamOutcome] = []
    deltas = [StreamDelta(content="x"), StreamDelta(finish_reason="stop", usage=USAGE)]
    items = [item async for item in stream(True, finished).events(deltas, None)]
    assert len(items) == 2
    assert [event["choices"][0]["delta"] for event in events_of(items[0])] == [
        {"role": "assistant", "content": ""},
        {"content": "x"},
        {},
    ]
    assert events_of(items[1])[-1] == "[DONE]"
    assert finished[0].usage == USAGE


@pytest.mark.parametrize("first_line", [b"bad", b"hi"])
async def test_a_failure_is_the_last_event_before_done(first_line: bytes) -> None:
    finished: list[StreamOutcome] = []
    items = [
        item async for item in stream(True, finished).events(first_line, upstream(b"bad", b"x"))
    ]
    error, done = events_of(items[-1])
    assert error["error"]["message"] == "the upstream sent nonsense"
    assert done == "[DONE]"
    # A first line that fails sends no role chunk: the error is all there is.
    assert len(items) == (1 if first_line == b"bad" else 2)
    assert isinstance(finished[0].error, UpstreamError)


async def test_chunks_yield_the_same_stream_as_structs() -> None:
    finished: list[StreamOutcome] = []
    items = [item async for item in stream(True, finished).chunks(b"hi", upstream(b"two", b"bad"))]
    chunks = [item for item in items if isinstance(item, ChatCompletionChunk)]
    assert [chunk.choices[0].delta.content for chunk in chunks] == ["", "hi", "a", "b"]
    assert isinstance(items[-1], GatewayError)
    assert finished[0].error is items[-1]


async def test_a_client_that_leaves_closes_the_upstream_and_usage_is_recorded() -> None:
    finished: list[StreamOutcome] = []
    closed: list[bool] = []

    async def endless() -> AsyncIterator[list[bytes]]:
        try:
            while True:
                yield [b"more"]
        finally:
            closed.append(True)

    events = stream(True, finished).events(b"hi", endless())
    await anext(events)
    await anext(events)
    await events.aclose()
    assert closed == [True]
    assert len(finished) == 1
