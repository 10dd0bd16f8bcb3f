"""The GigaChat emulator's run-time faults, token lifecycle, function-calling checks and prompt
cache, over real loopback HTTP."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from xrouter.emulators.gigachat import FAULTS_KEY, STATS_KEY, revoke_tokens
from xrouter.emulators.gigachat_faults import MALFORMED_BODY
from xrouter.emulators.server import RunningEmulator

Start = Callable[..., Awaitable[RunningEmulator]]
FetchToken = Callable[[str], Awaitable[str]]
FUNCTION = {"name": "get_time", "parameters": {"type": "object", "properties": {}}}


async def _api(start: Start, fetch_token: FetchToken) -> tuple[RunningEmulator, dict[str, str]]:
    emulator = await start("gigachat")
    return emulator, {"Authorization": f"Bearer {await fetch_token(emulator.url)}"}


def _chat(messages: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"model": "GigaChat-2", "messages": messages, **extra}


async def _post(
    session: aiohttp.ClientSession,
    emulator: RunningEmulator,
    headers: dict[str, str],
    body: dict[str, Any],
) -> tuple[int, Any]:
    url = f"{emulator.url}/api/v1/chat/completions"
    async with session.post(url, headers=headers, json=body) as response:
        return response.status, await response.json(content_type=None)


USER = [{"role": "user", "content": "Который час?"}]


async def test_expired_and_revoked_tokens_get_gigachats_401_body(
    start: Start, fetch_token: FetchToken, session: aiohttp.ClientSession
) -> None:
    emulator, headers = await _api(start, fetch_token)
    emulator.app[FAULTS_KEY].token_ttl_seconds = 0.1
    short = {"Authorization": f"Bearer {await fetch_token(emulator.url)}"}
    await asyncio.sleep(0.15)
    expired = {"status": 401, "message": "Token has expired"}
    assert await _post(session, emulator, short, _chat(USER)) == (401, expired)
    assert (await _post(session, emulator, headers, _chat(USER)))[0] == 200
    assert revoke_tokens(emulator.app) == 1
    assert await _post(session, emulator, headers, _chat(USER)) == (401, expired)
    unknown = {"Authorization": "Bearer never-issued"}
    assert await _post(session, emulator, unknown, _chat(USER)) == (
        401,
        {"status": 401, "message": "Unauthorized"},
    )
    assert emulator.app[STATS_KEY].unauthorized == 3


async def test_injected_status_for_a_number_of_requests(
    start: Start, fetch_token: FetchToken, session: aiohttp.ClientSession
) -> None:
    emulator, headers = await _api(start, fetch_token)
    faults = emulator.app[FAULTS_KEY]
    faults.status, faults.remaining, faults.retry_after = 503, 2, "5"
    url = f"{emulator.url}/api/v1/balance"
    seen = []
    for _ in range(3):
        async with session.get(url, headers=headers) as response:
            seen.append((response.status, response.headers.get("Retry-After")))
    assert seen == [(503, "5"), (503, "5"), (200, None)]


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (401, {"code": 6, "message": "credentials doesn't match db data"}),
        (429, {"code": 429, "message": "Too many requests"}),
    ],
)
async def test_injected_oauth_failures_use_the_oauth_body(
    start: Start, session: aiohttp.ClientSession, status: int, body: dict[str, Any]
) -> None:
    emulator = await start("gigachat")
    emulator.app[FAULTS_KEY].oauth_status = status
    async with session.post(f"{emulator.url}/api/v2/oauth") as response:
        assert (response.status, await response.json()) == (status, body)
        assert (response.headers.get("Retry-After") is not None) == (status == 429)


async def test_malformed_and_truncated_answers(
    start: Start, fetch_token: FetchToken, session: aiohttp.ClientSession
) -> None:
    emulator, headers = await _api(start, fetch_token)
    faults = emulator.app[FAULTS_KEY]
    url = f"{emulator.url}/api/v1/chat/completions"
    faults.mode = "malformed"
    async with session.post(url, headers=headers, json=_chat(USER)) as response:
        assert response.status == 200
        assert await response.read() == MALFORMED_BODY
    faults.mode = "truncated"
    async with session.post(url, headers=headers, json=_chat(USER, stream=True)) as response:
        body = (await response.read()).decode()
    assert body.startswith("data: ")
    assert "[DONE]" not in body
    assert "finish_reason" not in body
    async with session.post(url, headers=headers, json=_chat(USER)) as response:
        with pytest.raises(aiohttp.ClientPayloadError):
            await response.read()


async def test_reset_drops_the_connection(
    start: Start, fetch_token: FetchToken, session: aiohttp.ClientSession
) -> None:
    emulator, headers = await _api(start, fetch_token)
    emulator.app[FAULTS_KEY].mode = "reset"
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await _post(session, emulator, headers, _chat(USER))


@pytest.mark.parametrize(
    ("messages", "extra", "message"),
    [
        (
            [*USER, {"role": "function", "name": "get_time", "content": "12:00"}],
            {},
            "Invalid params: messages[1].content must be a JSON object serialized as a string",
        ),
        (
            [*USER, {"role": "function", "content": "{}"}],
            {},
            "Invalid params: messages[1] with role function needs a name",
        ),
        (
            [
                *USER,
                {
                    "role": "assistant",
                    "content": "",
                    "function_call": {"name": "get_time", "arguments": "{}"},
                },
            ],
            {},
            "Invalid params: messages[1].function_call needs a name and object arguments",
        ),
        (
            [
                *USER,
                {
                    "role": "assistant",
                    "content": "",
                    "function_call": {"name": "get_time", "arguments": {}},
                    "functions_state_id": "call_1",
                },
            ],
            {},
            "Invalid params: messages[1].functions_state_id must be a uuid",
        ),
        (USER, {"functions": [{"name": "9lives"}]}, "Invalid params: function name '9lives' "),
        (USER, {"reasoning_effort": "max"}, "Invalid params: reasoning_effort must be one of "),
        (USER, {"response_format": {"type": "json_object"}}, "Invalid params: response_format "),
        (
            USER,
            {"functions": [FUNCTION], "function_call": {"name": "other"}},
            "Invalid params: function other is not among functions",
        ),
    ],
)
async def test_function_calling_is_checked_like_gigachat(
    start: Start,
    fetch_token: FetchToken,
    session: aiohttp.ClientSession,
    messages: list[dict[str, Any]],
    extra: dict[str, Any],
    message: str,
) -> None:
    emulator, headers = await _api(start, fetch_token)
    status, body = await _post(session, emulator, headers, _chat(messages, **extra))
    assert status == 422
    assert body["message"].startswith(message)


async def test_function_round_trip_with_state_and_forced_finish_reasons(
    start: Start, fetch_token: FetchToken, session: aiohttp.ClientSession
) -> None:
    emulator, headers = await _api(start, fetch_token)
    status, body = await _post(session, emulator, headers, _chat(USER, functions=[FUNCTION]))
    message = body["choices"][0]["message"]
    history = [
        *USER,
        message,
        {"role": "function", "name": "get_time", "content": json.dumps({"time": "12:00"})},
    ]
    status, body = await _post(session, emulator, headers, _chat(history, functions=[FUNCTION]))
    assert status == 200
    assert body["choices"][0]["finish_reason"] == "stop"
    faults = emulator.app[FAULTS_KEY]
    for reason in ("blacklist", "error"):
        faults.finish_reason = reason
        status, body = await _post(session, emulator, headers, _chat(USER))
        assert body["choices"][0]["finish_reason"] == reason


async def test_prompt_cache_per_session(
    start: Start, fetch_token: FetchToken, session: aiohttp.ClientSession
) -> None:
    emulator, headers = await _api(start, fetch_token)
    history = [{"role": "system", "content": "Ты помощник."}, *USER]
    cached = []
    for extra in ({"X-Session-ID": "s1"}, {"X-Session-ID": "s1"}, {}):
        _, body = await _post(session, emulator, headers | extra, _chat(history))
        cached.append(body["usage"]["precached_prompt_tokens"])
        history = [*history, body["choices"][0]["message"], {"role": "user", "content": "Ещё"}]
    assert cached[0] == 0
    assert 0 < cached[1] < 20
    assert cached[2] == 0  # no session, no cache
