"""The GigaChat emulator over real loopback HTTP: OAuth, chat (JSON and SSE), errors, the rest."""

from __future__ import annotations

import asyncio
import base64
import json
import math
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from xrouter.emulators.gigachat import ERROR_MESSAGES, STATS_KEY
from xrouter.emulators.options import SUPPORTED_ERROR_STATUSES
from xrouter.emulators.server import GIGACHAT_EMULATOR_CREDENTIALS, RunningEmulator

Start = Callable[..., Awaitable[RunningEmulator]]
FetchToken = Callable[[str], Awaitable[str]]

WEATHER_FUNCTION = {
    "name": "weather_forecast",
    "description": "Прогноз погоды",
    "parameters": {
        "type": "object",
        "properties": {
            "location": {"type": "string"},
            "num_days": {"type": "integer", "minimum": 1},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        },
        "required": ["location"],
    },
}


async def _api(
    start: Start, fetch_token: FetchToken, **options: Any
) -> tuple[RunningEmulator, dict[str, str]]:
    emulator = await start("gigachat", **options)
    token = await fetch_token(emulator.url)
    return emulator, {"Authorization": f"Bearer {token}"}


def _chat(
    content: str = "Привет! Расскажи про Москву и Санкт-Петербург", **extra: Any
) -> dict[str, Any]:
    return {"model": "GigaChat-2-Max", "messages": [{"role": "user", "content": content}], **extra}


async def _oauth(
    session: aiohttp.ClientSession,
    url: str,
    headers: dict[str, str],
    scope: str = "GIGACHAT_API_PERS",
) -> tuple[int, Any]:
    async with session.post(
        f"{url}/api/v2/oauth", headers=headers, data={"scope": scope}
    ) as response:
        return response.status, await response.json()


async def test_oauth_issues_a_token_with_expiry_in_milliseconds(
    start: Start, session: aiohttp.ClientSession
) -> None:
    emulator = await start("gigachat")
    headers = {
        "Authorization": f"Basic {GIGACHAT_EMULATOR_CREDENTIALS}",
        "RqUID": str(uuid.uuid4()),
    }
    status, body = await _oauth(session, emulator.url, headers)
    assert status == 200
    assert set(body) == {"access_token", "expires_at"}
    assert body["expires_at"] > time.time() * 1000 + 1700 * 1000
    assert emulator.app[STATS_KEY].token_requests == 1


@pytest.mark.parametrize(
    ("headers", "scope", "status", "code"),
    [
        ({"Authorization": f"Basic {GIGACHAT_EMULATOR_CREDENTIALS}"}, "GIGACHAT_API_PERS", 400, 2),
        (
            {"Authorization": "Basic not base64!", "RqUID": str(uuid.uuid4())},
            "GIGACHAT_API_PERS",
            400,
            4,
        ),
        (
            {"Authorization": f"Basic {GIGACHAT_EMULATOR_CREDENTIALS}", "RqUID": str(uuid.uuid4())},
            "",
            400,
            5,
        ),
        (
            {"Authorization": f"Basic {GIGACHAT_EMULATOR_CREDENTIALS}", "RqUID": str(uuid.uuid4())},
            "WHAT",
            400,
            1,
        ),
    ],
)
async def test_oauth_errors_have_code_and_message(
    start: Start,
    session: aiohttp.ClientSession,
    headers: dict[str, str],
    scope: str,
    status: int,
    code: int,
) -> None:
    emulator = await start("gigachat")
    got_status, body = await _oauth(session, emulator.url, headers, scope)
    assert (got_status, body["code"]) == (status, code)
    assert isinstance(body["message"], str)


async def test_oauth_rejects_a_key_other_than_the_configured_one(
    start: Start, session: aiohttp.ClientSession
) -> None:
    emulator = await start("gigachat", authorization_key=GIGACHAT_EMULATOR_CREDENTIALS)
    other = base64.b64encode(b"someone:else").decode()
    headers = {"Authorization": f"Basic {other}", "RqUID": str(uuid.uuid4())}
    status, body = await _oauth(session, emulator.url, headers)
    assert (status, body) == (401, {"code": 6, "message": "credentials doesn't match db data"})


