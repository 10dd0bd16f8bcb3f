"""Anthropic Messages API wire format as msgspec structs.

Requests are decoded with validation; fields the gateway does not read (``cache_control``,
``citations``, ``service_tier``, ...) are ignored, as Anthropic-compatible servers do. Blocks
are tagged by their ``type``, so an unknown block type is a clear 400 naming its path.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct

NonEmptyStr = Annotated[str, Meta(min_length=1)]


# Requests: content blocks


class TextBlock(Struct, tag="text", tag_field="type"):
    text: str


class Base64Source(Struct, tag="base64", tag_field="type"):
    media_type: str
    data: str


class UrlSource(Struct, tag="url", tag_field="type"):
    url: str


class ImageBlock(Struct, tag="image", tag_field="type"):
    source: Base64Source | UrlSource


class DocumentBlock(Struct, tag="document", tag_field="type"):
    source: dict[str, Any] | None = None


class ToolUseBlock(Struct, tag="tool_use", tag_field="type"):
    id: NonEmptyStr
    name: NonEmptyStr
    input: dict[str, Any]


class ToolResultBlock(Struct, tag="tool_result", tag_field="type"):
    tool_use_id: NonEmptyStr
    content: str | list[TextBlock | ImageBlock | DocumentBlock] = ""
    is_error: bool = False


class ThinkingBlock(Struct, tag="thinking", tag_field="type"):
    thinking: str = ""
    signature: str = ""


class RedactedThinkingBlock(Struct, tag="redacted_thinking", tag_field="type"):
    data: str = ""


ContentBlock = (
    TextBlock
    | ImageBlock
    | DocumentBlock
    | ToolUseBlock
    | ToolResultBlock
    | ThinkingBlock
    | RedactedThinkingBlock
)


class MessageParam(Struct):
    role: Literal["user", "assistant"]
    content: str | list[ContentBlock]


# Requests: tools and options


class ToolParam(Struct):
    name: NonEmptyStr
    input_schema: dict[str, Any] | None = None
    description: str | None = None
    # Absent or "custom" for the client's own tools; Anthropic's server tools have a versioned
    # type ("web_search_20250305", "bash_20250124", ...).
    type: str | None = None


class ToolChoiceAuto(Struct, tag="auto", tag_field="type"):
    disable_parallel_tool_use: bool = False


class ToolChoiceAny(Struct, tag="any", tag_field="type"):
    disable_parallel_tool_use: bool = False


class ToolChoiceTool(Struct, tag="tool", tag_field="type"):
    name: NonEmptyStr
    disable_parallel_tool_use: bool = False


class ToolChoiceNone(Struct, tag="none", tag_field="type"):
    pass


ToolChoice = ToolChoiceAuto | ToolChoiceAny | ToolChoiceTool | ToolChoiceNone


class ThinkingEnabled(Struct, tag="enabled", tag_field="type"):
    budget_tokens: Annotated[int, Meta(ge=1)]


class ThinkingDisabled(Struct, tag="disabled", tag_field="type"):
    pass


class ThinkingAdaptive(Struct, tag="adaptive", tag_field="type"):
    pass


class ThinkingBetweenTools(Struct, tag="between_tools", tag_field="type"):
    pass


Thinking = ThinkingEnabled | ThinkingDisabled | ThinkingAdaptive | ThinkingBetweenTools


class OutputFormat(Struct, tag="json_schema", tag_field="type"):
    schema: dict[str, Any]


class OutputConfig(Struct):
    effort: Literal["low", "medium", "high", "xhigh", "max"] | None = None
    format: OutputFormat | None = None


class Metadata(Struct):
    user_id: str | None = None


class CountTokensRequest(Struct, kw_only=True):
    """``POST /v1/messages/count_tokens``: a Messages request without the output settings."""

    model: NonEmptyStr
    messages: Annotated[list[MessageParam], Meta(min_length=1)]
    system: str | list[TextBlock] | None = None
    tools: list[ToolParam] | None = None
    tool_choice: ToolChoice | None = None
    thinking: Thinking | None = None
    output_config: OutputConfig | None = None


class MessagesRequest(CountTokensRequest, kw_only=True):
    """``POST /v1/messages``."""

    max_tokens: Annotated[int, Meta(ge=1)]
    temperature: Annotated[float, Meta(ge=0, le=1)] | None = None
    top_p: Annotated[float, Meta(ge=0, le=1)] | None = None
    top_k: Annotated[int, Meta(ge=0)] | None = None
    stop_sequences: list[str] | None = None
    stream: bool = False
    metadata: Metadata | None = None


# Responses


class TextContent(Struct, tag="text", tag_field="type"):
    text: str
    citations: None = None


class ToolUseContent(Struct, tag="tool_use", tag_field="type"):
    id: str
    name: str
    input: dict[str, Any]


ResponseBlock = TextContent | ToolUseContent
StopReason = Literal["end_turn", "max_tokens", "stop_sequence", "tool_use", "refusal"]


class MessageUsage(Struct, omit_defaults=False):
    input_tokens: int
    output_tokens: int
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0


class AnthropicMessage(Struct, tag="message", tag_field="type", omit_defaults=False):
    id: str
    model: str
    content: list[ResponseBlock]
    stop_reason: StopReason | None
    usage: MessageUsage
    role: Literal["assistant"] = "assistant"
    stop_sequence: str | None = None


class TokenCount(Struct):
    input_tokens: int


# Stream events


class MessageStart(Struct, tag="message_start", tag_field="type"):
    message: AnthropicMessage


class Ping(Struct, tag="ping", tag_field="type"):
    pass


class ContentBlockStart(Struct, tag="content_block_start", tag_field="type"):
    index: int
    content_block: ResponseBlock


class TextDelta(Struct, tag="text_delta", tag_field="type"):
    text: str


class InputJsonDelta(Struct, tag="input_json_delta", tag_field="type"):
    partial_json: str


class ContentBlockDelta(Struct, tag="content_block_delta", tag_field="type"):
    index: int
    delta: TextDelta | InputJsonDelta


class ContentBlockStop(Struct, tag="content_block_stop", tag_field="type"):
    index: int


class MessageDeltaBody(Struct, omit_defaults=False):
    stop_reason: StopReason | None
    stop_sequence: str | None = None


class MessageDeltaUsage(Struct):
    """Cumulative counts: the final input and cache counts arrive here, with the output."""

    output_tokens: int
    input_tokens: int
    cache_read_input_tokens: int = 0


class MessageDelta(Struct, tag="message_delta", tag_field="type"):
    delta: MessageDeltaBody
    usage: MessageDeltaUsage


class MessageStop(Struct, tag="message_stop", tag_field="type"):
    pass


# Errors


class AnthropicErrorDetail(Struct):
    type: str
    message: str


class AnthropicErrorBody(Struct, tag="error", tag_field="type"):
    """``{"type": "error", "error": {"type", "message"}}``: bodies and in-stream events alike."""

    error: AnthropicErrorDetail


StreamEvent = (
    MessageStart
    | Ping
    | ContentBlockStart
    | ContentBlockDelta
    | ContentBlockStop
    | MessageDelta
    | MessageStop
    | AnthropicErrorBody
)
ENCODER = msgspec.json.Encoder()
