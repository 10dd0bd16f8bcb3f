"""OpenAI chat requests as Yandex ``CompletionRequest`` JSON (proto3 JSON mapping).

Messages become ``{role, text}``; an assistant's tool calls become a ``toolCallList`` whose
arguments are objects, and ``tool`` messages become one ``user`` message with a
``toolResultList``. Yandex's tool results carry the function's name, not a call id, so the name
is found through the assistant message in the history that made the call.
"""

from __future__ import annotations

from typing import Any

import msgspec

from xrouter.errors import InvalidRequestError
from xrouter.gateway.wire import (
    AssistantMessage,
    ChatCompletionRequest,
    DeveloperMessage,
    NamedToolChoice,
    SystemMessage,
    ToolMessage,
    UserMessage,
)
from xrouter.providers.content import refuse_unsupported, text_of

NAME = "yandex"
_UNSUPPORTED = ("n", "stop", "top_p", "presence_penalty", "frequency_penalty", "repetition_penalty")
_TOOL_CHOICE_MODES = {"none": "NONE", "auto": "AUTO", "required": "REQUIRED"}
# Yandex's reasoning is on (hidden) or off; OpenAI's efforts other than "none" turn it on.
_REASONING_OFF = "none"


def completion_payload(request: ChatCompletionRequest, model_uri: str) -> dict[str, Any]:
    """The ``CompletionRequest`` JSON for an OpenAI chat request."""
    refuse_unsupported(request, NAME, _UNSUPPORTED)
    payload: dict[str, Any] = {
        "modelUri": model_uri,
        "completionOptions": _options(request),
        "messages": _messages(request),
    }
    payload.update(_response_format(request))
    payload.update(_tools(request))
    return payload


def _options(request: ChatCompletionRequest) -> dict[str, Any]:
    options: dict[str, Any] = {"stream": request.stream}
    if request.temperature is not None:
        # Yandex takes 0..1; OpenAI's 1..2 is clamped rather than rescaled so that common
        # values (0.3, 0.7) mean the same on both.
        options["temperature"] = min(request.temperature, 1.0)
    if request.output_limit is not None:
        options["maxTokens"] = str(request.output_limit)
    if request.reasoning_effort is not None:
        mode = "DISABLED" if request.reasoning_effort == _REASONING_OFF else "ENABLED_HIDDEN"
        options["reasoningOptions"] = {"mode": mode}
    return options


def _response_format(request: ChatCompletionRequest) -> dict[str, Any]:
    response_format = request.response_format
    if response_format is None or response_format.type == "text":
        return {}
    if response_format.type == "json_object":
        return {"jsonObject": True}
    schema = response_format.json_schema.schema if response_format.json_schema else None
    if schema is None:
        raise InvalidRequestError(
            "response_format of type json_schema needs json_schema.schema.",
            param="response_format.json_schema.schema",
        )
    return {"jsonSchema": {"schema": schema}}


def _tools(request: ChatCompletionRequest) -> dict[str, Any]:
    if not request.tools:
        if request.tool_choice is not None:
            raise InvalidRequestError(
                "tool_choice is only allowed when tools are specified.", param="tool_choice"
            )
        return {}
    tools = []
    for tool in request.tools:
        function: dict[str, Any] = {"name": tool.function.name}
        if tool.function.description is not None:
            function["description"] = tool.function.description
        if tool.function.parameters is not None:
            function["parameters"] = tool.function.parameters
        if tool.function.strict is not None:
            function["strict"] = tool.function.strict
        tools.append({"function": function})
    payload: dict[str, Any] = {"tools": tools}
    choice = request.tool_choice
    if isinstance(choice, NamedToolChoice):
        if choice.function.name not in {tool.function.name for tool in request.tools}:
            raise InvalidRequestError(
                f"tool_choice names '{choice.function.name}', which is not among the tools.",
                param="tool_choice",
            )
        payload["toolChoice"] = {"functionName": choice.function.name}
    elif choice is not None:
        payload["toolChoice"] = {"mode": _TOOL_CHOICE_MODES[choice]}
    if request.parallel_tool_calls is not None:
        payload["parallelToolCalls"] = request.parallel_tool_calls
    return payload


def _arguments(arguments: str, param: str) -> dict[str, Any]:
    if not arguments.strip():
        return {}
    try:
        value = msgspec.json.decode(arguments)
    except msgspec.DecodeError:
        value = None
    if not isinstance(value, dict):
        raise InvalidRequestError(
            "Tool call arguments must be a JSON object (Yandex takes them as one).", param=param
        )
    return value


def _messages(request: ChatCompletionRequest) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    # tool_call_id -> function name, from the assistant messages seen so far
    names: dict[str, str] = {}
    # The toolResultList that consecutive tool messages are collected into.
    results: list[dict[str, Any]] | None = None
    for index, message in enumerate(request.messages):
        param = f"messages[{index}].content"
        if isinstance(message, ToolMessage):
            name = names.get(message.tool_call_id)
            if name is None:
                raise InvalidRequestError(
                    f"tool_call_id '{message.tool_call_id}' answers no tool call of an earlier "
                    "assistant message.",
                    param=f"messages[{index}].tool_call_id",
                )
            result = {
                "functionResult": {"name": name, "content": text_of(message.content, param, NAME)}
            }
            if results is None:
                results = []
                messages.append({"role": "user", "toolResultList": {"toolResults": results}})
            results.append(result)
            continue
        results = None
        if isinstance(message, SystemMessage | DeveloperMessage):
            messages.append({"role": "system", "text": text_of(message.content, param, NAME)})
        elif isinstance(message, UserMessage):
            messages.append({"role": "user", "text": text_of(message.content, param, NAME)})
        elif isinstance(message, AssistantMessage):
            messages.extend(_assistant(message, index, names))
    return messages


def _assistant(
    message: AssistantMessage, index: int, names: dict[str, str]
) -> list[dict[str, Any]]:
    text = text_of(message.content, f"messages[{index}].content", NAME)
    if not message.tool_calls:
        return [{"role": "assistant", "text": text}]
    calls = []
    for number, call in enumerate(message.tool_calls):
        names[call.id] = call.function.name
        param = f"messages[{index}].tool_calls[{number}].function.arguments"
        arguments = _arguments(call.function.arguments, param)
        calls.append({"functionCall": {"name": call.function.name, "arguments": arguments}})
    tool_calls = {"role": "assistant", "toolCallList": {"toolCalls": calls}}
    # A Yandex message holds text or tool calls, not both: text said alongside goes first.
    return [{"role": "assistant", "text": text}, tool_calls] if text else [tool_calls]
