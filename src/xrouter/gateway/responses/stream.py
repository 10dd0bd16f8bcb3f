"""A chat chunk stream as the Responses API's event sequence.

``response.created``, ``response.in_progress``; for text ``response.output_item.added``,
``response.content_part.added``, ``response.output_text.delta``..., ``response.output_text.done``,
``response.content_part.done``, ``response.output_item.done``; for a function call
``response.output_item.added``, ``response.function_call_arguments.delta``...,
``response.function_call_arguments.done``, ``response.output_item.done``; then
``response.completed`` (``response.incomplete`` when the output was cut short) with the usage,
or ``response.failed`` with the error if the provider failed after the start.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import aclosing

import msgspec

from xrouter.errors import GatewayError
from xrouter.gateway.responses.translate import incomplete_details, response_usage
from xrouter.gateway.responses.wire import (
    ArgumentsDelta,
    ArgumentsDone,
    ContentPartAdded,
    ContentPartDone,
    FunctionCallOutput,
    OutputItem,
    OutputItemAdded,
    OutputItemDone,
    OutputMessage,
    OutputText,
    OutputTextDelta,
    OutputTextDone,
    ResponseCompleted,
    ResponseCreated,
    ResponseError,
    ResponseFailed,
    ResponseIncomplete,
    ResponseInProgress,
    ResponseObject,
    StreamEvent,
)
from xrouter.gateway.streaming import named_sse_event as sse
from xrouter.gateway.wire import ChatCompletionChunk, FunctionCallDelta, ToolCallDelta, Usage


class ResponsesStream:
    """Translates one chat chunk stream. ``response`` is the in-progress response (no output);
    ``on_done`` gets the final one (completed or incomplete), for storing."""

    def __init__(
        self, response: ResponseObject, message_id: str, on_done: Callable[[ResponseObject], None]
    ) -> None:
        self._response = response
        self._message_id = message_id
        self._on_done = on_done
        self._sequence = 0
        self._output: list[OutputItem] = []
        self._open: OutputItem | None = None
        self._finish_reason: str | None = None
        self._usage: Usage | None = None

    async def events(
        self, chunks: AsyncGenerator[ChatCompletionChunk | GatewayError, None]
    ) -> AsyncIterator[bytes]:
        started = False
        async with aclosing(chunks) as items:
            async for item in items:
                if not started:
                    started = True
                    if isinstance(item, ChatCompletionChunk):
                        # The model that serves, which a route may have chosen.
                        self._response.model = item.model
                    yield self._event(ResponseCreated(self._response))
                    yield self._event(ResponseInProgress(self._response))
                if isinstance(item, GatewayError):
                    yield self._failed(item)
                    return
                for event in self._translate(item):
                    yield event
        for event in self._close():
            yield event
        yield self._finished()

    def _event(self, event: StreamEvent) -> bytes:
        event.sequence_number = self._sequence
        self._sequence += 1
        return sse(event)

    def _translate(self, chunk: ChatCompletionChunk) -> list[bytes]:
        if isinstance(chunk.usage, Usage):
            self._usage = chunk.usage
        events: list[bytes] = []
        for choice in chunk.choices:
            delta = choice.delta
            if isinstance(delta.content, str) and delta.content:
                events.extend(self._text(delta.content))
            if isinstance(delta.tool_calls, list):
                for call in delta.tool_calls:
                    events.extend(self._tool_call(call))
            if choice.finish_reason is not None:
                self._finish_reason = choice.finish_reason
        return events

    def _text(self, text: str) -> list[bytes]:
        events: list[bytes] = []
        if not isinstance(self._open, OutputMessage):
            events.extend(self._close())
            message = OutputMessage(self._message_id, [], status="in_progress")
            self._open = message
            # Events are encoded at once, so they show the item as it is at that point.
            events.append(self._event(OutputItemAdded(len(self._output), message)))
            message.content.append(OutputText(""))
            added = ContentPartAdded(message.id, len(self._output), 0, OutputText(""))
            events.append(self._event(added))
        message = self._open
        message.content[0].text += text
        events.append(self._event(OutputTextDelta(message.id, len(self._output), 0, text)))
        return events

    def _tool_call(self, call: ToolCallDelta) -> list[bytes]:
        events: list[bytes] = []
        function = call.function if isinstance(call.function, FunctionCallDelta) else None
        name = function.name if function and isinstance(function.name, str) else ""
        arguments = function.arguments if function and isinstance(function.arguments, str) else ""
        if isinstance(call.id, str):
            events.extend(self._close())
            item = FunctionCallOutput(f"fc_{call.id}", call.id, name, "", "in_progress")
            self._open = item
            events.append(self._event(OutputItemAdded(len(self._output), item)))
        if arguments and isinstance(self._open, FunctionCallOutput):
            self._open.arguments += arguments
            delta = ArgumentsDelta(self._open.id, len(self._output), arguments)
            events.append(self._event(delta))
        return events

    def _close(self) -> list[bytes]:
        item, self._open = self._open, None
        if item is None:
            return []
        index = len(self._output)
        events: list[bytes] = []
        if isinstance(item, OutputMessage):
            part = item.content[0]
            events.append(self._event(OutputTextDone(item.id, index, 0, part.text)))
            events.append(self._event(ContentPartDone(item.id, index, 0, part)))
        else:
            done = ArgumentsDone(item.id, index, item.name, item.arguments)
            events.append(self._event(done))
        item.status = "completed"
        self._output.append(item)
        events.append(self._event(OutputItemDone(index, item)))
        return events

    def _finished(self) -> bytes:
        details = incomplete_details(self._finish_reason)
        response = msgspec.structs.replace(
            self._response,
            status="incomplete" if details else "completed",
            output=self._output,
            usage=response_usage(self._usage),
            incomplete_details=details,
        )
        self._on_done(response)
        if details is not None:
            return self._event(ResponseIncomplete(response))
        return self._event(ResponseCompleted(response))

    def _failed(self, error: GatewayError) -> bytes:
        # Items still open are left out: the client gets what was finished and the error.
        failure = ResponseError(error.code or error.error_type, error.message)
        response = msgspec.structs.replace(
            self._response, status="failed", output=self._output, error=failure
        )
        return self._event(ResponseFailed(response))
