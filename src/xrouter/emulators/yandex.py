"""YandexGPT emulator: the Foundation Models REST API (gRPC transcoding) on an aiohttp app.

The JSON follows the proto3 JSON mapping (lowerCamelCase, int64 as strings, enum names), with
the ``result`` wrapper and NDJSON streaming described in PROTOCOLS.md part B.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from xrouter.emulators import replies
from xrouter.emulators.http import (
    EmulatedApiError,
    delay,
    encode,
    json_response,
    read_json_object,
    write_paced,
)
from xrouter.emulators.options import EmulatorOptions, ErrorInjector

COMPLETION_PATH = "/foundationModels/v1/completion"
EMBEDDING_PATH = "/foundationModels/v1/textEmbedding"
TOKENIZE_PATH = "/foundationModels/v1/tokenize"

# (model, branch) -> modelVersion; every pair is distinct so tests can tell branches apart.
MODEL_VERSIONS: dict[tuple[str, str], str] = {
    ("yandexgpt", "latest"): "23.10.2025",
    ("yandexgpt", "rc"): "27.11.2025",
    ("yandexgpt", "deprecated"): "09.02.2025",
    ("yandexgpt-lite", "latest"): "22.05.2025",
    ("yandexgpt-lite", "rc"): "25.11.2025",
    ("yandexgpt-lite", "deprecated"): "18.01.2025",
    ("yandexgpt-32k", "latest"): "19.04.2025",
    ("yandexgpt-32k", "rc"): "20.11.2025",
    ("yandexgpt-32k", "deprecated"): "07.03.2025",
    ("llama", "latest"): "06.08.2025",
    ("llama", "rc"): "14.11.2025",
    ("llama", "deprecated"): "28.02.2025",
    ("llama-lite", "latest"): "05.08.2025",
    ("llama-lite", "rc"): "12.11.2025",
    ("llama-lite", "deprecated"): "27.02.2025",
}
EMBEDDING_VERSIONS: dict[str, str] = {
    "text-search-doc": "13.03.2025",
    "text-search-query": "14.03.2025",
}
EMBEDDING_DIMENSIONS = 256

# HTTP status -> (gRPC code, httpStatus text, message) for injected errors.
ERRORS: dict[int, tuple[int, str, str]] = {
    400: (3, "Bad Request", "Request is invalid"),
    401: (16, "Unauthorized", "Unknown api key"),
    402: (9, "Payment Required", "Billing account is not active"),
    403: (7, "Forbidden", "Permission denied"),
    404: (5, "Not Found", "Not found"),
    413: (8, "Payload Too Large", "Request message is larger than max"),
    422: (3, "Unprocessable Entity", "Request is invalid"),
    429: (
        8,
        "Too Many Requests",
        "ai.textGenerationCompletionSessionsCount.count gauge quota limit exceed: "
        "allowed 10 requests",
    ),
    500: (13, "Internal Server Error", "Internal error"),
    503: (14, "Service Unavailable", "Service is temporarily unavailable"),
}
IAM_TOKEN_PATTERN = re.compile(r"t1\.[A-Za-z0-9_-]+=*\.[A-Za-z0-9_-]{86}=*")
_GPT_URI = re.compile(r"gpt://(?P<folder>[^/\s]+)/(?P<model>[^/\s]+)(?:/(?P<branch>[^/\s]+))?")
_EMB_URI = re.compile(r"emb://(?P<folder>[^/\s]+)/(?P<model>[^/\s]+)(?:/(?P<branch>[^/\s]+))?")
_ROLES = frozenset({"system", "user", "assistant"})
_MESSAGE_KINDS = ("text", "toolCallList", "toolResultList")
_NO_CREDENTIALS = "IAM token or API key has to be passed in request"
_RETRY_AFTER_SECONDS = "1"


@dataclass(slots=True)
class YandexStats:
    """Counters tests read to see how a client used the emulator."""

    api_requests: int = 0
    completion_requests: int = 0


STATS_KEY = web.AppKey("yandex_stats", YandexStats)


@dataclass(slots=True)
class _State:
    options: EmulatorOptions
    injector: ErrorInjector
    stats: YandexStats


_STATE_KEY = web.AppKey("yandex_state", _State)


def _error(status: int, message: str | None = None) -> web.Response:
    """Yandex's REST error body: ``{"error": {grpcCode, httpCode, message, httpStatus, ...}}``."""
    grpc_code, http_status, default_message = ERRORS[status]
    body = {
        "error": {
            "grpcCode": grpc_code,
            "httpCode": status,
            "message": message or default_message,
            "httpStatus": http_status,
            "details": [],
        }
    }
    response = json_response(body, status)
    if status == 429:
        response.headers["Retry-After"] = _RETRY_AFTER_SECONDS
    return response


