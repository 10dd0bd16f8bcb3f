"""The OpenAI-compatible face of the YandexGPT emulator: ``POST /v1/chat/completions``.

Yandex also serves its models in OpenAI's format at ``https://llm.api.cloud.yandex.net/v1``.
This face translates such a request to the core's ``CompletionRequest`` and its answer back,
as JSON or as server-sent events with true deltas. Intermediate chunks carry no
``finish_reason`` key at all: ``yandex-cloud-ml-sdk`` calls ``.lower()`` on the value.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from typing import Any

import msgspec
from aiohttp import web
from google.protobuf import json_format
from google.protobuf.struct_pb2 import Struct
from yandex.cloud.ai.foundation_models.v1.text_common_pb2 import (
    Alternative,
    FunctionCall,
    FunctionResult,
    FunctionTool,
    JsonSchema,
    Message,
    ReasoningOptions,
    Tool,
    ToolCall,
    ToolCallList,
    ToolChoice,
    ToolResult,
    ToolResultList,
)
from yandex.cloud.ai.foundation_models.v1.text_generation.text_generation_service_pb2 import (
    CompletionRequest,
    CompletionResponse,
)

from xrouter.emulators.http import (
    EmulatedApiError,
    encode,
    json_response,
    read_json_object,
    write_paced,
)
from xrouter.emulators.yandex_core import RETRY_AFTER_SECONDS
from xrouter.emulators.yandex_rest import CORE_KEY

CHAT_COMPLETIONS_PATH = "/v1/chat/completions"
_FINISH_REASONS = {
    Alternative.ALTERNATIVE_STATUS_FINAL: "stop",
    Alternative.ALTERNATIVE_STATUS_TRUNCATED_FINAL: "length",
    Alternative.ALTERNATIVE_STATUS_CONTENT_FILTER: "content_filter",
    Alternative.ALTERNATIVE_STATUS_TOOL_CALLS: "tool_calls",
}
_ERROR_TYPES = {401: "authentication_error", 403: "permission_error", 429: "rate_limit_error"}


def _error(status: int, message: str | None) -> web.Response:
    error_type = _ERROR_TYPES.get(status, "invalid_request_error" if status < 500 else "api_error")
    body = {
        "error": {"message": message or "error", "type": error_type, "param": None, "code": None}
    }
    response = json_response(body, status)
    if status == 429:
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def _authorization(header: str | None) -> str | None:
    """The openai client sends ``Bearer <API key>``; an API key there is taken as one."""
    if header and header.startswith("Bearer ") and not header[7:].startswith("t1."):
        return "Api-Key " + header[7:]
    return header


# Request: OpenAI -> CompletionRequest


def _text(content: object, where: str) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list):
        parts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text":
                raise EmulatedApiError(400, f"{where}: only text content is supported")
            parts.append(str(part.get("text", "")))
        return "".join(parts)
    raise EmulatedApiError(400, f"{where}: must be a string or a list of parts")


def _struct(value: object, where: str) -> Struct:
    struct = Struct()
    try:
        parsed = msgspec.json.decode(value) if isinstance(value, str | bytes) else value
        struct.update(parsed)  # type: ignore[arg-type]
    except (msgspec.DecodeError, TypeError, ValueError, AttributeError):
        raise EmulatedApiError(400, f"{where}: must be a JSON object") from None
    return struct


def _messages(raw: object) -> list[Message]:
    if not isinstance(raw, list) or not raw:
        raise EmulatedApiError(400, "messages: must be a non-empty list")
    names: dict[str, str] = {}
    messages: list[Message] = []
    for index, item in enumerate(raw):
        where = f"messages[{index}]"
        if not isinstance(item, dict):
            raise EmulatedApiError(400, f"{where}: must be an object")
        role = item.get("role")
        if role == "tool":
            call_id = str(item.get("tool_call_id", ""))
            result = ToolResult(
                function_result=FunctionResult(
                    name=names.get(call_id, ""), content=_text(item.get("content"), where)
                )
            )
            previous = messages[-1] if messages else None
            if previous is not None and previous.WhichOneof("Content") == "tool_result_list":
                previous.tool_result_list.tool_results.append(result)
            else:
                messages.append(
                    Message(role="user", tool_result_list=ToolResultList(tool_results=[result]))
                )
        elif role == "assistant" and item.get("tool_calls"):
            calls = []
            for call in item["tool_calls"]:
                function = call.get("function", {}) if isinstance(call, dict) else {}
                names[str(call.get("id", ""))] = str(function.get("name", ""))
                arguments = _struct(function.get("arguments", "{}"), f"{where}.tool_calls")
                calls.append(
                    ToolCall(function_call=FunctionCall(name=function["name"], arguments=arguments))
                )
            messages.append(
                Message(role="assistant", tool_call_list=ToolCallList(tool_calls=calls))
            )
        elif role in ("system", "developer", "user", "assistant"):
            role = "system" if role == "developer" else role
            messages.append(Message(role=role, text=_text(item.get("content"), where)))
        else:
            raise EmulatedApiError(400, f"{where}.role: unknown role {role!r}")
    return messages


def _options(body: dict[str, Any], request: CompletionRequest) -> None:
    options = request.completion_options
    options.stream = body.get("stream") is True
    if isinstance(body.get("temperature"), int | float):
        options.temperature.value = float(body["temperature"])
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    if isinstance(limit, int):
        options.max_tokens.value = limit
    effort = body.get("reasoning_effort")
    if isinstance(effort, str):
        options.reasoning_options.mode = (
            ReasoningOptions.DISABLED if effort == "none" else ReasoningOptions.ENABLED_HIDDEN
        )
    response_format = body.get("response_format")
    if isinstance(response_format, dict):
        if response_format.get("type") == "json_object":
            request.json_object = True
        elif response_format.get("type") == "json_schema":
            schema = (response_format.get("json_schema") or {}).get("schema") or {}
            request.json_schema.CopyFrom(JsonSchema(schema=_struct(schema, "response_format")))


def _tools(body: dict[str, Any], request: CompletionRequest) -> None:
    for tool in body.get("tools") or []:
        function = tool.get("function", {}) if isinstance(tool, dict) else {}
        request.tools.append(
            Tool(
                function=FunctionTool(
                    name=str(function.get("name", "")),
                    description=str(function.get("description") or ""),
                    parameters=_struct(function.get("parameters") or {}, "tools"),
                    strict=bool(function.get("strict")),
                )
            )
        )
    choice = body.get("tool_choice")
    modes = {"none": ToolChoice.NONE, "auto": ToolChoice.AUTO, "required": ToolChoice.REQUIRED}
    if isinstance(choice, str) and choice in modes:
        request.tool_choice.mode = modes[choice]
    elif isinstance(choice, dict):
        request.tool_choice.function_name = str(choice.get("function", {}).get("name", ""))
    if isinstance(body.get("parallel_tool_calls"), bool):
        request.parallel_tool_calls.value = body["parallel_tool_calls"]


def completion_request(body: dict[str, Any]) -> CompletionRequest:
    """Translate an OpenAI chat request to the core's ``CompletionRequest``."""
    model = body.get("model")
    if not isinstance(model, str):
        raise EmulatedApiError(400, "model: required")
    request = CompletionRequest(model_uri=model, messages=_messages(body.get("messages")))
    _options(body, request)
    _tools(body, request)
    return request


