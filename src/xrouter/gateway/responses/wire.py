"""OpenAI Responses API wire format as msgspec structs.

``input`` items are decoded one by one (``translate.input_item``): OpenAI's short message form
has no ``type`` field, so the items cannot be one tagged union at the top level. Fields the
gateway does not read (``include``, ``prompt_cache_key``, ``service_tier``, ...) are ignored.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct

NonEmptyStr = Annotated[str, Meta(min_length=1)]
PositiveInt = Annotated[int, Meta(ge=1)]


# Requests: input items


class InputText(Struct, tag="input_text", tag_field="type"):
    text: str


class OutputText(Struct, tag="output_text", tag_field="type"):
    text: str
    annotations: list[Any] = msgspec.field(default_factory=list)
    logprobs: list[Any] = msgspec.field(default_factory=list)


class InputImage(Struct, tag="input_image", tag_field="type"):
    image_url: str | None = None
    file_id: str | None = None
    detail: str = "auto"


class InputFile(Struct, tag="input_file", tag_field="type"):
    file_id: str | None = None


class Refusal(Struct, tag="refusal", tag_field="type"):
    refusal: str


ContentItem = InputText | OutputText | InputImage | InputFile | Refusal


class MessageItem(Struct, tag="message", tag_field="type"):
    role: Literal["user", "assistant", "system", "developer"]
    content: str | list[ContentItem]


class FunctionCallItem(Struct, tag="function_call", tag_field="type"):
    call_id: NonEmptyStr
    name: NonEmptyStr
    arguments: str


class FunctionCallOutputItem(Struct, tag="function_call_output", tag_field="type"):
    call_id: NonEmptyStr
    output: str | list[ContentItem]


class ReasoningItem(Struct, tag="reasoning", tag_field="type"):
    id: str | None = None


class ItemReference(Struct, tag="item_reference", tag_field="type"):
    id: str


InputItem = MessageItem | FunctionCallItem | FunctionCallOutputItem | ReasoningItem | ItemReference


# Requests: tools and options


class ToolDefinition(Struct):
    """A tool as sent; only ``function`` tools can be served, the others are refused."""

    type: str
    name: str | None = None
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


ToolChoiceMode = Literal["none", "auto", "required"]


class ToolChoiceObject(Struct):
    type: str
    name: str | None = None


class TextFormat(Struct):
    type: Literal["text", "json_object", "json_schema"]
    name: str | None = None
    schema: dict[str, Any] | None = None
    description: str | None = None
    strict: bool | None = None


class TextConfig(Struct):
    format: TextFormat | None = None
    verbosity: str | None = None


class Reasoning(Struct):
    effort: Literal["none", "minimal", "low", "medium", "high", "xhigh"] | None = None
    summary: str | None = None


class ResponsesRequest(Struct, kw_only=True):
    """``POST /v1/responses``."""

    model: NonEmptyStr
    input: str | list[dict[str, Any]] = msgspec.field(default_factory=list)
    instructions: str | None = None
    max_output_tokens: PositiveInt | None = None
    temperature: Annotated[float, Meta(ge=0, le=2)] | None = None
    top_p: Annotated[float, Meta(ge=0, le=1)] | None = None
    tools: list[ToolDefinition] | None = None
    tool_choice: ToolChoiceMode | ToolChoiceObject | None = None
    parallel_tool_calls: bool | None = None
    stream: bool = False
    store: bool = True
    previous_response_id: str | None = None
    reasoning: Reasoning | None = None
    text: TextConfig | None = None
    metadata: dict[str, str] | None = None
    user: str | None = None
    safety_identifier: str | None = None
    truncation: Literal["auto", "disabled"] | None = None
    # Refused when set: the gateway has no server-side state or tooling for them.
    background: bool | None = None
    conversation: Any = None
    prompt: Any = None
    max_tool_calls: int | None = None
    top_logprobs: int | None = None


# Responses


class OutputMessage(Struct, tag="message", tag_field="type"):
    id: str
    content: list[OutputText]
    status: Literal["in_progress", "completed", "incomplete"] = "completed"
    role: Literal["assistant"] = "assistant"


class FunctionCallOutput(Struct, tag="function_call", tag_field="type"):
    id: str
    call_id: str
    name: str
    arguments: str
    status: Literal["in_progress", "completed", "incomplete"] = "completed"


OutputItem = OutputMessage | FunctionCallOutput


class InputTokensDetails(Struct):
    cached_tokens: int = 0


class OutputTokensDetails(Struct):
    reasoning_tokens: int = 0


class ResponseUsage(Struct):
    input_tokens: int
    output_tokens: int
    total_tokens: int
    input_tokens_details: InputTokensDetails
    output_tokens_details: OutputTokensDetails


class IncompleteDetails(Struct):
    reason: Literal["max_output_tokens", "content_filter"]


class ResponseError(Struct):
    code: str
    message: str


class ResponseObject(Struct, kw_only=True, omit_defaults=False):
    id: str
    created_at: int
    model: str
    status: Literal["in_progress", "completed", "incomplete", "failed"]
    output: list[OutputItem]
    usage: ResponseUsage | None = None
    error: ResponseError | None = None
    incomplete_details: IncompleteDetails | None = None
    instructions: str | None = None
    max_output_tokens: int | None = None
    parallel_tool_calls: bool = True
    previous_response_id: str | None = None
    temperature: float | None = None
    top_p: float | None = None
    tool_choice: str | ToolChoiceObject = "auto"
    tools: list[ToolDefinition] = msgspec.field(default_factory=list)
    store: bool = True
    metadata: dict[str, str] = msgspec.field(default_factory=dict)
    object: Literal["response"] = "response"


# Stream events (each carries the stream's running ``sequence_number``)


class ResponseCreated(Struct, tag="response.created", tag_field="type"):
    response: ResponseObject
    sequence_number: int = 0


class ResponseInProgress(Struct, tag="response.in_progress", tag_field="type"):
    response: ResponseObject
    sequence_number: int = 0


class OutputItemAdded(Struct, tag="response.output_item.added", tag_field="type"):
    output_index: int
    item: OutputItem
    sequence_number: int = 0


class ContentPartAdded(Struct, tag="response.content_part.added", tag_field="type"):
    item_id: str
    output_index: int
    content_index: int
    part: OutputText
    sequence_number: int = 0


class OutputTextDelta(Struct, tag="response.output_text.delta", tag_field="type"):
    item_id: str
    output_index: int
    content_index: int
    delta: str
    logprobs: list[Any] = msgspec.field(default_factory=list)
    sequence_number: int = 0


class OutputTextDone(Struct, tag="response.output_text.done", tag_field="type"):
    item_id: str
    output_index: int
    content_index: int
    text: str
    logprobs: list[Any] = msgspec.field(default_factory=list)
    sequence_number: int = 0


class ContentPartDone(Struct, tag="response.content_part.done", tag_field="type"):
    item_id: str
    output_index: int
    content_index: int
    part: OutputText
    sequence_number: int = 0


class ArgumentsDelta(Struct, tag="response.function_call_arguments.delta", tag_field="type"):
    item_id: str
    output_index: int
    delta: str
    sequence_number: int = 0


class ArgumentsDone(Struct, tag="response.function_call_arguments.done", tag_field="type"):
    item_id: str
    output_index: int
    name: str
    arguments: str
    sequence_number: int = 0


class OutputItemDone(Struct, tag="response.output_item.done", tag_field="type"):
    output_index: int
    item: OutputItem
    sequence_number: int = 0


class ResponseCompleted(Struct, tag="response.completed", tag_field="type"):
    response: ResponseObject
    sequence_number: int = 0


class ResponseIncomplete(Struct, tag="response.incomplete", tag_field="type"):
    response: ResponseObject
    sequence_number: int = 0


class ResponseFailed(Struct, tag="response.failed", tag_field="type"):
    response: ResponseObject
    sequence_number: int = 0


StreamEvent = (
    ResponseCreated
    | ResponseInProgress
    | OutputItemAdded
    | ContentPartAdded
    | OutputTextDelta
    | OutputTextDone
    | ContentPartDone
    | ArgumentsDelta
    | ArgumentsDone
    | OutputItemDone
    | ResponseCompleted
    | ResponseIncomplete
    | ResponseFailed
)
ENCODER = msgspec.json.Encoder()