async def _echo_headers(request: web.Request, response: web.StreamResponse) -> None:
    request_id = request.headers.get("x-client-request-id")
    if request_id is not None:
        response.headers["x-client-request-id"] = request_id


# --- credentials -------------------------------------------------------------------------------


def _authentication_problem(options: EmulatorOptions, authorization: str | None) -> str | None:
    """Why the ``Authorization`` header is refused, or None when it is accepted."""
    if not authorization:
        return _NO_CREDENTIALS
    scheme, _, credential = authorization.partition(" ")
    credential = credential.strip()
    if scheme == "Api-Key":
        if credential and (options.api_key is None or credential == options.api_key):
            return None
        return f"Unknown api key '{credential[:4]}…'"
    if scheme == "Bearer":
        return None if IAM_TOKEN_PATTERN.fullmatch(credential) else "The token is invalid"
    return _NO_CREDENTIALS


def _check_folder(request: web.Request, options: EmulatorOptions, folder: str) -> None:
    header = request.headers.get("x-folder-id")
    if header is not None and header != folder:
        raise EmulatedApiError(403, f"Folder {header} from x-folder-id does not match model_uri")
    if options.folder_id is not None and folder != options.folder_id:
        raise EmulatedApiError(403, f"Permission denied to folder {folder}")


# --- plumbing ----------------------------------------------------------------------------------

_Handler = Callable[[web.Request, _State], Awaitable[web.StreamResponse]]


