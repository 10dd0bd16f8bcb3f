"""Anthropic Messages <-> the gateway's chat requests and completions.

A Messages request becomes the ``ChatCompletionRequest`` every provider already takes, so the
pipeline (keys, limits, routing, usage) and each provider's tool handling are the same ones.
``tool_use`` ids are the chat tool-call ids unchanged: the ids a provider derives (GigaChat's
carry its function state) come back intact on the next turn.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec

from xrouter.errors import InvalidRequestError, UpstreamError
from xrouter.gateway.anthropic.wire import (
    AnthropicMessage,
    Base64Source,
    CountTokensRequest,
    ImageBlock,
    MessageParam,
    MessagesRequest,
    MessageUsage,
    OutputConfig,
    RedactedThinkingBlock,
    ResponseBlock,
    StopReason,
    TextBlock,
    TextContent,
    ThinkingBlock,
    ThinkingEnabled,
    ToolChoice,
    ToolChoiceAny,
    ToolChoiceNone,
    ToolChoiceTool,
    ToolParam,
    ToolResultBlock,
    ToolUseBlock,
    ToolUseContent,
)
from xrouter.gateway.wire import (
    AssistantMessage,
    ChatCompletion,
    ChatCompletionRequest,
    ContentPart,
    FunctionCall,
    FunctionDefinition,
    ImagePart,
    ImageURL,
    JsonSchemaFormat,
    NamedToolChoice,
    PromptTokensDetails,
    ResponseFormat,
    StreamOptions,
    SystemMessage,
    TextPart,
    Tool,
    ToolCall,
    ToolChoiceFunction,
    ToolMessage,
    Usage,
    UserMessage,
)
from xrouter.gateway.wire import (
    ToolChoice as ChatToolChoice,
)

STOP_REASONS: dict[str, StopReason] = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "content_filter": "refusal",
}
# Chat fields a provider may name in an error, as the Messages API calls them.
PARAM_NAMES = {
    "stop": "stop_sequences",
    "reasoning_effort": "output_config.effort",
    "response_format": "output_config.format",
    "parallel_tool_calls": "tool_choice",
    "user": "metadata.user_id",
}
# Thinking budgets -> reasoning efforts: the providers take a level, not a budget.
Effort = Literal["low", "medium", "high"]
_EFFORT_BUDGETS: tuple[tuple[int, Effort], ...] = ((4096, "low"), (16384, "medium"))
_CLIENT_TOOL_TYPES = frozenset({"custom"})


@dataclass(slots=True)
class Translation:
    """A Messages request as a chat request; ``origins[i]`` is where chat message ``i`` came
    from, so errors about the chat request point at the client's own fields."""

    chat: ChatCompletionRequest
    origins: list[str] = field(default_factory=list)


def chat_request(request: CountTokensRequest) -> Translation:
    """The chat request for a Messages (or count_tokens) request; 400 for what cannot map."""
    translation = Translation(ChatCompletionRequest(model=request.model, messages=[]))
    messages = translation.chat.messages
    if request.system:
        system = request.system
        text = system if isinstance(system, str) else "\n\n".join(b.text for b in system)
        messages.append(SystemMessage(content=text))
        translation.origins.append("system")
    for index, message in enumerate(request.messages):
        where = f"messages[{index}]"
        if message.role == "user":
            _user_turn(message, where, translation)
        else:
            messages.append(_assistant_turn(message, where))
            translation.origins.append(where)
    chat = translation.chat
    chat.tools = _tools(request.tools)
    chat.tool_choice = _tool_choice(request.tool_choice)
    if chat.tools:
        # Anthropic lets a model call several tools at once unless the client says otherwise.
        choice = request.tool_choice
        chat.parallel_tool_calls = not getattr(choice, "disable_parallel_tool_use", False)
    if isinstance(request.thinking, ThinkingEnabled):
        chat.reasoning_effort = _effort(request.thinking.budget_tokens)
    _output_config(request.output_config, chat)
    if isinstance(request, MessagesRequest):
        _options(request, chat)
    return translation


def _options(request: MessagesRequest, chat: ChatCompletionRequest) -> None:
    if request.top_k is not None:
        raise InvalidRequestError(
            "top_k is not supported: neither GigaChat nor YandexGPT has top-k sampling.",
            param="top_k",
            code="unsupported_parameter",
        )
    chat.max_tokens = request.max_tokens
    chat.temperature = request.temperature
    chat.top_p = request.top_p
    chat.stop = request.stop_sequences or None
    chat.user = request.metadata.user_id if request.metadata else None
    if request.stream:
        chat.stream = True
        # The closing message_delta carries the usage, so it is always asked for.
        chat.stream_options = StreamOptions(include_usage=True)


def _output_config(config: OutputConfig | None, chat: ChatCompletionRequest) -> None:
    if config is None:
        return
    if config.effort is not None:
        # The chat API's top level is "xhigh"; a provider without it refuses it by name.
        chat.reasoning_effort = "xhigh" if config.effort == "max" else config.effort
    if config.format is not None:
        chat.response_format = ResponseFormat(
            "json_schema", JsonSchemaFormat("output", config.format.schema)
        )


def _blocks(message: MessageParam) -> list[Any]:
    content = message.content
    return [TextBlock(content)] if isinstance(content, str) else list(content)


