"""The GigaChat emulator's ``/chat/completions``: request checks, deterministic answers with
function calls, and the SSE frames of a streamed answer (PROTOCOLS.md A.4, A.5)."""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

from xrouter.emulators import replies
from xrouter.emulators.http import EmulatedApiError, encode

ROLES = frozenset(
    {"system", "user", "assistant", "function", "search_result", "function_in_progress"}
)
_FIRST_GENERATION = "1.0.26.20"
_LITE_AND_2 = "2.0.28.2"
_BASE_VERSIONS = {
    "GigaChat": _LITE_AND_2,
    "GigaChat-Pro": _FIRST_GENERATION,
    "GigaChat-Max": _FIRST_GENERATION,
    "GigaChat-Plus": _FIRST_GENERATION,
    "GigaChat-2": _LITE_AND_2,
    "GigaChat-2-Pro": _LITE_AND_2,
    "GigaChat-2-Max": _LITE_AND_2,
}
# Chat model name -> the version the response's ``model`` carries after a colon.
CHAT_MODEL_VERSIONS: dict[str, str] = {
    **_BASE_VERSIONS,
    **{f"{name}-preview": "2.0.29.1" for name in _BASE_VERSIONS},
}
# Latin letters, digits and underscores, not starting with a digit [I: docs say "Latin letters"].
_FUNCTION_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_REASONING_EFFORTS = frozenset({"low", "medium", "high"})
# What a topic-filtered answer says instead (a stand-in for the service's canned refusals).
_BLACKLIST_REPLY = "Не люблю менять тему разговора, но вот сейчас тот самый случай."


@dataclass(slots=True)
class Chat:
    model: str
    messages: list[dict[str, Any]]
    stream: bool
    max_tokens: int | None
    functions: list[dict[str, Any]]
    function_call: object


def _invalid(message: str) -> EmulatedApiError:
    return EmulatedApiError(422, f"Invalid params: {message}")


def _check_function_message(message: dict[str, Any], index: int) -> None:
    if not isinstance(message.get("name"), str) or not message["name"]:
        raise _invalid(f"messages[{index}] with role function needs a name")
    try:
        result = json.loads(message.get("content", ""))
    except ValueError:
        result = None
    if not isinstance(result, dict):
        raise _invalid(f"messages[{index}].content must be a JSON object serialized as a string")


def _check_assistant_call(message: dict[str, Any], index: int) -> None:
    call = message.get("function_call")
    if call is not None and (
        not isinstance(call, dict)
        or not isinstance(call.get("name"), str)
        or not isinstance(call.get("arguments", {}), dict)
    ):
        raise _invalid(f"messages[{index}].function_call needs a name and object arguments")
    state = message.get("functions_state_id")
    if state is not None:
        try:
            uuid.UUID(str(state))
        except ValueError:
            raise _invalid(f"messages[{index}].functions_state_id must be a uuid") from None


def _check_messages(messages: object) -> list[dict[str, Any]]:
    if not isinstance(messages, list) or not messages:
        raise _invalid("messages must be a non-empty list")
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise _invalid(f"messages[{index}] has no valid role")
        if not isinstance(message.get("content", ""), str):
            raise _invalid(f"messages[{index}].content must be a string")
        if message["role"] == "system" and index > 0:
            raise _invalid("system message must be the first message")
        if message["role"] == "function":
            _check_function_message(message, index)
        if message["role"] == "assistant":
            _check_assistant_call(message, index)
    return messages


def _check_number(
    body: dict[str, Any], name: str, low: float, high: float | None, low_allowed: bool = False
) -> None:
    value = body.get(name)
    if value is None:
        return
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise _invalid(f"{name} must be a number")
    if value < low or (value == low and not low_allowed) or (high is not None and value > high):
        lower = f"[{low}" if low_allowed else f"({low}"
        upper = "+inf)" if high is None else f"{high}]"
        raise _invalid(f"{name} must be in range {lower}, {upper}")


def _check_functions(functions: object) -> list[dict[str, Any]]:
    if functions is None:
        return []
    if not isinstance(functions, list) or not all(
        isinstance(item, dict) and isinstance(item.get("name"), str) for item in functions
    ):
        raise _invalid("every function needs a name")
    for function in functions:
        if not _FUNCTION_NAME.fullmatch(function["name"]):
            raise _invalid(f"function name {function['name']!r} must be Latin letters")
    return functions


def _check_extras(body: dict[str, Any]) -> None:
    effort = body.get("reasoning_effort")
    if effort is not None and effort not in _REASONING_EFFORTS:
        raise _invalid("reasoning_effort must be one of low, medium, high")
    response_format = body.get("response_format")
    if response_format is not None and (
        not isinstance(response_format, dict)
        or response_format.get("type") != "json_schema"
        or not isinstance(response_format.get("schema"), dict)
    ):
        raise _invalid("response_format must be {type: json_schema, schema: {...}}")