def _api(handler: _Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """Wrap a handler with latency, authentication, error injection and error bodies."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        state = request.app[_STATE_KEY]
        state.stats.api_requests += 1
        await delay(state.options)
        problem = _authentication_problem(state.options, request.headers.get("Authorization"))
        if problem is not None:
            return _error(401, problem)
        if state.injector.should_fail():
            return _error(state.options.error_status)
        try:
            return await handler(request, state)
        except EmulatedApiError as error:
            return _error(error.status, error.message)

    return wrapped


async def _read_object(request: web.Request) -> dict[str, Any]:
    return await read_json_object(request, "Syntax error")


def _model_version(request: web.Request, state: _State, model_uri: object) -> str:
    """Validate a ``gpt://`` URI (and its folder) and return the model's ``modelVersion``."""
    match = _GPT_URI.fullmatch(model_uri) if isinstance(model_uri, str) else None
    version = None
    if match is not None:
        version = MODEL_VERSIONS.get((match["model"], match["branch"] or "latest"))
    if match is None or version is None:
        raise EmulatedApiError(400, "invalid model_uri")
    _check_folder(request, state.options, match["folder"])
    return version


def _int64(value: object, name: str) -> int | None:
    """An int64 field: proto3 JSON accepts a number or a decimal string."""
    if value is None:
        return None
    if isinstance(value, str) and value.lstrip("-").isdigit():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise EmulatedApiError(400, f"invalid value for {name}: {value!r}")


# --- completion --------------------------------------------------------------------------------


@dataclass(slots=True)
class _Completion:
    version: str
    messages: list[dict[str, Any]]
    stream: bool
    max_tokens: int | None
    tools: list[dict[str, Any]]
    tool_choice: object


def _check_messages(messages: object) -> list[dict[str, Any]]:
    if not isinstance(messages, list) or not messages:
        raise EmulatedApiError(400, "messages: must not be empty")
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in _ROLES:
            raise EmulatedApiError(
                400, f"messages[{index}].role: must be system, user or assistant"
            )
        if sum(kind in message for kind in _MESSAGE_KINDS) != 1:
            raise EmulatedApiError(
                400, f"messages[{index}]: exactly one of text, toolCallList, toolResultList"
            )
        if "text" in message and not isinstance(message["text"], str):
            raise EmulatedApiError(400, f"messages[{index}].text: must be a string")
    return messages


def _parse_completion(request: web.Request, state: _State, body: dict[str, Any]) -> _Completion:
    version = _model_version(request, state, body.get("modelUri"))
    options = body.get("completionOptions") or {}
    if not isinstance(options, dict):
        raise EmulatedApiError(400, "completionOptions: must be an object")
    temperature = options.get("temperature")
    if temperature is not None and (
        not isinstance(temperature, int | float) or not 0 <= temperature <= 1
    ):
        raise EmulatedApiError(400, "completionOptions.temperature: must be in range [0, 1]")
    max_tokens = _int64(options.get("maxTokens"), "completionOptions.maxTokens")
    if max_tokens is not None and max_tokens < 0:
        raise EmulatedApiError(400, "completionOptions.maxTokens: must not be negative")
    tools = body.get("tools") or []
    if not isinstance(tools, list) or not all(
        isinstance(tool, dict)
        and isinstance(tool.get("function"), dict)
        and isinstance(tool["function"].get("name"), str)
        for tool in tools
    ):
        raise EmulatedApiError(400, "tools: every tool needs function.name")
    return _Completion(
        version=version,
        messages=_check_messages(body.get("messages")),
        stream=options.get("stream") is True,
        # Zero is proto3's "unset", which means the model's default limit.
        max_tokens=max_tokens or None,
        tools=tools,
        tool_choice=body.get("toolChoice"),
    )


def _chosen_tool(completion: _Completion) -> dict[str, Any] | None:
    last = completion.messages[-1]
    choice = completion.tool_choice if isinstance(completion.tool_choice, dict) else {}
    if not completion.tools or "text" not in last or last["role"] != "user":
        return None
    if choice.get("mode") == "NONE":
        return None
    functions: list[dict[str, Any]] = [tool["function"] for tool in completion.tools]
    wanted = choice.get("functionName")
    if wanted is None:
        return functions[0]
    for function in functions:
        if function["name"] == wanted:
            return function
    raise EmulatedApiError(400, f"toolChoice.functionName: unknown function {wanted}")


def _message_text(message: dict[str, Any]) -> str:
    text = message.get("text")
    return text if isinstance(text, str) else encode(message).decode()


def _tool_result_reply(message: dict[str, Any]) -> str:
    results = message["toolResultList"]
    first = (results.get("toolResults") or [{}])[0] if isinstance(results, dict) else {}
    function_result = first.get("functionResult") if isinstance(first, dict) else None
    if not isinstance(function_result, dict):
        return replies.function_result_reply("", "")
    name, content = function_result.get("name"), function_result.get("content")
    return replies.function_result_reply(str(name or ""), str(content or ""))


@dataclass(slots=True)
class _Alternative:
    message: dict[str, Any]
    status: str
    text: str
    prompt_tokens: int


def _alternative(completion: _Completion) -> _Alternative:
    conversation = [_message_text(message) for message in completion.messages]
    prompt_tokens = sum(replies.count_tokens(text) + 1 for text in conversation)
    last = completion.messages[-1]
    tool = _chosen_tool(completion)
    if tool is not None:
        arguments = replies.arguments_from_schema(tool.get("parameters"), last["text"])
        call = {"functionCall": {"name": tool["name"], "arguments": arguments}}
        message = {"role": "assistant", "toolCallList": {"toolCalls": [call]}}
        text = encode(arguments).decode()
        return _Alternative(message, "ALTERNATIVE_STATUS_TOOL_CALLS", text, prompt_tokens)
    if "toolResultList" in last:
        text = _tool_result_reply(last)
    else:
        last_user = next(
            (
                m["text"]
                for m in reversed(completion.messages)
                if m["role"] == "user" and "text" in m
            ),
            "",
        )
        text = replies.reply_text(conversation, last_user)
    status = "ALTERNATIVE_STATUS_FINAL"
    if completion.max_tokens is not None and replies.count_tokens(text) > completion.max_tokens:
        text = replies.truncate_to_tokens(text, completion.max_tokens)
        status = "ALTERNATIVE_STATUS_TRUNCATED_FINAL"
    return _Alternative({"role": "assistant", "text": text}, status, text, prompt_tokens)


def _result(message: dict[str, Any], status: str, usage: tuple[int, int], version: str) -> bytes:
    prompt_tokens, completion_tokens = usage
    result = {
        "alternatives": [{"message": message, "status": status}],
        "usage": {
            "inputTextTokens": str(prompt_tokens),
            "completionTokens": str(completion_tokens),
            "totalTokens": str(prompt_tokens + completion_tokens),
            "completionTokensDetails": {"reasoningTokens": "0"},
        },
        "modelVersion": version,
    }
    return encode({"result": result})


async def _completion(request: web.Request, state: _State) -> web.StreamResponse:
    state.stats.completion_requests += 1
    completion = _parse_completion(request, state, await _read_object(request))
    alternative = _alternative(completion)
    version = completion.version
    prompt_tokens = alternative.prompt_tokens
    final_usage = (prompt_tokens, replies.count_tokens(alternative.text))
    final = _result(alternative.message, alternative.status, final_usage, version)
    if not completion.stream:
        return web.Response(body=final, content_type="application/json")
    lines = []
    if "text" in alternative.message:
        pieces = replies.split_chunks(alternative.text, state.options.stream_chunks)
        prefix = ""
        for piece in pieces[:-1]:
            prefix += piece
            usage = (prompt_tokens, replies.count_tokens(prefix))
            partial = {"role": "assistant", "text": prefix}
            lines.append(_result(partial, "ALTERNATIVE_STATUS_PARTIAL", usage, version) + b"\n")
    lines.append(final + b"\n")
    return await _write_lines(request, state.options, lines)


async def _write_lines(
    request: web.Request, options: EmulatorOptions, lines: list[bytes]
) -> web.StreamResponse:
    return await write_paced(request, options, {"Content-Type": "application/json"}, lines)


# --- embeddings and tokenizer ------------------------------------------------------------------


async def _text_embedding(request: web.Request, state: _State) -> web.StreamResponse:
    body = await _read_object(request)
    model_uri = body.get("modelUri")
    match = _EMB_URI.fullmatch(model_uri) if isinstance(model_uri, str) else None
    if match is None or match["model"] not in EMBEDDING_VERSIONS:
        raise EmulatedApiError(400, "invalid model_uri")
    if (match["branch"] or "latest") != "latest":
        raise EmulatedApiError(400, "invalid model_uri")
    _check_folder(request, state.options, match["folder"])
    text = body.get("text")
    if not isinstance(text, str) or not text:
        raise EmulatedApiError(400, "text: must not be empty")
    dimensions = _int64(body.get("dim"), "dim")
    if dimensions not in (None, EMBEDDING_DIMENSIONS):
        raise EmulatedApiError(400, f"dim: only {EMBEDDING_DIMENSIONS} is supported")
    vector = replies.embedding_vector(text, EMBEDDING_DIMENSIONS, match["model"])
    return json_response(
        {
            "embedding": vector,
            "numTokens": str(replies.count_tokens(text)),
            "modelVersion": EMBEDDING_VERSIONS[match["model"]],
        }
    )


async def _tokenize(request: web.Request, state: _State) -> web.StreamResponse:
    body = await _read_object(request)
    version = _model_version(request, state, body.get("modelUri"))
    text = body.get("text")
    if not isinstance(text, str):
        raise EmulatedApiError(400, "text: must be a string")
    tokens = [
        {"id": str(replies.token_id(piece)), "text": piece, "special": False}
        for piece in replies.tokenize(text)
    ]
    return json_response({"tokens": tokens, "modelVersion": version})


def create_app(options: EmulatorOptions) -> web.Application:
    """The YandexGPT emulator: completion, textEmbedding and tokenize (``/foundationModels/v1``).

    ``app[STATS_KEY]`` counts API and completion requests for tests.
    """
    app = web.Application(client_max_size=64 * 1024 * 1024)
    stats = YandexStats()
    app[STATS_KEY] = stats
    app[_STATE_KEY] = _State(
        options=options, injector=ErrorInjector(options.error_rate, options.seed), stats=stats
    )
    app.on_response_prepare.append(_echo_headers)
    app.router.add_post(COMPLETION_PATH, _api(_completion))
    app.router.add_post(EMBEDDING_PATH, _api(_text_embedding))
    app.router.add_post(TOKENIZE_PATH, _api(_tokenize))
    return app