@pytest.mark.parametrize("authorization", [None, "Bearer unknown-token", "Basic abc"])
async def test_api_without_a_valid_token_is_unauthorized(
    start: Start, session: aiohttp.ClientSession, authorization: str | None
) -> None:
    emulator = await start("gigachat")
    headers = {"Authorization": authorization} if authorization else {}
    async with session.get(f"{emulator.url}/api/v1/models", headers=headers) as response:
        assert response.status == 401
        assert await response.json() == {"status": 401, "message": "Unauthorized"}


async def test_expired_token_is_refused_and_a_new_one_works(
    start: Start, fetch_token: FetchToken, session: aiohttp.ClientSession
) -> None:
    emulator, headers = await _api(start, fetch_token, token_ttl_seconds=0.2)
    url = f"{emulator.url}/api/v1/models"
    async with session.get(url, headers=headers) as response:
        assert response.status == 200
    await asyncio.sleep(0.3)
    async with session.get(url, headers=headers) as response:
        assert response.status == 401
    fresh = {"Authorization": f"Bearer {await fetch_token(emulator.url)}"}
    async with session.get(url, headers=fresh) as response:
        assert response.status == 200


async def test_chat_completion_is_deterministic_and_versioned(
    start: Start, fetch_token: FetchToken, session: aiohttp.ClientSession
) -> None:
    emulator, headers = await _api(start, fetch_token)
    headers |= {"X-Request-ID": "req-1", "X-Session-ID": "sess-1", "X-Client-ID": "client-1"}
    bodies = []
    for _ in range(2):
        url = f"{emulator.url}/api/v1/chat/completions"
        async with session.post(url, headers=headers, json=_chat()) as response:
            assert response.status == 200
            assert response.headers["x-request-id"] == "req-1"
            assert response.headers["x-session-id"] == "sess-1"
            assert response.headers["x-client-id"] == "client-1"
            bodies.append(await response.json())
    first = bodies[0]
    assert first["object"] == "chat.completion"
    assert first["model"] == "GigaChat-2-Max:2.0.28.2"
    choice = first["choices"][0]
    assert choice["finish_reason"] == "stop"
    assert choice["message"]["role"] == "assistant"
    assert "Привет! Расскажи про Москву" in choice["message"]["content"]
    usage = first["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert first["choices"] == bodies[1]["choices"]
    assert emulator.app[STATS_KEY].chat_requests == 2


async def _sse_chunks(response: aiohttp.ClientResponse) -> list[Any]:
    raw = (await response.read()).decode()
    events = [event for event in raw.split("\n\n") if event]
    assert all(event.startswith("data: ") for event in events)
    assert events[-1] == "data: [DONE]"
    return [json.loads(event[len("data: ") :]) for event in events[:-1]]


async def test_stream_framing_matches_the_protocol(
    start: Start, fetch_token: FetchToken, session: aiohttp.ClientSession
) -> None:
    emulator, headers = await _api(start, fetch_token, stream_chunks=5)
    url = f"{emulator.url}/api/v1/chat/completions"
    async with session.post(url, headers=headers, json=_chat()) as response:
        expected = (await response.json())["choices"][0]["message"]["content"]
    async with session.post(url, headers=headers, json=_chat(stream=True)) as response:
        assert response.status == 200
        assert response.content_type == "text/event-stream"
        chunks = await _sse_chunks(response)
    assert len(chunks) == 6
    assert all(chunk["object"] == "chat.completion" for chunk in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert all("role" not in chunk["choices"][0]["delta"] for chunk in chunks[1:])
    assert all(
        "usage" not in chunk and "finish_reason" not in chunk["choices"][0] for chunk in chunks[:-1]
    )
    last = chunks[-1]
    assert last["choices"][0] == {"delta": {"content": ""}, "index": 0, "finish_reason": "stop"}
    assert last["usage"]["completion_tokens"] > 0
    assert "".join(chunk["choices"][0]["delta"]["content"] for chunk in chunks) == expected


async def test_functions_call_then_answer_after_the_result(
    start: Start, fetch_token: FetchToken, session: aiohttp.ClientSession
) -> None:
    emulator, headers = await _api(start, fetch_token)
    url = f"{emulator.url}/api/v1/chat/completions"
    request = _chat("Какая погода в Москве?", functions=[WEATHER_FUNCTION])
    async with session.post(url, headers=headers, json=request) as response:
        body = await response.json()
    choice = body["choices"][0]
    assert choice["finish_reason"] == "function_call"
    message = choice["message"]
    assert message["content"] == ""
    call = message["function_call"]
    assert call["name"] == "weather_forecast"
    assert call["arguments"] == {
        "location": "Какая погода в Москве?",
        "num_days": 1,
        "unit": "celsius",
    }
    assert uuid.UUID(message["functions_state_id"]).version == 4

    request["messages"] += [
        message,
        {"role": "function", "name": "weather_forecast", "content": json.dumps({"t": -5})},
    ]
    async with session.post(url, headers=headers, json=request) as response:
        answer = (await response.json())["choices"][0]
    assert answer["finish_reason"] == "stop"
    assert "weather_forecast" in answer["message"]["content"]


async def test_streamed_function_call_is_one_chunk(
    start: Start, fetch_token: FetchToken, session: aiohttp.ClientSession
) -> None:
    emulator, headers = await _api(start, fetch_token)
    url = f"{emulator.url}/api/v1/chat/completions"
    request = _chat("Погода?", functions=[WEATHER_FUNCTION], stream=True)
    async with session.post(url, headers=headers, json=request) as response:
        chunks = await _sse_chunks(response)
    assert len(chunks) == 1
    choice = chunks[0]["choices"][0]
    assert choice["finish_reason"] == "function_call"
    assert choice["delta"]["function_call"]["name"] == "weather_forecast"
    assert "usage" in chunks[0]


async def test_max_tokens_truncates_with_length(
    start: Start, fetch_token: FetchToken, session: aiohttp.ClientSession
) -> None:
    emulator, headers = await _api(start, fetch_token)
    url = f"{emulator.url}/api/v1/chat/completions"
    async with session.post(url, headers=headers, json=_chat(max_tokens=3)) as response:
        body = await response.json()
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 3


@pytest.mark.parametrize(
    ("request_body", "status", "message"),
    [
        (
            {
                "model": "GigaChat",
                "messages": [{"role": "user", "content": "a"}, {"role": "system", "content": "b"}],
            },
            422,
            "Invalid params: system message must be the first message",
        ),
        (
            {"model": "GigaChat-9", "messages": [{"role": "user", "content": "a"}]},
            404,
            "No such model",
        ),
        (
            {
                "model": "GigaChat",
                "messages": [{"role": "user", "content": "a"}],
                "repetition_penalty": 0,
            },
            422,
            "Invalid params: repetition_penalty must be in range (0, +inf)",
        ),
    ],
)
async def test_chat_validation_errors(
    start: Start,
    fetch_token: FetchToken,
    session: aiohttp.ClientSession,
    request_body: dict[str, Any],
    status: int,
    message: str,
) -> None:
    emulator, headers = await _api(start, fetch_token)
    url = f"{emulator.url}/api/v1/chat/completions"
    async with session.post(url, headers=headers, json=request_body) as response:
        assert response.status == status
        assert await response.json() == {"status": status, "message": message}


async def test_bad_json_is_400(
    start: Start, fetch_token: FetchToken, session: aiohttp.ClientSession
) -> None:
    emulator, headers = await _api(start, fetch_token)
    url = f"{emulator.url}/api/v1/chat/completions"
    async with session.post(url, headers=headers, data=b"{not json") as response:
        assert response.status == 400
        body = await response.json()
    assert body["status"] == 400
    assert isinstance(body["message"], str)


@pytest.mark.parametrize("status", sorted(SUPPORTED_ERROR_STATUSES))
@pytest.mark.parametrize("stream", [False, True])
async def test_injected_errors_have_the_provider_body(
    start: Start, fetch_token: FetchToken, session: aiohttp.ClientSession, status: int, stream: bool
) -> None:
    emulator, headers = await _api(start, fetch_token, error_rate=1.0, error_status=status)
    url = f"{emulator.url}/api/v1/chat/completions"
    async with session.post(url, headers=headers, json=_chat(stream=stream)) as response:
        assert response.status == status
        assert response.content_type == "application/json"
        assert await response.json() == {"status": status, "message": ERROR_MESSAGES[status]}
        assert (response.headers.get("Retry-After") is not None) == (status == 429)


async def test_error_injection_is_reproducible_for_a_seed(
    start: Start, fetch_token: FetchToken, session: aiohttp.ClientSession
) -> None:
    sequences = []
    for _ in range(2):
        emulator, headers = await _api(start, fetch_token, error_rate=0.5, seed=7)
        statuses = []
        for _ in range(20):
            async with session.get(f"{emulator.url}/api/v1/balance", headers=headers) as response:
                statuses.append(response.status)
        sequences.append(statuses)
    assert sequences[0] == sequences[1]
    assert set(sequences[0]) == {200, 500}


async def test_models_and_single_model(
    start: Start, fetch_token: FetchToken, session: aiohttp.ClientSession
) -> None:
    emulator, headers = await _api(start, fetch_token)
    async with session.get(f"{emulator.url}/api/v1/models", headers=headers) as response:
        body = await response.json()
    assert body["object"] == "list"
    types = {model["id"]: model["type"] for model in body["data"]}
    assert types["GigaChat-2-Max"] == "chat"
    assert types["EmbeddingsGigaR"] == "embedder"
    async with session.get(
        f"{emulator.url}/api/v1/models/GigaChat-Pro", headers=headers
    ) as response:
        assert (await response.json())["id"] == "GigaChat-Pro"
    async with session.get(f"{emulator.url}/api/v1/models/Nope", headers=headers) as response:
        assert response.status == 404
        assert await response.json() == {"status": 404, "message": "No such model"}


@pytest.mark.parametrize(
    ("model", "dimensions"),
    [("Embeddings", 1024), ("Embeddings-2", 1024), ("EmbeddingsGigaR", 2560)],
)
async def test_embeddings_have_the_model_dimensions(
    start: Start,
    fetch_token: FetchToken,
    session: aiohttp.ClientSession,
    model: str,
    dimensions: int,
) -> None:
    emulator, headers = await _api(start, fetch_token)
    request = {"model": model, "input": ["первый текст", "second"]}
    async with session.post(
        f"{emulator.url}/api/v1/embeddings", headers=headers, json=request
    ) as response:
        body = await response.json()
    assert body["object"] == "list"
    assert [item["index"] for item in body["data"]] == [0, 1]
    for item in body["data"]:
        assert len(item["embedding"]) == dimensions
        assert math.isclose(math.fsum(v * v for v in item["embedding"]), 1.0, rel_tol=1e-9)
        assert item["usage"]["prompt_tokens"] > 0


async def test_tokens_count_is_a_bare_array_and_balance_lists_usage(
    start: Start, fetch_token: FetchToken, session: aiohttp.ClientSession
) -> None:
    emulator, headers = await _api(start, fetch_token)
    request = {"model": "GigaChat", "input": ["Привет, мир", "one two"]}
    async with session.post(
        f"{emulator.url}/api/v1/tokens/count", headers=headers, json=request
    ) as response:
        counts = await response.json()
    assert counts == [
        {"object": "tokens", "tokens": 3, "characters": 11},
        {"object": "tokens", "tokens": 2, "characters": 7},
    ]
    async with session.get(f"{emulator.url}/api/v1/balance", headers=headers) as response:
        balance = (await response.json())["balance"]
    assert {"usage": "GigaChat", "value": 50000} in balance


async def test_password_token_endpoint(start: Start, session: aiohttp.ClientSession) -> None:
    emulator = await start("gigachat")
    auth = {"Authorization": "Basic " + base64.b64encode(b"user:password").decode()}
    async with session.post(f"{emulator.url}/api/v1/token", headers=auth) as response:
        body = await response.json()
    assert set(body) == {"tok", "exp"}
    headers = {"Authorization": f"Bearer {body['tok']}"}
    async with session.get(f"{emulator.url}/api/v1/balance", headers=headers) as response:
        assert response.status == 200
