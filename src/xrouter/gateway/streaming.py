"""Relays a provider's stream to the client as OpenAI server-sent events, chunk by chunk."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable

import msgspec

from xrouter.errors import GatewayError
from xrouter.gateway.wire import (
    WIRE_ENCODER,
    ChatCompletionChunk,
    ChunkChoice,
    Delta,
    Usage,
)
from xrouter.observability.content_log import StreamTranscript
from xrouter.providers.base import StreamDecoder, StreamDelta

log = logging.getLogger(__name__)
DONE = b"data: [DONE]\n\n"


def sse_event(payload: object) -> bytes:
    return b"data: " + WIRE_ENCODER.encode(payload) + b"\n\n"


def sse_events(payloads: list[ChatCompletionChunk]) -> bytes:
    """Several ``data:`` events in one piece of bytes."""
    if len(payloads) == 1:  # most upstream lines carry one delta
        return b"data: " + WIRE_ENCODER.encode(payloads[0]) + b"\n\n"
    return b"".join([sse_event(payload) for payload in payloads])


def named_sse_event(event: msgspec.Struct) -> bytes:
    """An SSE event whose ``event:`` name is the struct's tag (Anthropic, Responses)."""
    kind = type(event).__struct_config__.tag
    return b"event: " + str(kind).encode() + b"\ndata: " + WIRE_ENCODER.encode(event) + b"\n\n"


class StreamOutcome:
    """What a finished stream tells usage recording."""

    def __init__(self) -> None:
        self.usage: Usage | None = None
        self.first_token_at: float | None = None
        self.error: GatewayError | None = None
        # The answer's text and tool calls, assembled only for a key that has content logged.
        self.transcript: StreamTranscript | None = None


class ChunkStream:
    """Frames provider deltas as OpenAI ``chat.completion.chunk`` events.

    The upstream body is read by the caller; the first line was read before the response
    started so that an upstream refusal can still become a proper HTTP error status.
    """

    def __init__(
        self,
        completion_id: str,
        model: str,
        include_usage: bool,
        decoder: StreamDecoder,
        on_finish: Callable[[StreamOutcome], None],
        transcript: StreamTranscript | None = None,
    ) -> None:
        self._id = completion_id
        self._model = model
        self._created = int(time.time())
        self._include_usage = include_usage
        self._decoder = decoder
        self._on_finish = on_finish
        self._fingerprint: str | None = None
        self.outcome = StreamOutcome()
        self.outcome.transcript = transcript

    async def events(
        self,
        first_line: bytes | list[StreamDelta] | None,
        lines: AsyncIterator[list[bytes]] | None,
    ) -> AsyncGenerator[bytes, None]:
        """The stream as SSE bytes, ending with ``[DONE]``: what ``chunks`` yields, framed, with
        the events decoded from one network read's lines joined so that they go out in one
        write, as they came in one."""
        try:
            yield sse_events(self._opening(first_line))
            if lines is not None:
                feed = self._decoder.feed
                async for batch in lines:
                    if len(batch) == 1:  # an upstream that sends as it generates: one line
                        chunks = self._decode(feed(batch[0]))
                    else:
                        chunks = self._decode([delta for line in batch for delta in feed(line)])
                    if chunks:
                        yield sse_events(chunks)
            yield sse_events(self._closing(lines is not None)) + DONE
        except GatewayError as error:
            self.outcome.error = error
            # Headers are gone: the failure is reported in the stream, the way OpenAI does.
            yield b"data: " + error.encode() + b"\n\n" + DONE
        finally:
            await self._end(lines)

    async def chunks(
        self,
        first_line: bytes | list[StreamDelta] | None,
        lines: AsyncIterator[list[bytes]] | None,
    ) -> AsyncGenerator[ChatCompletionChunk | GatewayError, None]:
        """The stream as chunk structs, for relaying or for translating to another API.

        ``first_line`` is the upstream's first line, or the deltas already decoded from its
        first lines (routing reads up to the first delta before it commits to a target);
        ``lines`` gives the rest a network read's lines at a time, and is None when the
        upstream has ended and the decoder was closed already.

        A failure after the start ends the stream as a final ``GatewayError`` item; the outcome
        is reported to ``on_finish`` when the stream ends, however it ends.
        """
        try:
            for chunk in self._opening(first_line):
                yield chunk
            if lines is not None:
                async for batch in lines:
                    for line in batch:
                        for chunk in self._decode(self._decoder.feed(line)):
                            yield chunk
            for chunk in self._closing(lines is not None):
                yield chunk
        except GatewayError as error:
            self.outcome.error = error
            yield error
        finally:
            await self._end(lines)

    def _opening(self, first_line: bytes | list[StreamDelta] | None) -> list[ChatCompletionChunk]:
        """The role chunk, then the chunks of the first line. The first line is decoded before
        the role chunk is made so that it carries the served version (system_fingerprint) as
        every later chunk does."""
        first: list[ChatCompletionChunk] = []
        if isinstance(first_line, list):
            first = self._decode(first_line)
        elif first_line is not None:
            first = self._decode(self._decoder.feed(first_line))
        return [self._chunk([ChunkChoice(0, Delta(role="assistant", content=""))]), *first]

    def _closing(self, decoder_open: bool) -> list[ChatCompletionChunk]:
        """What the upstream's end adds: the decoder's last chunks, then the usage chunk."""
        chunks = self._decode(self._decoder.close()) if decoder_open else []
        if self._include_usage:
            chunks.append(self._chunk([], usage=self.outcome.usage))
        return chunks

    async def _end(self, lines: AsyncIterator[list[bytes]] | None) -> None:
        # A client that left mid-stream: close the upstream now, not when collected.
        close = getattr(lines, "aclose", None)
        if close is not None:
            await close()
        self._on_finish(self.outcome)

    def _decode(self, deltas: list[StreamDelta]) -> list[ChatCompletionChunk]:
        events = []
        transcript = self.outcome.transcript
        for delta in deltas:
            if transcript is not None:
                transcript.add(delta)
            if delta.model_version:
                self._fingerprint = delta.model_version
            if delta.usage is not None:
                self.outcome.usage = delta.usage
            if delta.content and self.outcome.first_token_at is None:
                self.outcome.first_token_at = time.perf_counter()
            if delta.content or delta.tool_calls:
                content = delta.content if delta.content else None
                body = (
                    Delta(content=content)
                    if delta.tool_calls is None
                    else Delta(content=content, tool_calls=delta.tool_calls)
                )
                events.append(self._chunk([ChunkChoice(delta.index, body)]))
            if delta.finish_reason is not None:
                events.append(self._chunk([ChunkChoice(delta.index, Delta(), delta.finish_reason)]))
        return events

    def _chunk(self, choices: list[ChunkChoice], usage: Usage | None = None) -> ChatCompletionChunk:
        chunk = ChatCompletionChunk(
            id=self._id,
            created=self._created,
            model=self._model,
            choices=choices,
            system_fingerprint=self._fingerprint,
        )
        if self._include_usage:
            chunk.usage = usage
        return chunk
