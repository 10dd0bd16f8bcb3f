"""GigaChat emulator: the OAuth endpoint and the classic REST v1 API on one aiohttp app.

Paths: ``/api/v2/oauth`` (OAuth), ``/api/v1/...`` (API). Wire format: PROTOCOLS.md part A.
"""

from __future__ import annotations

import base64
import binascii
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
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

API_PREFIX = "/api/v1"
OAUTH_PATH = "/api/v2/oauth"
SCOPES = frozenset({"GIGACHAT_API_PERS", "GIGACHAT_API_B2B", "GIGACHAT_API_CORP"})

_LITE_AND_2 = "2.0.28.2"
_FIRST_GENERATION = "1.0.26.20"
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
EMBEDDING_DIMENSIONS: dict[str, int] = {
    "Embeddings": 1024,
    "Embeddings-2": 1024,
    "EmbeddingsGigaR": 2560,
}

ERROR_MESSAGES: dict[int, str] = {
    400: "Bad request format",
    401: "Unauthorized",
    402: "Payment Required",
    403: "Permission denied",
    404: "No such model",
    413: "Payload too large",
    422: "Invalid params: request rejected by the emulator",
    429: "Too many requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
_ROLES = frozenset(
    {"system", "user", "assistant", "function", "search_result", "function_in_progress"}
)
_ECHOED_HEADERS = ("x-request-id", "x-session-id", "x-client-id")
# Real tokens are JWEs; the fixed header only makes ours look like one to log readers.
_TOKEN_PREFIX = "eyJjdHkiOiJqd3QiLCJlbmMiOiJBMjU2Q0JDLUhTNTEyIiwiYWxnIjoiUlNBLU9BRVAtMjU2In0."  # noqa: S105
_MAX_LIVE_TOKENS = 100_000
# Media requests may be up to 80 MB, so the body limit is the provider's, not aiohttp's 1 MB.
_MAX_BODY_BYTES = 80 * 1024 * 1024
_RETRY_AFTER_SECONDS = "1"


@dataclass(slots=True)
class GigaChatStats:
    """Counters tests read to see how a client used the emulator."""

    token_requests: int = 0
    tokens_issued: int = 0
    api_requests: int = 0
    chat_requests: int = 0


STATS_KEY = web.AppKey("gigachat_stats", GigaChatStats)


@dataclass(slots=True)
class _State:
    options: EmulatorOptions
    injector: ErrorInjector
    stats: GigaChatStats
    models_body: bytes
    tokens: dict[str, float] = field(default_factory=dict)

    def issue_token(self) -> tuple[str, int]:
        if len(self.tokens) >= _MAX_LIVE_TOKENS:
            now = time.time()
            self.tokens = {token: ends for token, ends in self.tokens.items() if ends > now}
        token = _TOKEN_PREFIX + secrets.token_urlsafe(48)
        expires = time.time() + self.options.token_ttl_seconds
        self.tokens[token] = expires
        self.stats.tokens_issued += 1
        return token, int(expires * 1000)

    def token_is_valid(self, authorization: str | None) -> bool:
        scheme, _, token = (authorization or "").partition(" ")
        expires = self.tokens.get(token.strip()) if scheme == "Bearer" else None
        if expires is not None and expires <= time.time():
            del self.tokens[token.strip()]
            expires = None
        return expires is not None


_STATE_KEY = web.AppKey("gigachat_state", _State)


def _api_error(status: int, message: str | None = None) -> web.Response:
    """The API host's error body: ``{"status": <code>, "message": <text>}``."""
    response = json_response(
        {"status": status, "message": message or ERROR_MESSAGES[status]}, status
    )
    if status == 429:
        response.headers["Retry-After"] = _RETRY_AFTER_SECONDS
    return response


def _oauth_error(status: int, code: int, message: str) -> web.Response:
    """The OAuth host's error body, which differs from the API's: ``{"code", "message"}``."""
    return json_response({"code": code, "message": message}, status)


async def _echo_headers(request: web.Request, response: web.StreamResponse) -> None:
    for name in _ECHOED_HEADERS:
        value = request.headers.get(name)
        if value is not None:
            response.headers[name] = value


# --- OAuth -------------------------------------------------------------------------------------


def _is_uuid4(value: str) -> bool:
    try:
        return uuid.UUID(value).version == 4 and len(value) == 36
    except ValueError:
        return False


def _decode_basic(authorization: str) -> tuple[str, str] | None:
    scheme, _, encoded = authorization.partition(" ")
    if scheme != "Basic" or not encoded:
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, ValueError):
        return None
    client_id, colon, secret = decoded.partition(":")
    return (client_id, secret) if colon and client_id and secret else None


