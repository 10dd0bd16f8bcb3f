"""OpenAI tools <-> GigaChat functions, and the conversation history around them.

GigaChat calls one function per assistant turn, gives the call no id and returns the arguments
as a JSON object. OpenAI clients need an id on every call to send its result back, so the id is
derived from what GigaChat does return: the call's ``functions_state_id`` when there is one (it
is encoded in the id and restored from it on the next request), otherwise a hash of the call.
The same answer therefore always gets the same id, in a JSON reply and in a stream alike.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

from xrouter.errors import InvalidRequestError
from xrouter.gateway.wire import (
    AssistantMessage,
    ChatCompletionRequest,
    DeveloperMessage,
    FunctionCall,
    Message,
    NamedToolChoice,
    SystemMessage,
    ToolCall,
    ToolMessage,
)
from xrouter.providers.content import text_of

NAME = "gigachat"
# Tool-call id forms: a uuid functions_state_id, any other functions_state_id, no state at all.
_UUID_STATE = "call_gs"
_OTHER_STATE = "call_gx"
_NO_STATE = "call_gh"
_UUID_HEX = re.compile(r"[0-9a-f]{32}")
_MAX_ENCODED_STATE = 120


# Tool-call ids


def tool_call_id(name: str, arguments: str, state_id: str | None) -> str:
    """The OpenAI id of a GigaChat function call: stable, and it carries the state id."""
    if state_id:
        try:
            return _UUID_STATE + uuid.UUID(state_id).hex
        except ValueError:
            encoded = base64.urlsafe_b64encode(state_id.encode()).decode().rstrip("=")
            if len(encoded) <= _MAX_ENCODED_STATE:
                return _OTHER_STATE + encoded
    digest = hashlib.blake2b(f"{name}\x00{arguments}".encode(), digest_size=12).hexdigest()
    return _NO_STATE + digest


def state_id_of(call_id: str) -> str | None:
    """The ``functions_state_id`` a tool-call id made by ``tool_call_id`` carries, if any."""
    if call_id.startswith(_UUID_STATE):
        tail = call_id[len(_UUID_STATE) :]
        return str(uuid.UUID(hex=tail)) if _UUID_HEX.fullmatch(tail) else None
    if call_id.startswith(_OTHER_STATE):
        tail = call_id[len(_OTHER_STATE) :]
        try:
            padded = tail + "=" * (-len(tail) % 4)
            state = base64.b64decode(padded, altchars=b"-_", validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        return state or None
    return None


def openai_tool_call(name: str, arguments: object, state_id: str | None) -> ToolCall:
    """GigaChat's ``function_call`` (arguments as an object) as an OpenAI tool call."""
    text = _arguments_text(arguments)
    return ToolCall(id=tool_call_id(name, text, state_id), function=FunctionCall(name, text))


def _arguments_text(arguments: object) -> str:
    if arguments is None:
        return "{}"
    if isinstance(arguments, str):
        return arguments
    return json.dumps(arguments, ensure_ascii=False, separators=(",", ":"))


# Request: tools and tool_choice


def functions_fields(request: ChatCompletionRequest) -> dict[str, Any]:
    """``functions`` and ``function_call`` for the GigaChat request (empty without tools)."""
    if not request.tools:
        if request.tool_choice is not None and request.tool_choice != "none":
            raise InvalidRequestError(
                "'tool_choice' needs 'tools'.", param="tool_choice", code="invalid_value"
            )
        return {}
    functions = []
    for tool in request.tools:
        function: dict[str, Any] = {
            "name": tool.function.name,
            # GigaChat requires a parameters schema; OpenAI lets a tool without arguments omit it.
            "parameters": tool.function.parameters or {"type": "object", "properties": {}},
        }
        if tool.function.description is not None:
            function["description"] = tool.function.description
        functions.append(function)
    names = [tool.function.name for tool in request.tools]
    return {"functions": functions, "function_call": _function_call(request.tool_choice, names)}


def _function_call(choice: object, names: list[str]) -> str | dict[str, str]:
    if choice is None or choice == "auto":
        # Sent explicitly: OpenAI's default with tools is "auto", GigaChat's may not be.
        return "auto"
    if choice == "none":
        return "none"
    if isinstance(choice, NamedToolChoice):
        if choice.function.name not in names:
            raise InvalidRequestError(
                f"tool_choice names the function '{choice.function.name}', which is not in "
                "'tools'.",
                param="tool_choice",
                code="invalid_value",
            )
        return {"name": choice.function.name}
    # "required": GigaChat can only force one named function.
    if len(names) == 1:
        return {"name": names[0]}
    raise InvalidRequestError(
        "gigachat cannot be required to call one of several tools; send tool_choice "
        '{"type": "function", "function": {"name": ...}} or "auto".',
        param="tool_choice",
        code="unsupported_value",
    )


