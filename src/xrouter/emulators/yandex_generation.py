"""What the YandexGPT emulator answers: ``CompletionResponse`` messages built from a request.

Everything here works on the protobuf messages of the ``yandexcloud`` package, so every face
(REST, gRPC, OpenAI-compatible) renders the same answer. Replies are deterministic: the same
request always gives the same text, tool calls and token counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from google.protobuf import json_format
from google.protobuf.struct_pb2 import Struct
from yandex.cloud.ai.foundation_models.v1.text_common_pb2 import (
    Alternative,
    ContentUsage,
    FunctionCall,
    FunctionTool,
    Message,
    ReasoningOptions,
    ToolCall,
    ToolCallList,
    ToolChoice,
)
from yandex.cloud.ai.foundation_models.v1.text_generation.text_generation_service_pb2 import (
    CompletionRequest,
    CompletionResponse,
)

from xrouter.emulators import replies
from xrouter.emulators.http import EmulatedApiError, encode

# A user message containing this marker is answered the way Yandex answers a prompt its
# content filter refuses: a replacement text with the CONTENT_FILTER status.
CONTENT_FILTER_MARKER = "[content-filter]"
# A last user message starting with this marker is answered with the rest of it, verbatim:
# clients can then check a long or unusual reply (say, a long Cyrillic one) exactly.
ECHO_MARKER = "[echo]"
CONTENT_FILTER_TEXT = (
    "К сожалению, я не могу ответить на этот вопрос. Давайте поговорим о чём-нибудь другом."
)
_ROLES = frozenset({"system", "user", "assistant"})

PARTIAL = Alternative.ALTERNATIVE_STATUS_PARTIAL
FINAL = Alternative.ALTERNATIVE_STATUS_FINAL
TRUNCATED_FINAL = Alternative.ALTERNATIVE_STATUS_TRUNCATED_FINAL
CONTENT_FILTER = Alternative.ALTERNATIVE_STATUS_CONTENT_FILTER
TOOL_CALLS = Alternative.ALTERNATIVE_STATUS_TOOL_CALLS


def check_completion_request(request: CompletionRequest) -> None:
    """Refuse what the real service refuses with INVALID_ARGUMENT (raised as HTTP 400)."""
    if not request.messages:
        raise EmulatedApiError(400, "messages: must not be empty")
    for index, message in enumerate(request.messages):
        if message.role not in _ROLES:
            raise EmulatedApiError(
                400, f"messages[{index}].role: must be system, user or assistant"
            )
        if message.WhichOneof("Content") is None:
            raise EmulatedApiError(
                400, f"messages[{index}]: one of text, toolCallList, toolResultList is required"
            )
    options = request.completion_options
    if options.HasField("temperature") and not 0 <= options.temperature.value <= 1:
        raise EmulatedApiError(400, "completionOptions.temperature: must be in range [0, 1]")
    if options.HasField("max_tokens") and options.max_tokens.value < 0:
        raise EmulatedApiError(400, "completionOptions.maxTokens: must not be negative")
    names = [tool.function.name for tool in request.tools]
    if any(not name for name in names):
        raise EmulatedApiError(400, "tools: every tool needs function.name")
    wanted = request.tool_choice.function_name
    if wanted and wanted not in names:
        raise EmulatedApiError(400, f"toolChoice.functionName: unknown function {wanted}")


def _as_text(message: Message) -> str:
    kind = message.WhichOneof("Content")
    if kind is None or kind == "text":
        return message.text
    payload = json_format.MessageToDict(getattr(message, kind))
    return encode(payload).decode()


def _last_user_text(request: CompletionRequest) -> str:
    for message in reversed(request.messages):
        if message.role == "user" and message.WhichOneof("Content") == "text":
            return message.text
    return ""


def _called_tools(request: CompletionRequest) -> list[FunctionTool]:
    """The functions the model calls: forced by ``toolChoice``, or offered after a user text."""
    if not request.tools or request.tool_choice.mode == ToolChoice.NONE:
        return []
    functions = [tool.function for tool in request.tools]
    if request.tool_choice.function_name:
        return [f for f in functions if f.name == request.tool_choice.function_name][:1]
    last = request.messages[-1]
    forced = request.tool_choice.mode == ToolChoice.REQUIRED
    if not forced and not (last.role == "user" and last.WhichOneof("Content") == "text"):
        return []
    # With parallel calls explicitly allowed, every offered function is called once.
    parallel = request.HasField("parallel_tool_calls") and request.parallel_tool_calls.value
    return functions if parallel else functions[:1]


def _tool_calls(functions: list[FunctionTool], hint: str) -> ToolCallList:
    calls = []
    for function in functions:
        schema = json_format.MessageToDict(function.parameters) if function.parameters else None
        arguments = Struct()
        arguments.update(replies.arguments_from_schema(schema, hint))
        calls.append(ToolCall(function_call=FunctionCall(name=function.name, arguments=arguments)))
    return ToolCallList(tool_calls=calls)


def _tool_result_reply(message: Message) -> str:
    results = [result.function_result for result in message.tool_result_list.tool_results]
    names = ", ".join(result.name for result in results)
    contents = "; ".join(result.content for result in results)
    return replies.function_result_reply(names, contents)


def _structured_text(request: CompletionRequest, reply: str, hint: str) -> str:
    kind = request.WhichOneof("ResponseFormat")
    if kind == "json_schema":
        schema: Any = json_format.MessageToDict(request.json_schema.schema)
        return encode(replies.arguments_from_schema(schema, hint)).decode()
    if kind == "json_object":
        return encode({"answer": reply}).decode()
    return reply


@dataclass(slots=True)
class Answer:
    """The whole answer to one request, before it is cut into stream frames."""

    text: str
    status: int
    prompt_tokens: int
    reasoning_tokens: int
    tool_calls: ToolCallList | None = None
    # Content-filtered answers stream the start of the real text before the replacement.
    filtered_prefix: str = ""


def answer(request: CompletionRequest) -> Answer:
    """Decide the model's deterministic answer to a valid request."""
    conversation = [_as_text(message) for message in request.messages]
    prompt_tokens = sum(replies.count_tokens(text) + 1 for text in conversation)
    hint = _last_user_text(request)
    functions = _called_tools(request)
    if functions:
        calls = _tool_calls(functions, hint)
        text = encode(json_format.MessageToDict(calls)).decode()
        return Answer(text, TOOL_CALLS, prompt_tokens, 0, calls)
    last = request.messages[-1]
    if last.WhichOneof("Content") == "tool_result_list":
        reply = _tool_result_reply(last)
    elif last.role == "user" and last.text.startswith(ECHO_MARKER):
        reply = last.text[len(ECHO_MARKER) :]
    else:
        reply = replies.reply_text(conversation, hint)
    text = _structured_text(request, reply, hint)
    reasoning = 0
    if request.completion_options.reasoning_options.mode == ReasoningOptions.ENABLED_HIDDEN:
        reasoning = replies.count_tokens(text) // 2 + 1
    if any(
        CONTENT_FILTER_MARKER in message.text
        for message in request.messages
        if message.role == "user"
    ):
        return Answer(CONTENT_FILTER_TEXT, CONTENT_FILTER, prompt_tokens, 0, None, text[:20])
    limit = request.completion_options.max_tokens.value
    # Zero is proto3's "unset": the model's default limit.
    if limit and replies.count_tokens(text) + reasoning > limit:
        text = replies.truncate_to_tokens(text, max(limit - reasoning, 0))
        return Answer(text, TRUNCATED_FINAL, prompt_tokens, reasoning)
    return Answer(text, FINAL, prompt_tokens, reasoning)