# Answer: CompletionResponse -> OpenAI


def _tool_calls(calls: ToolCallList) -> list[dict[str, Any]]:
    rendered = []
    for index, call in enumerate(calls.tool_calls):
        arguments = encode(json_format.MessageToDict(call.function_call.arguments)).decode()
        digest = hashlib.sha256(f"{index}:{call.function_call.name}:{arguments}".encode())
        rendered.append(
            {
                "id": "call_" + digest.hexdigest()[:24],
                "type": "function",
                "function": {"name": call.function_call.name, "arguments": arguments},
            }
        )
    return rendered


def _usage(frame: CompletionResponse) -> dict[str, int]:
    return {
        "prompt_tokens": frame.usage.input_text_tokens,
        "completion_tokens": frame.usage.completion_tokens,
        "total_tokens": frame.usage.total_tokens,
    }


def _completion(frame: CompletionResponse, head: dict[str, Any]) -> dict[str, Any]:
    alternative = frame.alternatives[0]
    message: dict[str, Any] = {"role": "assistant", "content": alternative.message.text or None}
    if alternative.message.HasField("tool_call_list"):
        message["tool_calls"] = _tool_calls(alternative.message.tool_call_list)
    choice = {
        "index": 0,
        "message": message,
        "finish_reason": _FINISH_REASONS.get(alternative.status, "stop"),
    }
    return {**head, "object": "chat.completion", "choices": [choice], "usage": _usage(frame)}


def _chunks(
    frames: list[CompletionResponse], head: dict[str, Any], include_usage: bool
) -> list[bytes]:
    def event(choices: list[dict[str, Any]], **extra: object) -> bytes:
        chunk = {**head, "object": "chat.completion.chunk", "choices": choices, **extra}
        return b"data: " + encode(chunk) + b"\n\n"

    events = []
    sent = ""
    for number, frame in enumerate(frames):
        alternative = frame.alternatives[0]
        delta: dict[str, Any] = {"role": "assistant"} if number == 0 else {}
        text = alternative.message.text
        filtered = alternative.status == Alternative.ALTERNATIVE_STATUS_CONTENT_FILTER
        delta["content"] = text if filtered else text[len(sent) :]
        sent = text
        if alternative.message.HasField("tool_call_list"):
            calls = _tool_calls(alternative.message.tool_call_list)
            delta["tool_calls"] = [{"index": i, **call} for i, call in enumerate(calls)]
        choice: dict[str, Any] = {"index": 0, "delta": delta}
        reason = _FINISH_REASONS.get(alternative.status)
        if reason is not None:
            choice["finish_reason"] = reason
        events.append(event([choice]))
    if include_usage and frames:
        events.append(event([], usage=_usage(frames[-1])))
    events.append(b"data: [DONE]\n\n")
    return events


async def _chat_completions(request: web.Request) -> web.StreamResponse:
    core = request.app[CORE_KEY]
    try:
        await core.admit(_authorization(request.headers.get("Authorization")))
        body = await read_json_object(request, "Invalid JSON")
        try:
            completion = completion_request(body)
        except (AttributeError, KeyError, TypeError, ValueError):
            # A field of the wrong shape somewhere in the body.
            raise EmulatedApiError(400, "Invalid request body") from None
        frames = core.completion(completion, request.headers.get("OpenAI-Project"))
    except EmulatedApiError as error:
        return _error(error.status, error.message)
    head = {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "created": int(time.time()),
        "model": body["model"],
    }
    if not completion.completion_options.stream:
        return json_response(_completion(frames[-1], head))
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    headers = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    return await write_paced(request, core.options, headers, _chunks(frames, head, include_usage))


def add_routes(app: web.Application) -> None:
    """Serve the OpenAI-compatible chat completions on ``app`` (which holds the core)."""
    app.router.add_post(CHAT_COMPLETIONS_PATH, _chat_completions)