def _user_turn(message: MessageParam, where: str, translation: Translation) -> None:
    """Tool results become tool messages (Anthropic puts them first in a user turn); the rest
    of the turn becomes one user message after them."""
    parts: list[ContentPart] = []
    for number, block in enumerate(_blocks(message)):
        path = f"{where}.content[{number}]"
        if isinstance(block, ToolResultBlock):
            content = _tool_result_text(block, path)
            translation.chat.messages.append(ToolMessage(content, block.tool_use_id))
            translation.origins.append(path)
        elif isinstance(block, TextBlock):
            parts.append(TextPart(block.text))
        elif isinstance(block, ImageBlock):
            parts.append(ImagePart(ImageURL(_image_url(block))))
        else:
            raise _unsupported_block(block, path, "user")
    if not parts:
        return
    if all(isinstance(part, TextPart) for part in parts):
        text = "\n\n".join(part.text for part in parts if isinstance(part, TextPart))
        translation.chat.messages.append(UserMessage(content=text))
    else:
        translation.chat.messages.append(UserMessage(content=parts))
    translation.origins.append(where)


def _assistant_turn(message: MessageParam, where: str) -> AssistantMessage:
    texts: list[str] = []
    calls: list[ToolCall] = []
    for number, block in enumerate(_blocks(message)):
        if isinstance(block, TextBlock):
            texts.append(block.text)
        elif isinstance(block, ToolUseBlock):
            arguments = json.dumps(block.input, ensure_ascii=False, separators=(",", ":"))
            calls.append(ToolCall(block.id, FunctionCall(block.name, arguments)))
        elif isinstance(block, ThinkingBlock | RedactedThinkingBlock):
            # Another model's reasoning: the providers here neither take nor need it.
            continue
        else:
            raise _unsupported_block(block, f"{where}.content[{number}]", "assistant")
    return AssistantMessage(content="\n\n".join(texts) or None, tool_calls=calls or None)


def _unsupported_block(block: msgspec.Struct, path: str, role: str) -> InvalidRequestError:
    kind = block.__struct_config__.tag
    return InvalidRequestError(
        f"A {role} message cannot carry a '{kind}' block through this gateway.",
        param=path,
        code="unsupported_content",
    )


def _tool_result_text(block: ToolResultBlock, path: str) -> str:
    if isinstance(block.content, str):
        text = block.content
    else:
        texts = []
        for number, part in enumerate(block.content):
            if not isinstance(part, TextBlock):
                raise InvalidRequestError(
                    "Tool results can carry text only through this gateway.",
                    param=f"{path}.content[{number}]",
                    code="unsupported_content",
                )
            texts.append(part.text)
        text = "\n\n".join(texts)
    # The chat format has no error flag; the result says it failed in a form models read.
    return json.dumps({"error": text}, ensure_ascii=False) if block.is_error else text


def _image_url(block: ImageBlock) -> str:
    source = block.source
    if isinstance(source, Base64Source):
        return f"data:{source.media_type};base64,{source.data}"
    return source.url


def _tools(tools: list[ToolParam] | None) -> list[Tool] | None:
    if not tools:
        return None
    converted = []
    for index, tool in enumerate(tools):
        if tool.type is not None and tool.type not in _CLIENT_TOOL_TYPES:
            raise InvalidRequestError(
                f"The server tool '{tool.type}' is not available through this gateway; only "
                "client tools (name, description, input_schema) are.",
                param=f"tools[{index}].type",
                code="unsupported_tool",
            )
        if tool.input_schema is None:
            raise InvalidRequestError(
                f"Missing required parameter: 'tools[{index}].input_schema'.",
                param=f"tools[{index}].input_schema",
                code="invalid_value",
            )
        definition = FunctionDefinition(tool.name, tool.description, tool.input_schema)
        converted.append(Tool(definition))
    return converted


def _tool_choice(choice: ToolChoice | None) -> ChatToolChoice | None:
    """``any`` is the chat API's ``required``: a provider that cannot force a call among
    several tools refuses it with 400 rather than letting the model answer in text."""
    if choice is None:
        return None
    if isinstance(choice, ToolChoiceNone):
        return "none"
    if isinstance(choice, ToolChoiceAny):
        return "required"
    if isinstance(choice, ToolChoiceTool):
        return NamedToolChoice(ToolChoiceFunction(choice.name))
    return "auto"


def _effort(budget: int) -> Effort:
    for limit, effort in _EFFORT_BUDGETS:
        if budget <= limit:
            return effort
    return "high"


# Responses


def message_from(completion: ChatCompletion, message_id: str, model: str) -> AnthropicMessage:
    """A chat completion as an Anthropic message."""
    choice = completion.choices[0]
    blocks: list[ResponseBlock] = []
    if choice.message.content:
        blocks.append(TextContent(choice.message.content))
    for call in choice.message.tool_calls or []:
        blocks.append(ToolUseContent(call.id, call.function.name, tool_input(call.function)))
    return AnthropicMessage(
        id=message_id,
        model=model,
        content=blocks,
        stop_reason=stop_reason(choice.finish_reason),
        usage=message_usage(completion.usage),
    )


def stop_reason(finish_reason: str | None) -> StopReason:
    return STOP_REASONS.get(finish_reason or "stop", "end_turn")


def message_usage(usage: Usage | None) -> MessageUsage:
    """Anthropic counts cache reads apart from ``input_tokens``; the chat API includes them."""
    if usage is None:
        return MessageUsage(0, 0)
    details = usage.prompt_tokens_details
    cached = details.cached_tokens if isinstance(details, PromptTokensDetails) else 0
    return MessageUsage(
        input_tokens=usage.prompt_tokens - cached,
        output_tokens=usage.completion_tokens,
        cache_read_input_tokens=cached,
    )


def tool_input(call: FunctionCall) -> dict[str, Any]:
    """A tool call's arguments as the object Anthropic's ``tool_use.input`` is."""
    try:
        value = json.loads(call.arguments or "{}")
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise UpstreamError(
            f"The model called '{call.name}' with arguments that are not a JSON object.",
            provider="gateway",
            status=502,
            retryable=True,
            code="upstream_invalid_function_call",
        )
    return value