def _frame(
    message: Message, status: int, answer: Answer, completion_tokens: int, version: str
) -> CompletionResponse:
    usage = ContentUsage(
        input_text_tokens=answer.prompt_tokens,
        completion_tokens=completion_tokens + answer.reasoning_tokens,
        total_tokens=answer.prompt_tokens + completion_tokens + answer.reasoning_tokens,
        completion_tokens_details=ContentUsage.CompletionTokensDetails(
            reasoning_tokens=answer.reasoning_tokens
        ),
    )
    return CompletionResponse(
        alternatives=[Alternative(message=message, status=status)],  # type: ignore[arg-type]
        usage=usage,
        model_version=version,
    )


def completion_frames(
    request: CompletionRequest, version: str, stream_chunks: int
) -> list[CompletionResponse]:
    """The responses to send: one final frame, or for a stream growing PARTIAL frames first.

    Streamed text is cumulative, as Yandex sends it; a tool call arrives in one frame, and a
    content filter replaces the text streamed so far.
    """
    result = answer(request)
    completion_tokens = replies.count_tokens(result.text)
    if result.tool_calls is not None:
        final_message = Message(role="assistant", tool_call_list=result.tool_calls)
    else:
        final_message = Message(role="assistant", text=result.text)
    final = _frame(final_message, result.status, result, completion_tokens, version)
    if not request.completion_options.stream or result.tool_calls is not None:
        return [final]
    streamed = result.filtered_prefix if result.status == CONTENT_FILTER else result.text
    pieces = replies.split_chunks(streamed, stream_chunks) if streamed else []
    if result.status != CONTENT_FILTER:
        pieces = pieces[:-1]
    frames = []
    prefix = ""
    for piece in pieces:
        prefix += piece
        message = Message(role="assistant", text=prefix)
        frames.append(_frame(message, PARTIAL, result, replies.count_tokens(prefix), version))
    frames.append(final)
    return frames
