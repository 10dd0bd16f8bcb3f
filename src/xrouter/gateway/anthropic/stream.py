"""A chat chunk stream as Anthropic's event sequence.

``message_start``, a ``ping``, then per content block ``content_block_start``, its
``content_block_delta``s (``text_delta`` or ``input_json_delta``) and ``content_block_stop``;
finally ``message_delta`` with the stop reason and the usage, and ``message_stop``. A failure
after the start is an ``error`` event, as Anthropic sends it.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing

from xrouter.errors import GatewayError
from xrouter.gateway.anthropic.errors import error_body
from xrouter.gateway.anthropic.translate import message_usage, stop_reason
from xrouter.gateway.anthropic.wire import (
    AnthropicMessage,
    ContentBlockDelta,
    ContentBlockStart,
    ContentBlockStop,
    InputJsonDelta,
    MessageDelta,
    MessageDeltaBody,
    MessageDeltaUsage,
    MessageStart,
    MessageStop,
    MessageUsage,
    Ping,
    StopReason,
    TextContent,
    TextDelta,
    ToolUseContent,
)
from xrouter.gateway.streaming import named_sse_event as sse
from xrouter.gateway.wire import ChatCompletionChunk, FunctionCallDelta, ToolCallDelta, Usage


class AnthropicStream:
    """Translates one chat chunk stream; blocks are numbered in the order they open.

    ``model`` is the one asked for; the message names the one that serves, from the stream's
    first chunk (a route may have sent the request elsewhere).
    """

    def __init__(self, message_id: str, model: str) -> None:
        self._message_id = message_id
        self._model = model
        self._blocks = 0
        self._open: int | None = None
        self._open_is_text = False
        # Chat tool-call index -> the block its argument deltas belong to.
        self._tool_blocks: dict[int, int] = {}
        self._stop_reason: StopReason | None = None
        self._usage: Usage | None = None

    async def events(
        self, chunks: AsyncGenerator[ChatCompletionChunk | GatewayError, None]
    ) -> AsyncIterator[bytes]:
        started = False
        async with aclosing(chunks) as items:
            async for item in items:
                if not started:
                    started = True
                    for event in self._start_message(item):
                        yield event
                if isinstance(item, GatewayError):
                    for event in self._close_block():
                        yield event
                    yield sse(error_body(item))
                    return
                for event in self._translate(item):
                    yield event
        for event in self._close_block():
            yield event
        usage = message_usage(self._usage)
        yield sse(
            MessageDelta(
                MessageDeltaBody(self._stop_reason or "end_turn"),
                MessageDeltaUsage(
                    output_tokens=usage.output_tokens,
                    input_tokens=usage.input_tokens,
                    cache_read_input_tokens=usage.cache_read_input_tokens,
                ),
            )
        )
        yield sse(MessageStop())

    def _start_message(self, first: ChatCompletionChunk | GatewayError) -> list[bytes]:
        model = first.model if isinstance(first, ChatCompletionChunk) else self._model
        start = AnthropicMessage(self._message_id, model, [], None, MessageUsage(0, 0))
        return [sse(MessageStart(start)), sse(Ping())]

    def _translate(self, chunk: ChatCompletionChunk) -> list[bytes]:
        if isinstance(chunk.usage, Usage):
            self._usage = chunk.usage
        events: list[bytes] = []
        for choice in chunk.choices:
            delta = choice.delta
            if isinstance(delta.content, str) and delta.content:
                if self._open is None or not self._open_is_text:
                    events.extend(self._close_block())
                    events.append(self._start(TextContent(""), text=True))
                assert self._open is not None
                events.append(sse(ContentBlockDelta(self._open, TextDelta(delta.content))))
            if isinstance(delta.tool_calls, list):
                for call in delta.tool_calls:
                    events.extend(self._tool_call(call))
            if choice.finish_reason is not None:
                self._stop_reason = stop_reason(choice.finish_reason)
                events.extend(self._close_block())
        return events

    def _tool_call(self, call: ToolCallDelta) -> list[bytes]:
        events: list[bytes] = []
        function = call.function if isinstance(call.function, FunctionCallDelta) else None
        name = function.name if function and isinstance(function.name, str) else ""
        arguments = function.arguments if function and isinstance(function.arguments, str) else ""
        if isinstance(call.id, str):
            events.extend(self._close_block())
            events.append(self._start(ToolUseContent(call.id, name, {}), text=False))
            self._tool_blocks[call.index] = self._blocks - 1
        index = self._tool_blocks.get(call.index)
        # Blocks are sequential: arguments can only stream into the block that is open.
        if arguments and index is not None and index == self._open:
            events.append(sse(ContentBlockDelta(index, InputJsonDelta(arguments))))
        return events

    def _start(self, block: TextContent | ToolUseContent, *, text: bool) -> bytes:
        index = self._blocks
        self._blocks += 1
        self._open = index
        self._open_is_text = text
        return sse(ContentBlockStart(index, block))

    def _close_block(self) -> list[bytes]:
        if self._open is None:
            return []
        index, self._open = self._open, None
        return [sse(ContentBlockStop(index))]