async def _oauth(request: web.Request) -> web.StreamResponse:
    state = request.app[_STATE_KEY]
    state.stats.token_requests += 1
    await delay(state.options)
    if not _is_uuid4(request.headers.get("RqUID", "")):
        # The docs name this case but not its body [I]; it keeps the OAuth body shape.
        return _oauth_error(400, 2, "RqUID header is missing or is not a uuid4")
    authorization = request.headers.get("Authorization", "")
    if _decode_basic(authorization) is None:
        return _oauth_error(400, 4, "Can't decode 'Authorization' header")
    scope = str((await request.post()).get("scope", "")).strip()
    if not scope:
        return _oauth_error(400, 5, "scope is empty")
    if scope not in SCOPES:
        return _oauth_error(400, 1, "scope data format invalid")
    expected = state.options.authorization_key
    if expected is not None and authorization.partition(" ")[2].strip() != expected:
        return _oauth_error(401, 6, "credentials doesn't match db data")
    token, expires_at = state.issue_token()
    return json_response({"access_token": token, "expires_at": expires_at})


async def _password_token(request: web.Request) -> web.StreamResponse:
    state = request.app[_STATE_KEY]
    state.stats.token_requests += 1
    await delay(state.options)
    if _decode_basic(request.headers.get("Authorization", "")) is None:
        return _api_error(401)
    token, expires_at = state.issue_token()
    return json_response({"tok": token, "exp": expires_at})


# --- API plumbing ------------------------------------------------------------------------------

_Handler = Callable[[web.Request, _State], Awaitable[web.StreamResponse]]


