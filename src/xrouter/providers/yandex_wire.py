"""Yandex's answers (proto3 JSON mapping: camelCase, int64 as strings) in OpenAI terms.

Holds the wire structs, the status and usage mapping, tool calls with generated ids, and the
stream decoder that turns Yandex's cumulative frames into true deltas.
"""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec

from xrouter.errors import UpstreamError
from xrouter.gateway.wire import (
    Choice,
    CompletionTokensDetails,
    FunctionCall,
    FunctionCallDelta,
    ResponseMessage,
    ToolCall,
    ToolCallDelta,
    Usage,
)
from xrouter.providers.base import ChatReply, StreamDecoder, StreamDelta
from xrouter.providers.errors import (
    malformed_response,
    text_message,
    truncated_stream,
    upstream_status_error,
)

NAME = "yandex"
FINISH_REASONS = {
    "ALTERNATIVE_STATUS_FINAL": "stop",
    "ALTERNATIVE_STATUS_TRUNCATED_FINAL": "length",
    "ALTERNATIVE_STATUS_CONTENT_FILTER": "content_filter",
    "ALTERNATIVE_STATUS_TOOL_CALLS": "tool_calls",
}
CONTENT_FILTER = "ALTERNATIVE_STATUS_CONTENT_FILTER"
# gRPC code -> HTTP status, for error bodies that carry only the gRPC code.
GRPC_HTTP_STATUS = {3: 400, 4: 504, 5: 404, 7: 403, 8: 429, 9: 400, 13: 500, 14: 503, 16: 401}
# int64 fields are strings in proto3 JSON; numbers are accepted too.
Int64 = int | str


class _FunctionCall(msgspec.Struct):
    name: str
    arguments: dict[str, Any] = {}


class _ToolCall(msgspec.Struct):
    functionCall: _FunctionCall | None = None


class _ToolCallList(msgspec.Struct):
    toolCalls: list[_ToolCall] = []


class _Message(msgspec.Struct):
    text: str = ""
    role: str = "assistant"
    toolCallList: _ToolCallList | None = None


class _Alternative(msgspec.Struct):
    message: _Message
    status: str = "ALTERNATIVE_STATUS_UNSPECIFIED"


class _CompletionTokensDetails(msgspec.Struct):
    reasoningTokens: Int64 = "0"


class _Usage(msgspec.Struct):
    inputTextTokens: Int64 = "0"
    completionTokens: Int64 = "0"
    totalTokens: Int64 = "0"
    completionTokensDetails: _CompletionTokensDetails | None = None


class _Result(msgspec.Struct):
    alternatives: list[_Alternative]
    usage: _Usage | None = None
    modelVersion: str | None = None


class _Error(msgspec.Struct):
    message: str | None = None
    grpcCode: int | None = None
    httpCode: int | None = None


class _Envelope(msgspec.Struct):
    result: _Result | None = None
    error: _Error | None = None


class _ErrorBody(msgspec.Struct):
    error: _Error | None = None
    # grpc-gateway's plain form: {"code": <gRPC code>, "message": ...}
    code: int | None = None
    message: str | None = None


class EmbeddingAnswer(msgspec.Struct):
    embedding: list[float]
    numTokens: Int64 = "0"
    modelVersion: str | None = None


_ENVELOPE = msgspec.json.Decoder(_Envelope)


def to_int(value: Int64) -> int:
    """An int64 from proto3 JSON; anything but a decimal integer is a malformed answer."""
    try:
        return int(value)
    except ValueError:
        raise malformed_response(NAME, "token counts") from None


def usage(answer: _Usage | None) -> Usage | None:
    if answer is None:
        return None
    result = Usage(
        to_int(answer.inputTextTokens), to_int(answer.completionTokens), to_int(answer.totalTokens)
    )
    if answer.completionTokensDetails is not None:
        reasoning = to_int(answer.completionTokensDetails.reasoningTokens)
        result.completion_tokens_details = CompletionTokensDetails(reasoning_tokens=reasoning)
    return result