# Request: the conversation


def conversation(messages: list[Message]) -> list[dict[str, Any]]:
    """The OpenAI history as GigaChat messages. Assistant turns with several tool calls are
    replayed as one assistant/function pair per call, because GigaChat takes one call per turn."""
    converted: list[dict[str, Any]] = []
    index = 0
    while index < len(messages):
        message = messages[index]
        if isinstance(message, AssistantMessage) and message.tool_calls:
            results, after = _tool_results(messages, index)
            converted.extend(_replayed_calls(message, index, results))
            index = after
            continue
        if isinstance(message, ToolMessage):
            raise InvalidRequestError(
                "A tool message must follow the assistant message whose tool call it answers.",
                param=f"messages[{index}]",
                code="invalid_value",
            )
        converted.append(_plain_message(message, index, first=not converted))
        index += 1
    return converted


def _plain_message(message: Message, index: int, *, first: bool) -> dict[str, Any]:
    content = text_of(message.content, f"messages[{index}].content", NAME)
    if isinstance(message, SystemMessage | DeveloperMessage):
        # GigaChat takes one system message, first; a later one would be refused with 422.
        return {"role": "system" if first else "user", "content": content}
    role = "assistant" if isinstance(message, AssistantMessage) else "user"
    return {"role": role, "content": content}


@dataclass(slots=True)
class _Result:
    position: int
    message: ToolMessage


def _tool_results(messages: list[Message], at: int) -> tuple[dict[str, _Result], int]:
    """The tool messages right after the assistant message at ``at``, by tool-call id."""
    results: dict[str, _Result] = {}
    index = at + 1
    while index < len(messages) and isinstance(tool := messages[index], ToolMessage):
        if tool.tool_call_id in results:
            raise InvalidRequestError(
                f"The tool call '{tool.tool_call_id}' has more than one tool message.",
                param=f"messages[{index}].tool_call_id",
                code="invalid_value",
            )
        results[tool.tool_call_id] = _Result(index, tool)
        index += 1
    return results, index


def _replayed_calls(
    message: AssistantMessage, at: int, results: dict[str, _Result]
) -> list[dict[str, Any]]:
    assert message.tool_calls is not None
    known = {call.id for call in message.tool_calls}
    for call_id, answer in results.items():
        if call_id not in known:
            raise InvalidRequestError(
                f"The tool message answers '{call_id}', which is not a tool call of the "
                "assistant message before it.",
                param=f"messages[{answer.position}].tool_call_id",
                code="invalid_value",
            )
    turns: list[dict[str, Any]] = []
    text = text_of(message.content, f"messages[{at}].content", NAME)
    for number, call in enumerate(message.tool_calls):
        param = f"messages[{at}].tool_calls[{number}]"
        result = results.get(call.id)
        if result is None:
            raise InvalidRequestError(
                f"The tool call '{call.id}' has no tool message with its result.",
                param=param,
                code="invalid_value",
            )
        assistant: dict[str, Any] = {
            "role": "assistant",
            "content": text if number == 0 else "",
            "function_call": {
                "name": call.function.name,
                "arguments": _arguments_object(call.function.arguments, param),
            },
        }
        if (state := state_id_of(call.id)) is not None:
            assistant["functions_state_id"] = state
        content_param = f"messages[{result.position}].content"
        turns.append(assistant)
        turns.append(
            {
                "role": "function",
                "name": call.function.name,
                "content": function_result(text_of(result.message.content, content_param, NAME)),
            }
        )
    return turns


def _arguments_object(arguments: str, param: str) -> dict[str, Any]:
    if not arguments.strip():
        return {}
    try:
        value = json.loads(arguments)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise InvalidRequestError(
            "Tool-call arguments must be a JSON object.",
            param=f"{param}.function.arguments",
            code="invalid_value",
        )
    return value


def function_result(text: str) -> str:
    """A tool's output as GigaChat wants a function result: a JSON object serialized as text.
    Output that is not an object is wrapped as ``{"result": ...}``."""
    try:
        value: object = json.loads(text)
    except ValueError:
        value = text
    if isinstance(value, dict):
        return text
    return json.dumps({"result": value}, ensure_ascii=False)
