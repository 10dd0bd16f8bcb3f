"""OpenAI Responses <-> the gateway's chat requests and completions.

``input`` items become chat messages: consecutive ``function_call`` items (and the assistant
text before them) become one assistant message with several tool calls, each
``function_call_output`` a tool message. ``call_id`` is the chat tool-call id unchanged, so a
provider's derived ids (GigaChat's carry its function state) survive the round trip.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec

from xrouter.errors import InvalidRequestError
from xrouter.gateway.responses.wire import (
    ContentItem,
    FunctionCallItem,
    FunctionCallOutput,
    FunctionCallOutputItem,
    IncompleteDetails,
    InputImage,
    InputItem,
    InputText,
    InputTokensDetails,
    MessageItem,
    OutputItem,
    OutputMessage,
    OutputText,
    OutputTokensDetails,
    ReasoningItem,
    Refusal,
    ResponsesRequest,
    ResponseUsage,
    ToolChoiceMode,
    ToolChoiceObject,
    ToolDefinition,
)
from xrouter.gateway.wire import (
    AssistantMessage,
    ChatCompletion,
    ChatCompletionRequest,
    CompletionTokensDetails,
    ContentPart,
    DeveloperMessage,
    FunctionCall,
    FunctionDefinition,
    ImagePart,
    ImageURL,
    JsonSchemaFormat,
    Message,
    NamedToolChoice,
    PromptTokensDetails,
    ResponseFormat,
    StreamOptions,
    SystemMessage,
    TextPart,
    Tool,
    ToolCall,
    ToolChoice,
    ToolChoiceFunction,
    ToolMessage,
    Usage,
    UserMessage,
)

# Chat fields a provider may name in an error, as the Responses API calls them.
PARAM_NAMES = {
    "max_tokens": "max_output_tokens",
    "max_completion_tokens": "max_output_tokens",
    "reasoning_effort": "reasoning.effort",
    "response_format": "text.format",
}
_REFUSED = ("background", "conversation", "prompt", "max_tool_calls")


@dataclass(slots=True)
class Translation:
    """A Responses request as a chat request. ``conversation`` is what a stored response keeps
    (everything but ``instructions``); ``origins[i]`` is where chat message ``i`` came from."""

    chat: ChatCompletionRequest
    conversation: list[Message]
    origins: list[str] = field(default_factory=list)


def chat_request(request: ResponsesRequest, history: list[Message]) -> Translation:
    """The chat request for a Responses request continuing ``history`` (a stored response's
    conversation, or empty); 400 for what cannot be served."""
    _refuse_unsupported(request)
    new, origins = _input_messages(request.input)
    conversation = [*history, *new]
    if not conversation:
        raise InvalidRequestError(
            "'input' is empty; send at least one message.", param="input", code="invalid_value"
        )
    prefix: list[Message] = [SystemMessage(request.instructions)] if request.instructions else []
    messages = [*prefix, *conversation]
    all_origins = [
        *(["instructions"] * len(prefix)),
        *(["previous_response_id"] * len(history)),
        *origins,
    ]
    tools = _tools(request.tools)
    parallel = request.parallel_tool_calls
    chat = ChatCompletionRequest(
        model=request.model,
        messages=messages,
        max_tokens=request.max_output_tokens,
        temperature=request.temperature,
        top_p=request.top_p,
        tools=tools,
        tool_choice=_tool_choice(request.tool_choice),
        # The Responses API allows parallel calls unless told otherwise.
        parallel_tool_calls=(parallel is not False) if tools else parallel,
        response_format=_response_format(request),
        reasoning_effort=request.reasoning.effort if request.reasoning else None,
        user=request.user or request.safety_identifier,
    )
    if request.stream:
        chat.stream = True
        chat.stream_options = StreamOptions(include_usage=True)
    return Translation(chat, conversation, all_origins)


def _refuse_unsupported(request: ResponsesRequest) -> None:
    for name in _REFUSED:
        if getattr(request, name) not in (None, False):
            raise InvalidRequestError(
                f"'{name}' is not supported by this gateway.",
                param=name,
                code="unsupported_parameter",
            )
    if request.top_logprobs:
        raise InvalidRequestError(
            "Log probabilities are not available from GigaChat or YandexGPT.",
            param="top_logprobs",
            code="unsupported_parameter",
        )


def input_item(raw: dict[str, object], index: int) -> InputItem:
    """One ``input`` item, validated; the short message form (no ``type``) is a message."""
    if "type" not in raw and "role" in raw:
        raw = {**raw, "type": "message"}
    try:
        item: InputItem = msgspec.convert(raw, InputItem)
        return item
    except msgspec.ValidationError as error:
        # msgspec says "Expected `str`, got `int` - at `$.call_id`": the path is the item's.
        problem, _, path = str(error).partition(" - at `$")
        where = f"input[{index}]{path.rstrip('`')}"
        raise InvalidRequestError(
            f"Invalid value for '{where}': {problem}.", param=where, code="invalid_value"
        ) from None


def _input_messages(value: str | list[dict[str, object]]) -> tuple[list[Message], list[str]]:
    if isinstance(value, str):
        return ([UserMessage(value)], ["input"]) if value else ([], [])
    builder = _Conversation()
    for index, raw in enumerate(value):
        where = f"input[{index}]"
        item = input_item(raw, index)
        if isinstance(item, MessageItem):
            builder.message(item, where)
        elif isinstance(item, FunctionCallItem):
            builder.call(ToolCall(item.call_id, FunctionCall(item.name, item.arguments)), where)
        elif isinstance(item, FunctionCallOutputItem):
            output = _text(item.output, f"{where}.output")
            builder.add(ToolMessage(output, item.call_id), where)
        elif isinstance(item, ReasoningItem):
            # Another model's reasoning: the providers here neither take nor need it.
            continue
        else:
            raise InvalidRequestError(
                "Item references need the items stored server-side; send the items themselves.",
                param=where,
                code="unsupported_value",
            )
    builder.flush()
    return builder.messages, builder.origins


class _Conversation:
    """Chat messages being built; an assistant turn stays open to collect its calls."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.origins: list[str] = []
        self._assistant: AssistantMessage | None = None
        self._assistant_origin = ""

    def message(self, item: MessageItem, where: str) -> None:
        self.flush()
        if item.role == "assistant":
            self._assistant = AssistantMessage(content=_text(item.content, f"{where}.content"))
            self._assistant_origin = where
            return
        content = _content(item.content, f"{where}.content")
        if item.role == "system":
            self.add(SystemMessage(content), where)
        elif item.role == "developer":
            self.add(DeveloperMessage(content), where)
        else:
            self.add(UserMessage(content), where)

    def call(self, call: ToolCall, where: str) -> None:
        if self._assistant is None:
            self._assistant = AssistantMessage()
            self._assistant_origin = where
        if self._assistant.tool_calls is None:
            self._assistant.tool_calls = []
        self._assistant.tool_calls.append(call)

    def add(self, message: Message, where: str) -> None:
        self.flush()
        self.messages.append(message)
        self.origins.append(where)

    def flush(self) -> None:
        if self._assistant is not None:
            self.messages.append(self._assistant)
            self.origins.append(self._assistant_origin)
            self._assistant = None