def _api(handler: _Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """Wrap an API handler with latency, bearer-token check, error injection and error bodies."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        state = request.app[_STATE_KEY]
        state.stats.api_requests += 1
        await delay(state.options)
        if not state.token_is_valid(request.headers.get("Authorization")):
            return _api_error(401)
        if state.injector.should_fail():
            return _api_error(state.options.error_status)
        try:
            return await handler(request, state)
        except EmulatedApiError as error:
            return _api_error(error.status, error.message)

    return wrapped


async def _read_object(request: web.Request) -> dict[str, Any]:
    return await read_json_object(request, "Bad request format")


def _string_list(value: object, name: str) -> list[str]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(i, str) for i in items):
        raise EmulatedApiError(422, f"Invalid params: {name} must be a non-empty list of strings")
    return items


def _versioned(model: str) -> str:
    return f"{model}:{CHAT_MODEL_VERSIONS[model]}"


# --- chat --------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Chat:
    model: str
    messages: list[dict[str, Any]]
    stream: bool
    max_tokens: int | None
    functions: list[dict[str, Any]]
    function_call: object


def _check_messages(messages: object) -> list[dict[str, Any]]:
    if not isinstance(messages, list) or not messages:
        raise EmulatedApiError(422, "Invalid params: messages must be a non-empty list")
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in _ROLES:
            raise EmulatedApiError(422, f"Invalid params: messages[{index}] has no valid role")
        if not isinstance(message.get("content", ""), str):
            raise EmulatedApiError(
                422, f"Invalid params: messages[{index}].content must be a string"
            )
        if message["role"] == "system" and index > 0:
            raise EmulatedApiError(422, "Invalid params: system message must be the first message")
    return messages


def _check_number(
    body: dict[str, Any], name: str, low: float, high: float | None, low_allowed: bool = False
) -> None:
    value = body.get(name)
    if value is None:
        return
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise EmulatedApiError(422, f"Invalid params: {name} must be a number")
    if value < low or (value == low and not low_allowed) or (high is not None and value > high):
        lower = f"[{low}" if low_allowed else f"({low}"
        upper = "+inf)" if high is None else f"{high}]"
        raise EmulatedApiError(422, f"Invalid params: {name} must be in range {lower}, {upper}")


def _parse_chat(body: dict[str, Any]) -> _Chat:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise EmulatedApiError(422, "Invalid params: model is required")
    if model not in CHAT_MODEL_VERSIONS:
        raise EmulatedApiError(404)
    messages = _check_messages(body.get("messages"))
    _check_number(body, "repetition_penalty", 0, None)
    _check_number(body, "top_p", 0, 1, low_allowed=True)
    temperature = body.get("temperature")
    if isinstance(temperature, int | float) and temperature < 0:
        raise EmulatedApiError(422, "Invalid params: temperature must be in range (0, +inf)")
    max_tokens = body.get("max_tokens")
    if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
        raise EmulatedApiError(422, "Invalid params: max_tokens must be a positive integer")
    functions = body.get("functions") or []
    if not isinstance(functions, list) or not all(
        isinstance(item, dict) and isinstance(item.get("name"), str) for item in functions
    ):
        raise EmulatedApiError(422, "Invalid params: every function needs a name")
    return _Chat(
        model=model,
        messages=messages,
        stream=body.get("stream") is True,
        max_tokens=max_tokens,
        functions=functions,
        function_call=body.get("function_call"),
    )


def _chosen_function(chat: _Chat) -> dict[str, Any] | None:
    if not chat.functions or chat.function_call == "none" or chat.messages[-1]["role"] != "user":
        return None
    if isinstance(chat.function_call, dict) and "name" in chat.function_call:
        wanted = chat.function_call["name"]
        for function in chat.functions:
            if function["name"] == wanted:
                return function
        raise EmulatedApiError(422, f"Invalid params: function {wanted} is not among functions")
    return chat.functions[0]


@dataclass(slots=True)
class _Answer:
    message: dict[str, Any]
    finish_reason: str
    usage: dict[str, int]


def _answer(chat: _Chat) -> _Answer:
    conversation = [str(message.get("content", "")) for message in chat.messages]
    prompt_tokens = sum(replies.count_tokens(text) + 1 for text in conversation)
    if chat.functions:
        prompt_tokens += replies.count_tokens(encode(chat.functions).decode())
    last = chat.messages[-1]
    function = _chosen_function(chat)
    if function is not None:
        arguments = replies.arguments_from_schema(function.get("parameters"), conversation[-1])
        message: dict[str, Any] = {
            "role": "assistant",
            "content": "",
            "function_call": {"name": function["name"], "arguments": arguments},
            "functions_state_id": replies.state_id(conversation),
        }
        completion = replies.count_tokens(encode(arguments).decode()) + 1
        return _Answer(message, "function_call", _usage(prompt_tokens, completion))
    if last["role"] == "function":
        text = replies.function_result_reply(str(last.get("name", "")), conversation[-1])
    else:
        last_user = next(
            (str(m.get("content", "")) for m in reversed(chat.messages) if m["role"] == "user"), ""
        )
        text = replies.reply_text(conversation, last_user)
    finish_reason = "stop"
    if chat.max_tokens is not None and replies.count_tokens(text) > chat.max_tokens:
        text = replies.truncate_to_tokens(text, chat.max_tokens)
        finish_reason = "length"
    message = {"role": "assistant", "content": text}
    return _Answer(message, finish_reason, _usage(prompt_tokens, replies.count_tokens(text)))


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "precached_prompt_tokens": 0,
    }


async def _chat_completions(request: web.Request, state: _State) -> web.StreamResponse:
    state.stats.chat_requests += 1
    chat = _parse_chat(await _read_object(request))
    answer = _answer(chat)
    model = _versioned(chat.model)
    created = int(time.time())
    if not chat.stream:
        choice = {"message": answer.message, "index": 0, "finish_reason": answer.finish_reason}
        return json_response(
            {
                "choices": [choice],
                "created": created,
                "model": model,
                "object": "chat.completion",
                "usage": answer.usage,
            }
        )
    frames = _stream_frames(answer, model, created, state.options.stream_chunks)
    return await _stream(request, state.options, frames)


def _stream_frames(answer: _Answer, model: str, created: int, chunks: int) -> list[bytes]:
    """SSE frames: deltas, the first with the role, the last empty with finish_reason and usage."""

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
    else:
        pieces = replies.split_chunks(answer.message["content"], chunks)
        frames = [
            frame({"content": piece, "role": "assistant"} if index == 0 else {"content": piece})
            for index, piece in enumerate(pieces)
        ]
        frames.append(frame({"content": ""}, answer.finish_reason))
    frames.append(b"data: [DONE]\n\n")
    return frames


async def _stream(
    request: web.Request, options: EmulatorOptions, frames: list[bytes]
) -> web.StreamResponse:
    headers = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    return await write_paced(request, options, headers, frames)


# --- models, embeddings, tokens, balance -------------------------------------------------------


def _model_object(name: str) -> dict[str, str]:
    kind = "embedder" if name in EMBEDDING_DIMENSIONS else "chat"
    return {"id": name, "object": "model", "owned_by": "salutedevices", "type": kind}


_ALL_MODELS = [*CHAT_MODEL_VERSIONS, *EMBEDDING_DIMENSIONS]


async def _models(request: web.Request, state: _State) -> web.StreamResponse:
    return web.Response(body=state.models_body, content_type="application/json")


async def _model(request: web.Request, state: _State) -> web.StreamResponse:
    name = request.match_info["model"]
    if name not in CHAT_MODEL_VERSIONS and name not in EMBEDDING_DIMENSIONS:
        raise EmulatedApiError(404)
    return json_response(_model_object(name))


async def _embeddings(request: web.Request, state: _State) -> web.StreamResponse:
    body = await _read_object(request)
    model = body.get("model")
    if not isinstance(model, str) or model not in EMBEDDING_DIMENSIONS:
        raise EmulatedApiError(404)
    dimensions = EMBEDDING_DIMENSIONS[model]
    data = [
        {
            "object": "embedding",
            "embedding": replies.embedding_vector(text, dimensions, model),
            "index": index,
            "usage": {"prompt_tokens": replies.count_tokens(text)},
        }
        for index, text in enumerate(_string_list(body.get("input"), "input"))
    ]
    return json_response({"object": "list", "model": model, "data": data})


async def _tokens_count(request: web.Request, state: _State) -> web.StreamResponse:
    body = await _read_object(request)
    model = body.get("model")
    if model not in CHAT_MODEL_VERSIONS and model not in EMBEDDING_DIMENSIONS:
        raise EmulatedApiError(404)
    counts = [
        {"object": "tokens", "tokens": replies.count_tokens(text), "characters": len(text)}
        for text in _string_list(body.get("input"), "input")
    ]
    return json_response(counts)


_BALANCE_BODY = encode(
    {
        "balance": [
            {"usage": "GigaChat", "value": 50000},
            {"usage": "GigaChat-Pro", "value": 20000},
            {"usage": "GigaChat-Max", "value": 10000},
            {"usage": "embeddings", "value": 1000000},
        ]
    }
)


async def _balance(request: web.Request, state: _State) -> web.StreamResponse:
    return web.Response(body=_BALANCE_BODY, content_type="application/json")


def create_app(options: EmulatorOptions) -> web.Application:
    """The GigaChat emulator: OAuth at ``/api/v2/oauth`` and the v1 API under ``/api/v1``.

    ``app[STATS_KEY]`` counts token and API requests for tests.
    """
    app = web.Application(client_max_size=_MAX_BODY_BYTES)
    stats = GigaChatStats()
    models_body = encode({"object": "list", "data": [_model_object(n) for n in _ALL_MODELS]})
    app[STATS_KEY] = stats
    app[_STATE_KEY] = _State(
        options=options,
        injector=ErrorInjector(options.error_rate, options.seed),
        stats=stats,
        models_body=models_body,
    )
    app.on_response_prepare.append(_echo_headers)
    app.router.add_post(OAUTH_PATH, _oauth)
    app.router.add_post(f"{API_PREFIX}/token", _password_token)
    app.router.add_post(f"{API_PREFIX}/chat/completions", _api(_chat_completions))
    app.router.add_get(f"{API_PREFIX}/models", _api(_models))
    app.router.add_get(f"{API_PREFIX}/models/{{model}}", _api(_model))
    app.router.add_post(f"{API_PREFIX}/embeddings", _api(_embeddings))
    app.router.add_post(f"{API_PREFIX}/tokens/count", _api(_tokens_count))
    app.router.add_get(f"{API_PREFIX}/balance", _api(_balance))
    return app
