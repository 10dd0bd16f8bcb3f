"""GigaChat emulator: the OAuth endpoint and the classic REST v1 API on one aiohttp app.

Paths: ``/api/v2/oauth`` (OAuth), ``/api/v1/...`` (API). Wire format: PROTOCOLS.md part A.
Chat lives in ``gigachat_chat``; failures a test can switch on at run time in ``gigachat_faults``.
"""

from __future__ import annotations

import base64
import binascii
import secrets
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from xrouter.emulators import replies
from xrouter.emulators.gigachat_chat import (
    CHAT_MODEL_VERSIONS,
    answer,
    cached_prefix_tokens,
    parse_chat,
    stream_frames,
)
from xrouter.emulators.gigachat_faults import (
    FAULTS_KEY,
    MALFORMED_BODY,
    FaultMode,
    GigaChatFaults,
    held_stream,
    reset_connection,
    stall,
    truncated_json,
)
from xrouter.emulators.http import (
    EmulatedApiError,
    delay,
    encode,
    json_response,
    read_json_object,
    write_paced,
)
from xrouter.emulators.options import EmulatorOptions, ErrorInjector

__all__ = [
    "API_PREFIX",
    "CHAT_MODEL_VERSIONS",
    "EMBEDDING_DIMENSIONS",
    "ERROR_MESSAGES",
    "FAULTS_KEY",
    "OAUTH_PATH",
    "STATS_KEY",
    "GigaChatFaults",
    "GigaChatStats",
    "create_app",
    "revoke_tokens",
]

API_PREFIX = "/api/v1"
OAUTH_PATH = "/api/v2/oauth"
SCOPES = frozenset({"GIGACHAT_API_PERS", "GIGACHAT_API_B2B", "GIGACHAT_API_CORP"})
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
# The API's answer to a token that was valid once [T: seen in client bug reports].
EXPIRED_TOKEN_MESSAGE = "Token has expired"  # noqa: S105
_ECHOED_HEADERS = ("x-request-id", "x-session-id", "x-client-id")
# Real tokens are JWEs; the fixed header only makes ours look like one to log readers.
_TOKEN_PREFIX = "eyJjdHkiOiJqd3QiLCJlbmMiOiJBMjU2Q0JDLUhTNTEyIiwiYWxnIjoiUlNBLU9BRVAtMjU2In0."  # noqa: S105
_MAX_LIVE_TOKENS = 100_000
_MAX_SESSIONS = 10_000
# Media requests may be up to 80 MB, so the body limit is the provider's, not aiohttp's 1 MB.
_MAX_BODY_BYTES = 80 * 1024 * 1024
_RETRY_AFTER_SECONDS = "1"
_FAULT_MODE = web.RequestKey("gigachat_fault_mode", str)


@dataclass(slots=True)
class GigaChatStats:
    """Counters tests read to see how a client used the emulator."""

    # Requests to the OAuth endpoint and to /token together; /token alone in the second.
    token_requests: int = 0
    password_token_requests: int = 0
    tokens_issued: int = 0
    api_requests: int = 0
    chat_requests: int = 0
    unauthorized: int = 0
    # The messages of the latest chat requests, newest last: what a client really sent.
    recent_chats: deque[list[dict[str, Any]]] = field(default_factory=lambda: deque(maxlen=64))


STATS_KEY = web.AppKey("gigachat_stats", GigaChatStats)


@dataclass(slots=True)
class _State:
    options: EmulatorOptions
    injector: ErrorInjector
    stats: GigaChatStats
    faults: GigaChatFaults
    models_body: bytes
    tokens: dict[str, float] = field(default_factory=dict)
    # Tokens that expired or were revoked, to answer them with "Token has expired".
    retired: set[str] = field(default_factory=set)
    # X-Session-ID -> the messages of its last request (GigaChat's prompt cache).
    sessions: OrderedDict[str, list[dict[str, Any]]] = field(default_factory=OrderedDict)

    def issue_token(self) -> tuple[str, int]:
        if len(self.tokens) >= _MAX_LIVE_TOKENS:
            now = time.time()
            self.tokens = {token: ends for token, ends in self.tokens.items() if ends > now}
            self.retired.clear()
        token = _TOKEN_PREFIX + secrets.token_urlsafe(48)
        ttl = self.faults.token_ttl_seconds or self.options.token_ttl_seconds
        expires = time.time() + ttl
        self.tokens[token] = expires
        self.stats.tokens_issued += 1
        return token, int(expires * 1000)

    def token_problem(self, authorization: str | None) -> str | None:
        """None for a live bearer token, else the 401 message GigaChat gives."""
        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip()
        expires = self.tokens.get(token) if scheme == "Bearer" else None
        if expires is not None and expires <= time.time():
            del self.tokens[token]
            self.retired.add(token)
            expires = None
        if expires is not None:
            return None
        return EXPIRED_TOKEN_MESSAGE if token in self.retired else ERROR_MESSAGES[401]

    def revoke_tokens(self) -> int:
        revoked = len(self.tokens)
        self.retired.update(self.tokens)
        self.tokens.clear()
        return revoked

    def remember_session(self, session: str, messages: list[dict[str, Any]]) -> None:
        self.sessions[session] = messages
        self.sessions.move_to_end(session)
        while len(self.sessions) > _MAX_SESSIONS:
            self.sessions.popitem(last=False)