def _content(content: str | list[ContentItem], where: str) -> str | list[ContentPart]:
    if isinstance(content, str):
        return content
    parts: list[ContentPart] = []
    for index, part in enumerate(content):
        if isinstance(part, InputText | OutputText):
            parts.append(TextPart(part.text))
        elif isinstance(part, Refusal):
            parts.append(TextPart(part.refusal))
        elif isinstance(part, InputImage) and part.image_url:
            parts.append(ImagePart(ImageURL(part.image_url)))
        else:
            raise InvalidRequestError(
                "Files (and images by file_id) need OpenAI's file storage; send images as "
                "image_url.",
                param=f"{where}[{index}]",
                code="unsupported_content",
            )
    if all(isinstance(part, TextPart) for part in parts):
        return "".join(part.text for part in parts if isinstance(part, TextPart))
    return parts


def _text(content: str | list[ContentItem], where: str) -> str:
    converted = _content(content, where)
    if isinstance(converted, str):
        return converted
    raise InvalidRequestError(
        "Only text is accepted here.", param=where, code="unsupported_content"
    )


def _tools(tools: list[ToolDefinition] | None) -> list[Tool] | None:
    if not tools:
        return None
    converted = []
    for index, tool in enumerate(tools):
        if tool.type != "function":
            raise InvalidRequestError(
                f"Tools of type '{tool.type}' are not available through this gateway; only "
                "'function' tools are.",
                param=f"tools[{index}].type",
                code="unsupported_tool",
            )
        if not tool.name:
            raise InvalidRequestError(
                f"Missing required parameter: 'tools[{index}].name'.",
                param=f"tools[{index}].name",
                code="invalid_value",
            )
        definition = FunctionDefinition(tool.name, tool.description, tool.parameters, tool.strict)
        converted.append(Tool(definition))
    return converted


