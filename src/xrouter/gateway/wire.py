"""OpenAI wire format as msgspec structs: decoded with validation, encoded without copies.

Fields that OpenAI leaves out of a body default to ``UNSET`` so that they are not encoded.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

NonEmptyStr = Annotated[str, Meta(min_length=1)]


# Requests: chat completions


class TextPart(Struct, tag="text", tag_field="type"):
    text: str


class ImageURL(Struct):
    url: str
    detail: Literal["auto", "low", "high"] | None = None


class ImagePart(Struct, tag="image_url", tag_field="type"):
    image_url: ImageURL


ContentPart = TextPart | ImagePart
Content = str | list[ContentPart]


class FunctionCall(Struct):
    name: str
    arguments: str


class ToolCall(Struct):
    id: str
    function: FunctionCall
    type: Literal["function"] = "function"


class SystemMessage(Struct, tag="system", tag_field="role"):
    content: Content
    name: str | None = None


class DeveloperMessage(Struct, tag="developer", tag_field="role"):
    content: Content
    name: str | None = None


class UserMessage(Struct, tag="user", tag_field="role"):
    content: Content
    name: str | None = None


class AssistantMessage(Struct, tag="assistant", tag_field="role"):
    content: Content | None = None
    tool_calls: list[ToolCall] | None = None
    name: str | None = None


class ToolMessage(Struct, tag="tool", tag_field="role"):
    content: Content
    tool_call_id: str


Message = SystemMessage | DeveloperMessage | UserMessage | AssistantMessage | ToolMessage


class FunctionDefinition(Struct):
    name: NonEmptyStr
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(Struct):
    function: FunctionDefinition
    type: Literal["function"] = "function"


class ToolChoiceFunction(Struct):
    name: NonEmptyStr


class NamedToolChoice(Struct):
    function: ToolChoiceFunction
    type: Literal["function"] = "function"


ToolChoice = Literal["none", "auto", "required"] | NamedToolChoice


class StreamOptions(Struct):
    include_usage: bool = False


class JsonSchemaFormat(Struct):
    name: str
    schema: dict[str, Any] | None = None
    description: str | None = None
    strict: bool | None = None


class ResponseFormat(Struct):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None


class ProviderPreferences(Struct):
    """OpenRouter's ``provider`` object: which providers may serve a request, in which order."""

    order: list[NonEmptyStr] | None = None
    allow_fallbacks: bool = True
    only: list[NonEmptyStr] | None = None
    ignore: list[NonEmptyStr] | None = None
    sort: Literal["price", "latency", "throughput"] | None = None
    # XRouter never drops a parameter a provider cannot honour, so this is always in effect.
    require_parameters: bool | None = None


Temperature = Annotated[float, Meta(ge=0, le=2)]
Probability = Annotated[float, Meta(ge=0, le=1)]
Penalty = Annotated[float, Meta(ge=-2, le=2)]
PositiveInt = Annotated[int, Meta(ge=1)]


class ChatCompletionRequest(Struct, kw_only=True):
    model: NonEmptyStr
    messages: Annotated[list[Message], Meta(min_length=1)]
    temperature: Temperature | None = None
    top_p: Probability | None = None
    n: Annotated[int, Meta(ge=1, le=128)] | None = None
    max_tokens: PositiveInt | None = None
    max_completion_tokens: PositiveInt | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: str | Annotated[list[str], Meta(max_length=4)] | None = None
    presence_penalty: Penalty | None = None
    frequency_penalty: Penalty | None = None
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    seed: int | None = None
    user: str | None = None
    reasoning_effort: Literal["none", "minimal", "low", "medium", "high", "xhigh"] | None = None
    # GigaChat's own sampling knob, accepted as an extra field like other gateways do.
    repetition_penalty: Annotated[float, Meta(gt=0)] | None = None
    # OpenRouter's routing fields: fallback models after ``model``, and provider preferences.
    models: Annotated[list[NonEmptyStr], Meta(max_length=16)] | None = None
    provider: ProviderPreferences | None = None

    @property
    def output_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    @property
    def include_usage_in_stream(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage


# Responses: chat completions


class PromptTokensDetails(Struct):
    cached_tokens: int = 0


class CompletionTokensDetails(Struct):
    reasoning_tokens: int = 0


class Usage(Struct):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails | UnsetType = UNSET
    completion_tokens_details: CompletionTokensDetails | UnsetType = UNSET


class ResponseMessage(Struct):
    content: str | None
    role: Literal["assistant"] = "assistant"
    tool_calls: list[ToolCall] | UnsetType = UNSET
    refusal: None = None


class Choice(Struct):
    index: int
    message: ResponseMessage
    finish_reason: str | None
    logprobs: None = None


class ChatCompletion(Struct):
    id: str
    created: int
    model: str
    choices: list[Choice]
    usage: Usage | None
    object: Literal["chat.completion"] = "chat.completion"
    system_fingerprint: str | None = None


class FunctionCallDelta(Struct):
    name: str | UnsetType = UNSET
    arguments: str | UnsetType = UNSET


class ToolCallDelta(Struct):
    index: int
    id: str | UnsetType = UNSET
    type: Literal["function"] | UnsetType = UNSET
    function: FunctionCallDelta | UnsetType = UNSET


class Delta(Struct):
    role: Literal["assistant"] | UnsetType = UNSET
    content: str | UnsetType | None = UNSET
    tool_calls: list[ToolCallDelta] | UnsetType = UNSET


class ChunkChoice(Struct):
    index: int
    delta: Delta
    finish_reason: str | None = None
    logprobs: None = None


class ChatCompletionChunk(Struct):
    id: str
    created: int
    model: str
    choices: list[ChunkChoice]
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    system_fingerprint: str | UnsetType | None = UNSET
    usage: Usage | UnsetType | None = UNSET


# Embeddings


class EmbeddingsRequest(Struct, kw_only=True):
    model: NonEmptyStr
    # A string, a list of strings, or token arrays; msgspec allows one array type per union.
    input: (
        Annotated[str, Meta(min_length=1)]
        | Annotated[list[Any], Meta(min_length=1, max_length=2048)]
    )
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: PositiveInt | None = None
    user: str | None = None

    def texts(self) -> list[str] | None:
        """The inputs as text, or None when they are token arrays (which providers cannot take)."""
        if isinstance(self.input, str):
            return [self.input]
        if all(isinstance(item, str) for item in self.input):
            return list(self.input)
        return None


class Embedding(Struct):
    index: int
    embedding: list[float] | str
    object: Literal["embedding"] = "embedding"


class EmbeddingsUsage(Struct):
    prompt_tokens: int
    total_tokens: int


class EmbeddingsResponse(Struct):
    data: list[Embedding]
    model: str
    usage: EmbeddingsUsage
    object: Literal["list"] = "list"


# Models


class ModelCard(Struct):
    id: str
    owned_by: str
    created: int = 0
    object: Literal["model"] = "model"
    # XRouter extras: what kind of model it is and whether an emulator serves it.
    type: Literal["chat", "embeddings"] = "chat"
    emulated: bool = False


class ModelList(Struct):
    data: list[ModelCard]
    object: Literal["list"] = "list"


WIRE_ENCODER = msgspec.json.Encoder()