def tool_calls(answer: _ToolCallList) -> list[ToolCall]:
    """OpenAI tool calls with generated ids: Yandex's calls have none.

    An id is derived from the call's position, name and arguments, so the same answer gets the
    same ids whether it was streamed or not.
    """
    calls = []
    for index, call in enumerate(answer.toolCalls):
        if call.functionCall is None:
            continue
        name = call.functionCall.name
        arguments = msgspec.json.encode(call.functionCall.arguments).decode()
        digest = hashlib.sha256(f"{index}\0{name}\0{arguments}".encode()).hexdigest()
        calls.append(ToolCall(id=f"call_{digest[:24]}", function=FunctionCall(name, arguments)))
    return calls


def chat_reply(body: bytes) -> ChatReply:
    try:
        envelope = _ENVELOPE.decode(body)
    except msgspec.DecodeError:
        raise malformed_response(NAME, "completion") from None
    if envelope.result is None:
        raise malformed_response(NAME, "completion without a result")
    result = envelope.result
    choices = []
    for index, alternative in enumerate(result.alternatives):
        message = ResponseMessage(content=alternative.message.text)
        if alternative.message.toolCallList is not None:
            message = ResponseMessage(
                content=alternative.message.text or None,
                tool_calls=tool_calls(alternative.message.toolCallList),
            )
        reason = FINISH_REASONS.get(alternative.status, "stop")
        choices.append(Choice(index=index, message=message, finish_reason=reason))
    return ChatReply(choices, usage(result.usage), result.modelVersion)


def error(status: int, body: bytes, retry_after: float | None) -> UpstreamError:
    """Map a Yandex error answer; the HTTP status decides, the gRPC code fills in for it."""
    message: str | None
    try:
        answer = msgspec.json.decode(body, type=_ErrorBody)
    except msgspec.DecodeError:
        message = text_message(body)
    else:
        inner = answer.error
        message = inner.message if inner is not None else answer.message
    return upstream_status_error(NAME, status, message, retry_after)


def _stream_error(answer: _Error) -> UpstreamError:
    status = answer.httpCode or GRPC_HTTP_STATUS.get(answer.grpcCode or 0, 502)
    return upstream_status_error(NAME, status, answer.message, None)


class YandexStreamDecoder(StreamDecoder):
    """Yandex streams one JSON object per line, each carrying the whole text so far.

    The deltas are the new suffix of each alternative's text, so their concatenation is the
    final text exactly. A content filter replaces the text instead of extending it, so the
    replacement is sent whole. Tool calls arrive complete and are sent once.
    """

    def __init__(self) -> None:
        self._sent: dict[int, str] = {}
        self._calls_sent: set[int] = set()
        self._finished = False

    def feed(self, line: bytes) -> list[StreamDelta]:
        if not line.strip():
            return []
        try:
            envelope = _ENVELOPE.decode(line)
        except msgspec.DecodeError:
            raise malformed_response(NAME, "stream line") from None
        if envelope.error is not None:
            raise _stream_error(envelope.error)
        if envelope.result is None:
            raise malformed_response(NAME, "stream line without a result")
        return self._deltas(envelope.result)

    def _deltas(self, result: _Result) -> list[StreamDelta]:
        deltas = []
        for index, alternative in enumerate(result.alternatives):
            text = alternative.message.text
            sent = self._sent.get(index, "")
            if alternative.status == CONTENT_FILTER or not text.startswith(sent):
                piece = text
            else:
                piece = text[len(sent) :]
            self._sent[index] = text
            calls = None
            if alternative.message.toolCallList is not None and index not in self._calls_sent:
                self._calls_sent.add(index)
                calls = _call_deltas(tool_calls(alternative.message.toolCallList))
            reason = FINISH_REASONS.get(alternative.status)
            if reason is not None:
                self._finished = True
            if piece or calls or reason:
                deltas.append(
                    StreamDelta(
                        content=piece,
                        tool_calls=calls,
                        finish_reason=reason,
                        usage=usage(result.usage) if reason else None,
                        model_version=result.modelVersion,
                        index=index,
                    )
                )
        return deltas

    def close(self) -> list[StreamDelta]:
        if not self._finished:
            raise truncated_stream(NAME)
        return []


def _call_deltas(calls: list[ToolCall]) -> list[ToolCallDelta] | None:
    if not calls:
        return None
    return [
        ToolCallDelta(
            index=number,
            id=call.id,
            type="function",
            function=FunctionCallDelta(name=call.function.name, arguments=call.function.arguments),
        )
        for number, call in enumerate(calls)
    ]