def _tool_choice(choice: ToolChoiceMode | ToolChoiceObject | None) -> ToolChoice | None:
    if not isinstance(choice, ToolChoiceObject):
        return choice
    if choice.type != "function" or not choice.name:
        raise InvalidRequestError(
            "tool_choice can be 'none', 'auto', 'required' or a function "
            '({"type": "function", "name": ...}) through this gateway.',
            param="tool_choice",
            code="unsupported_value",
        )
    return NamedToolChoice(ToolChoiceFunction(choice.name))


def _response_format(request: ResponsesRequest) -> ResponseFormat | None:
    text_format = request.text.format if request.text else None
    if text_format is None or text_format.type == "text":
        return None
    if text_format.type == "json_object":
        return ResponseFormat("json_object")
    schema = JsonSchemaFormat(
        text_format.name or "response",
        text_format.schema,
        text_format.description,
        text_format.strict,
    )
    return ResponseFormat("json_schema", schema)


# Responses


def output_items(completion: ChatCompletion, message_id: str) -> list[OutputItem]:
    """A chat completion's message as Responses output items: text, then function calls."""
    message = completion.choices[0].message
    items: list[OutputItem] = []
    if message.content:
        items.append(OutputMessage(message_id, [OutputText(message.content)]))
    for call in message.tool_calls or []:
        items.append(function_call_item(call))
    return items


def function_call_item(call: ToolCall, status: str = "completed") -> FunctionCallOutput:
    return FunctionCallOutput(
        f"fc_{call.id}",
        call.id,
        call.function.name,
        call.function.arguments,
        status,  # type: ignore[arg-type]
    )


def assistant_message(items: list[OutputItem]) -> AssistantMessage:
    """The output items as the assistant turn a stored conversation continues from."""
    text = "".join(
        part.text for item in items if isinstance(item, OutputMessage) for part in item.content
    )
    calls = [
        ToolCall(item.call_id, FunctionCall(item.name, item.arguments))
        for item in items
        if isinstance(item, FunctionCallOutput)
    ]
    return AssistantMessage(content=text or None, tool_calls=calls or None)


def incomplete_details(finish_reason: str | None) -> IncompleteDetails | None:
    if finish_reason == "length":
        return IncompleteDetails("max_output_tokens")
    if finish_reason == "content_filter":
        return IncompleteDetails("content_filter")
    return None


def response_usage(usage: Usage | None) -> ResponseUsage | None:
    if usage is None:
        return None
    prompt_details = usage.prompt_tokens_details
    completion_details = usage.completion_tokens_details
    cached = prompt_details.cached_tokens if isinstance(prompt_details, PromptTokensDetails) else 0
    reasoning = (
        completion_details.reasoning_tokens
        if isinstance(completion_details, CompletionTokensDetails)
        else 0
    )
    return ResponseUsage(
        input_tokens=usage.prompt_tokens,
        output_tokens=usage.completion_tokens,
        total_tokens=usage.total_tokens,
        input_tokens_details=InputTokensDetails(cached),
        output_tokens_details=OutputTokensDetails(reasoning),
    )
