"""Prompts and completions, for the keys whose owners opted in (``log_content``).

One JSON line per chat-shaped request (``/v1/chat/completions``, ``/v1/messages``,
``/v1/responses``) on the ``xrouter.content`` logger, apart from the access log
(``xrouter.access``), which never carries content: operators can route, retain or drop the two
separately. Keys without the flag cost the pipeline one attribute check per request.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec

from xrouter.gateway.wire import Choice, Message, ToolCallDelta
from xrouter.providers.base import StreamDelta
from xrouter.usage.recorder import UsageEvent

log = logging.getLogger("xrouter.content")


class StreamTranscript:
    """A streamed answer put back together from its deltas: text and tool calls per choice."""

    __slots__ = ("_finish", "_text", "_tools")

    def __init__(self) -> None:
        self._text: dict[int, list[str]] = {}
        self._tools: dict[int, dict[int, dict[str, str]]] = {}
        self._finish: dict[int, str] = {}

    def add(self, delta: StreamDelta) -> None:
        """Take in one delta of the stream."""
        index = delta.index
        if delta.content:
            self._text.setdefault(index, []).append(delta.content)
        if delta.tool_calls:
            calls = self._tools.setdefault(index, {})
            for call in delta.tool_calls:
                _merge_tool_call(calls.setdefault(call.index, {}), call)
        if delta.finish_reason is not None:
            self._finish[index] = delta.finish_reason

    def choices(self) -> list[dict[str, Any]]:
        """The answer so far, one entry per choice (the shape a whole answer is logged in)."""
        indexes = sorted(self._text.keys() | self._tools.keys() | self._finish.keys())
        return [
            {
                "index": index,
                "content": "".join(self._text.get(index, ())) or None,
                "tool_calls": [
                    {"id": call.get("id"), "name": call.get("name"), "arguments": call["arguments"]}
                    for _, call in sorted(self._tools.get(index, {}).items())
                ]
                or None,
                "finish_reason": self._finish.get(index),
            }
            for index in indexes
        ]


def _merge_tool_call(call: dict[str, str], delta: ToolCallDelta) -> None:
    call.setdefault("arguments", "")
    if isinstance(delta.id, str):
        call["id"] = delta.id
    function = delta.function
    if isinstance(function, msgspec.UnsetType):
        return
    if isinstance(function.name, str):
        call["name"] = function.name
    if isinstance(function.arguments, str):
        call["arguments"] += function.arguments


def _completion_of(choices: list[Choice]) -> list[dict[str, Any]]:
    return [
        {
            "index": choice.index,
            "content": choice.message.content,
            "tool_calls": [
                {"id": call.id, "name": call.function.name, "arguments": call.function.arguments}
                for call in choice.message.tool_calls
            ]
            if isinstance(choice.message.tool_calls, list)
            else None,
            "finish_reason": choice.finish_reason,
        }
        for choice in choices
    ]


def log_exchange(
    event: UsageEvent,
    api: str,
    messages: list[Message],
    answer: list[Choice] | StreamTranscript | None,
) -> None:
    """Write the content line of a finished request: its prompt and its ``answer`` (a whole
    answer's choices, a stream's transcript, or None when no answer came)."""
    if isinstance(answer, StreamTranscript):
        completion: list[dict[str, Any]] | None = answer.choices()
    else:
        completion = _completion_of(answer) if answer is not None else None
    log.info(
        "content",
        extra={
            "request_id": event.request_id,
            "generation_id": event.id,
            "key_id": event.key_id,
            "api": api,
            "model": event.model,
            "stream": event.stream,
            "status": event.status_code,
            "messages": msgspec.to_builtins(messages),
            "completion": completion,
        },
    )