_STATE_KEY = web.AppKey("gigachat_state", _State)


def revoke_tokens(app: web.Application) -> int:
    """Make every token issued so far invalid (as a server-side revocation would); returns how
    many were live. Clients holding one get GigaChat's 401 on their next call."""
    return app[_STATE_KEY].revoke_tokens()


def _api_error(
    status: int, message: str | None = None, retry_after: str | None = None
) -> web.Response:
    """The API host's error body: ``{"status": <code>, "message": <text>}``."""
    response = json_response(
        {"status": status, "message": message or ERROR_MESSAGES.get(status, "Error")}, status
    )
    if retry_after is None and status == 429:
        retry_after = _RETRY_AFTER_SECONDS
    if retry_after is not None:
        response.headers["Retry-After"] = retry_after
    return response


def _oauth_error(status: int, code: int, message: str) -> web.Response:
    """The OAuth host's error body, which differs from the API's: ``{"code", "message"}``."""
    return json_response({"code": code, "message": message}, status)


def _injected_oauth_error(faults: GigaChatFaults, status: int) -> web.Response:
    if status == 401:
        return _oauth_error(401, 6, "credentials doesn't match db data")
    # The OAuth host's bodies for other statuses are not documented [I]: its shape, the API text.
    response = _oauth_error(status, status, ERROR_MESSAGES.get(status, "Error"))
    retry_after = faults.retry_after or (_RETRY_AFTER_SECONDS if status == 429 else None)
    if retry_after is not None:
        response.headers["Retry-After"] = retry_after
    return response


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
    if state.faults.oauth_status is not None:
        return _injected_oauth_error(state.faults, state.faults.oauth_status)
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
    state.stats.password_token_requests += 1
    await delay(state.options)
    if state.faults.oauth_status is not None:
        return _api_error(state.faults.oauth_status, retry_after=state.faults.retry_after)
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
        if (problem := state.token_problem(request.headers.get("Authorization"))) is not None:
            state.stats.unauthorized += 1
            return _api_error(401, problem)
        if state.injector.should_fail():
            return _api_error(state.options.error_status)
        status, mode = state.faults.take()
        if status is not None:
            return _api_error(status, retry_after=state.faults.retry_after)
        if mode is not None:
            request[_FAULT_MODE] = mode
            if (early := await _early_fault(request, mode, state.faults)) is not None:
                return early
        try:
            response = await handler(request, state)
        except EmulatedApiError as error:
            return _api_error(error.status, error.message)
        return await _late_fault(request, mode, response)

    return wrapped


async def _early_fault(
    request: web.Request, mode: FaultMode, faults: GigaChatFaults
) -> web.StreamResponse | None:
    if mode == "reset":
        return await reset_connection(request)
    if mode == "stall":
        # Read the body first: the client may have given up by the time the stall ends.
        await request.read()
        await stall(faults.stall_seconds)
    return None


async def _late_fault(
    request: web.Request, mode: FaultMode | None, response: web.StreamResponse
) -> web.StreamResponse:
    """Spoil a JSON answer (streams spoil their own frames, they are already sent)."""
    if mode not in {"malformed", "truncated"} or not isinstance(response, web.Response):
        return response
    if mode == "malformed":
        return web.Response(body=MALFORMED_BODY, content_type="application/json")
    return await truncated_json(request, bytes(response.body or b""))  # type: ignore[arg-type]


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


async def _chat_completions(request: web.Request, state: _State) -> web.StreamResponse:
    state.stats.chat_requests += 1
    chat = parse_chat(await _read_object(request))
    state.stats.recent_chats.append(chat.messages)
    session = request.headers.get("X-Session-ID")
    precached = cached_prefix_tokens(state.sessions.get(session), chat) if session else 0
    if session:
        state.remember_session(session, chat.messages)
    result = answer(chat, precached, state.faults.finish_reason)
    model = _versioned(chat.model)
    created = int(time.time())
    if not chat.stream:
        choice = {"message": result.message, "index": 0, "finish_reason": result.finish_reason}
        body = {
            "choices": [choice],
            "created": created,
            "model": model,
            "object": "chat.completion",
            "usage": result.usage,
        }
        return json_response(body)
    frames = stream_frames(result, model, created, state.options.stream_chunks)
    if request.get(_FAULT_MODE) == "malformed":
        frames.insert(1, b'data: {"choices": [{"delta": \n\n')
    elif request.get(_FAULT_MODE) == "truncated":
        frames = frames[:1] if len(frames) > 2 else []
    headers = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    if request.get(_FAULT_MODE) == "hold":
        return await held_stream(request, state.faults, headers, frames)
    return await write_paced(request, state.options, headers, frames)


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

    ``app[STATS_KEY]`` counts token and API requests for tests; ``app[FAULTS_KEY]`` switches
    failures on and off while it runs.
    """
    app = web.Application(client_max_size=_MAX_BODY_BYTES)
    stats = GigaChatStats()
    models_body = encode({"object": "list", "data": [_model_object(n) for n in _ALL_MODELS]})
    faults = GigaChatFaults()
    app[STATS_KEY] = stats
    app[FAULTS_KEY] = faults
    app[_STATE_KEY] = _State(
        options=options,
        injector=ErrorInjector(options.error_rate, options.seed),
        stats=stats,
        faults=faults,
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