def parse_chat(body: dict[str, Any]) -> Chat:
    """Validate a chat request the way GigaChat does (404 unknown model, 422 bad params)."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _invalid("model is required")
    if model not in CHAT_MODEL_VERSIONS:
        raise EmulatedApiError(404)
    messages = _check_messages(body.get("messages"))
    _check_number(body, "repetition_penalty", 0, None)
    _check_number(body, "top_p", 0, 1, low_allowed=True)
    temperature = body.get("temperature")
    if isinstance(temperature, int | float) and temperature < 0:
        raise _invalid("temperature must be in range (0, +inf)")
    max_tokens = body.get("max_tokens")
    if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
        raise _invalid("max_tokens must be a positive integer")
    _check_extras(body)
    return Chat(
        model=model,
        messages=messages,
        stream=body.get("stream") is True,
        max_tokens=max_tokens,
        functions=_check_functions(body.get("functions")),
        function_call=body.get("function_call"),
    )


def _chosen_function(chat: Chat) -> dict[str, Any] | None:
    if not chat.functions or chat.function_call == "none" or chat.messages[-1]["role"] != "user":
        return None
    if isinstance(chat.function_call, dict) and "name" in chat.function_call:
        wanted = chat.function_call["name"]
        for function in chat.functions:
            if function["name"] == wanted:
                return function
        raise _invalid(f"function {wanted} is not among functions")
    return chat.functions[0]


@dataclass(slots=True)
class Answer:
    message: dict[str, Any]
    finish_reason: str
    usage: dict[str, int]


def prompt_tokens(chat: Chat) -> int:
    tokens = sum(replies.count_tokens(str(m.get("content", ""))) + 1 for m in chat.messages)
    if chat.functions:
        tokens += replies.count_tokens(encode(chat.functions).decode())
    return tokens


def answer(chat: Chat, precached: int, forced_finish: str | None = None) -> Answer:
    """The deterministic answer: a function call when one is due, else a quoting reply."""
    conversation = [str(message.get("content", "")) for message in chat.messages]
    prompt = prompt_tokens(chat)
    message: dict[str, Any]
    if forced_finish in {"blacklist", "error"}:
        text = _BLACKLIST_REPLY if forced_finish == "blacklist" else ""
        message = {"role": "assistant", "content": text}
        return Answer(message, forced_finish, usage(prompt, replies.count_tokens(text), precached))
    function = _chosen_function(chat)
    if function is not None:
        arguments = replies.arguments_from_schema(function.get("parameters"), conversation[-1])
        message = {
            "role": "assistant",
            "content": "",
            "function_call": {"name": function["name"], "arguments": arguments},
            "functions_state_id": replies.state_id(conversation),
        }
        completion = replies.count_tokens(encode(arguments).decode()) + 1
        return Answer(message, "function_call", usage(prompt, completion, precached))
    last = chat.messages[-1]
    if last["role"] == "function":
        text = replies.function_result_reply(str(last.get("name", "")), conversation[-1])
    else:
        last_user = next(
            (str(m.get("content", "")) for m in reversed(chat.messages) if m["role"] == "user"), ""
        )
        text = replies.reply_text(conversation, last_user)
    finish_reason = forced_finish or "stop"
    if chat.max_tokens is not None and replies.count_tokens(text) > chat.max_tokens:
        text = replies.truncate_to_tokens(text, chat.max_tokens)
        finish_reason = "length"
    message = {"role": "assistant", "content": text}
    return Answer(message, finish_reason, usage(prompt, replies.count_tokens(text), precached))


def usage(prompt_tokens: int, completion_tokens: int, precached: int = 0) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "precached_prompt_tokens": min(precached, prompt_tokens),
    }


def stream_frames(answer: Answer, model: str, created: int, chunks: int) -> list[bytes]:
    """SSE frames: deltas, the first with the role, the last empty with finish_reason and usage.
    A function call is one frame holding the whole call, its finish reason and usage."""

    def frame(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        choice: dict[str, Any] = {"delta": delta, "index": 0}
        chunk: dict[str, Any] = {
            "choices": [choice],
            "created": created,
            "model": model,
            "object": "chat.completion",
        }
        if finish_reason is not None:
            choice["finish_reason"] = finish_reason
            chunk["usage"] = answer.usage
        return b"data: " + encode(chunk) + b"\n\n"

    if "function_call" in answer.message:
        frames = [frame(answer.message, answer.finish_reason)]
    elif not answer.message["content"]:
        frames = [frame({"content": "", "role": "assistant"}, answer.finish_reason)]
    else:
        pieces = replies.split_chunks(answer.message["content"], chunks)
        frames = [
            frame({"content": piece, "role": "assistant"} if index == 0 else {"content": piece})
            for index, piece in enumerate(pieces)
        ]
        frames.append(frame({"content": ""}, answer.finish_reason))
    frames.append(b"data: [DONE]\n\n")
    return frames


def cached_prefix_tokens(previous: list[dict[str, Any]] | None, chat: Chat) -> int:
    """Prompt tokens served from the session's cache: the messages shared with its last request."""
    if not previous:
        return 0
    tokens = 0
    for before, now in zip(previous, chat.messages, strict=False):
        if before != now:
            break
        tokens += replies.count_tokens(str(now.get("content", ""))) + 1
    return tokens
