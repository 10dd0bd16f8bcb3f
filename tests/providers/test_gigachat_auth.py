"""The GigaChat token cache against the emulator over loopback: sources, refresh, refusals."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator
from dataclasses import replace

import aiohttp
import pytest

from xrouter.emulators.gigachat import FAULTS_KEY, STATS_KEY
from xrouter.emulators.options import EmulatorOptions
from xrouter.emulators.server import GIGACHAT_EMULATOR_CREDENTIALS, RunningEmulator, start_emulator
from xrouter.errors import UpstreamError
from xrouter.providers.gigachat_auth import GigaChatConfig, GigaChatTokenCache, _parse_token


@pytest.fixture
async def emulator() -> AsyncIterator[RunningEmulator]:
    running = await start_emulator("gigachat")
    yield running
    await running.close()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


def config(emulator: RunningEmulator, **fields: object) -> GigaChatConfig:
    base = GigaChatConfig(
        base_url=f"{emulator.url}/api/v1",
        auth_url=f"{emulator.url}/api/v2/oauth",
        credentials=GIGACHAT_EMULATOR_CREDENTIALS,
    )
    return replace(base, **fields)  # type: ignore[arg-type]


async def test_concurrent_requests_at_expiry_share_one_refresh(
    emulator: RunningEmulator, session: aiohttp.ClientSession
) -> None:
    faults = emulator.app[FAULTS_KEY]
    faults.token_ttl_seconds = 0.2
    cache = GigaChatTokenCache(config(emulator), session, False)
    first = await cache.token()
    await asyncio.sleep(0.25)
    faults.token_ttl_seconds = None
    tokens = await asyncio.gather(*(cache.token() for _ in range(100)))
    assert len(set(tokens)) == 1
    assert tokens[0] != first
    assert emulator.app[STATS_KEY].token_requests == 2


async def test_a_failed_refresh_is_shared_too(
    emulator: RunningEmulator, session: aiohttp.ClientSession
) -> None:
    emulator.app[FAULTS_KEY].oauth_status = 503
    cache = GigaChatTokenCache(config(emulator), session, False)
    outcomes = await asyncio.gather(*(cache.token() for _ in range(50)), return_exceptions=True)
    assert all(isinstance(outcome, UpstreamError) for outcome in outcomes)
    assert emulator.app[STATS_KEY].token_requests == 1
    emulator.app[FAULTS_KEY].oauth_status = None
    assert await cache.token()  # the failure is not cached
    assert emulator.app[STATS_KEY].token_requests == 2


async def test_invalidation_keeps_a_newer_token(
    emulator: RunningEmulator, session: aiohttp.ClientSession
) -> None:
    cache = GigaChatTokenCache(config(emulator), session, False)
    old = await cache.token()
    cache.invalidate(old)
    new = await cache.token()
    assert new != old
    cache.invalidate(old)  # a late 401 for the old token must not discard the new one
    assert await cache.token() == new
    assert emulator.app[STATS_KEY].token_requests == 2


async def test_password_auth_uses_the_token_endpoint(
    emulator: RunningEmulator, session: aiohttp.ClientSession
) -> None:
    cache = GigaChatTokenCache(
        config(emulator, credentials=None, user="user", password="p@ss:word"), session, False
    )
    token = await cache.token()
    async with session.get(
        f"{emulator.url}/api/v1/models", headers={"Authorization": f"Bearer {token}"}
    ) as response:
        assert response.status == 200
    assert emulator.app[STATS_KEY].token_requests == 1


async def test_a_ready_made_token_is_used_as_is(
    emulator: RunningEmulator, session: aiohttp.ClientSession
) -> None:
    cache = GigaChatTokenCache(
        config(emulator, credentials=None, access_token="ready-made"), session, False
    )
    assert await cache.token() == "ready-made"
    cache.invalidate("ready-made")  # nothing to refresh it with: it stays
    assert await cache.token() == "ready-made"
    assert emulator.app[STATS_KEY].token_requests == 0


async def test_a_ready_made_token_with_a_key_falls_back_to_oauth(
    emulator: RunningEmulator, session: aiohttp.ClientSession
) -> None:
    cache = GigaChatTokenCache(config(emulator, access_token="ready-made"), session, False)
    assert await cache.token() == "ready-made"
    cache.invalidate("ready-made")
    assert await cache.token() != "ready-made"
    assert emulator.app[STATS_KEY].token_requests == 1


@pytest.mark.parametrize(
    ("oauth_status", "status", "code", "retryable"),
    [
        (401, 502, "upstream_auth_failed", False),
        (400, 502, "upstream_auth_failed", False),
        (429, 429, "upstream_rate_limited", True),
        (500, 502, "upstream_server_error", True),
        (503, 502, "upstream_server_error", True),
    ],
)
async def test_token_endpoint_refusals_are_mapped(
    emulator: RunningEmulator,
    session: aiohttp.ClientSession,
    oauth_status: int,
    status: int,
    code: str,
    retryable: bool,
) -> None:
    faults = emulator.app[FAULTS_KEY]
    faults.oauth_status = oauth_status
    faults.retry_after = "9" if oauth_status == 429 else None
    cache = GigaChatTokenCache(config(emulator), session, False)
    with pytest.raises(UpstreamError) as caught:
        await cache.token()
    error = caught.value
    assert (error.status, error.code, error.retryable) == (status, code, retryable)
    assert GIGACHAT_EMULATOR_CREDENTIALS not in error.message
    if oauth_status == 401:
        assert "code 6" in error.message
    if oauth_status == 429:
        assert error.headers["retry-after"] == "9"


async def test_bad_credentials_are_refused_without_echoing_them(
    session: aiohttp.ClientSession,
) -> None:
    options = EmulatorOptions(authorization_key=GIGACHAT_EMULATOR_CREDENTIALS)
    running = await start_emulator("gigachat", options)
    try:
        wrong = base64.b64encode(b"someone:else").decode()
        cache = GigaChatTokenCache(config(running, credentials=wrong), session, False)
        with pytest.raises(UpstreamError) as caught:
            await cache.token()
        assert caught.value.code == "upstream_auth_failed"
        assert wrong not in caught.value.message
    finally:
        await running.close()


@pytest.mark.parametrize("in_seconds", [False, True])
def test_expiry_in_milliseconds_or_seconds(in_seconds: bool) -> None:
    """The docs' example shows a 10-digit expires_at; real answers use milliseconds."""
    expires = time.time() + 1800
    value = int(expires if in_seconds else expires * 1000)
    token = _parse_token(json.dumps({"access_token": "t", "expires_at": value}).encode())
    assert expires - 61 < token.refresh_at < expires - 59


def test_short_lived_tokens_are_renewed_halfway() -> None:
    expires = time.time() + 10
    token = _parse_token(json.dumps({"tok": "t", "exp": int(expires * 1000)}).encode())
    assert expires - 5.1 < token.refresh_at < expires - 4.9


def test_a_token_answer_that_is_not_json_is_malformed() -> None:
    with pytest.raises(UpstreamError) as caught:
        _parse_token(b"<html></html>")
    assert caught.value.code == "upstream_malformed_response"


async def test_the_current_token_is_there_until_it_is_due(
    emulator: RunningEmulator, session: aiohttp.ClientSession
) -> None:
    emulator.app[FAULTS_KEY].token_ttl_seconds = 0.2
    cache = GigaChatTokenCache(config(emulator), session, False)
    assert cache.current() is None  # nothing fetched yet
    token = await cache.token()
    assert cache.current() == token
    await asyncio.sleep(0.25)
    assert cache.current() is None  # due for a refresh: only token() renews it
