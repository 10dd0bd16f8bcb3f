"""Service-account IAM tokens against the emulator's real IAM endpoint: the JWT, one exchange
for many concurrent requests, renewal well before expiry, and failures."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey

from tests.fixtures.yandex.keys import authorized_key, write_authorized_key
from xrouter.emulators.options import EmulatorOptions
from xrouter.emulators.server import RunningEmulator, start_emulator
from xrouter.emulators.yandex import CORE_KEY, STATS_KEY
from xrouter.emulators.yandex_iam import load_authorized_key
from xrouter.errors import UpstreamError
from xrouter.providers.yandex_auth import IAM_AUDIENCE, AuthorizedKey, IamTokenCache
from xrouter.settings import ConfigurationError, load_settings

KEY = authorized_key()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def iam() -> AsyncIterator[RunningEmulator]:
    running = await start_emulator("yandex", EmulatorOptions(token_ttl_seconds=12 * 3600))
    running.app[CORE_KEY].iam.register(load_authorized_key(KEY))
    yield running
    await running.close()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


def test_jwt_is_ps256_signed_for_the_iam_audience() -> None:
    key = AuthorizedKey.from_json(KEY)
    token = jwt.decode(
        key.signed_jwt(1_900_000_000.5), RSAKey.import_key(KEY["public_key"]), algorithms=["PS256"]
    )
    assert token.header == {"typ": "JWT", "alg": "PS256", "kid": KEY["id"]}
    assert token.claims == {
        "iss": KEY["service_account_id"],
        "aud": IAM_AUDIENCE,
        "iat": 1_900_000_000,
        "exp": 1_900_003_600,
    }


async def test_concurrent_requests_share_one_exchange(
    iam: RunningEmulator, session: aiohttp.ClientSession
) -> None:
    cache = IamTokenCache(AuthorizedKey.from_json(KEY), f"{iam.url}/iam/v1/tokens", session)
    tokens = await asyncio.gather(*(cache.token() for _ in range(100)))
    assert len(set(tokens)) == 1
    assert tokens[0].startswith("t1.")
    assert iam.app[STATS_KEY].iam_token_requests == 1
    assert await cache.token() == tokens[0]
    assert iam.app[STATS_KEY].iam_token_requests == 1


async def test_renewed_in_the_background_well_before_expiry(
    iam: RunningEmulator, session: aiohttp.ClientSession
) -> None:
    clock = Clock()
    iam_url = f"{iam.url}/iam/v1/tokens"
    cache = IamTokenCache(AuthorizedKey.from_json(KEY), iam_url, session, clock=clock)
    first = await cache.token()
    # The emulator's tokens live 12 h; the cache renews after one hour.
    clock.now += 3590
    assert await cache.token() == first
    assert iam.app[STATS_KEY].iam_token_requests == 1
    clock.now += 20
    # Due for renewal: requests keep the current token while one exchange runs.
    assert await asyncio.gather(*(cache.token() for _ in range(20))) == [first] * 20
    await asyncio.sleep(0.2)
    second = await cache.token()
    assert second != first
    assert iam.app[STATS_KEY].iam_token_requests == 2


async def test_a_failed_renewal_keeps_the_current_token(
    iam: RunningEmulator, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    iam_url = f"{iam.url}/iam/v1/tokens"
    cache = IamTokenCache(AuthorizedKey.from_json(KEY), iam_url, session, clock=clock)
    first = await cache.token()
    iam.app[CORE_KEY].iam = type(iam.app[CORE_KEY].iam)(3600)  # the key is no longer known
    clock.now += 3700
    assert await cache.token() == first
    await asyncio.sleep(0.2)
    assert "could not renew the Yandex IAM token" in caplog.text
    assert await cache.token() == first
    # Past the token's expiry nothing usable is left: the request sees the refusal.
    clock.now += 12 * 3600
    with pytest.raises(UpstreamError) as caught:
        await cache.token()
    assert (caught.value.status, caught.value.code) == (502, "upstream_auth_failed")


async def test_refused_and_unreachable_iam(session: aiohttp.ClientSession) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}/iam/v1/tokens"
    cache = IamTokenCache(AuthorizedKey.from_json(KEY), closed, session)
    with pytest.raises(UpstreamError) as caught:
        await cache.token()
    assert caught.value.code == "upstream_unreachable"
    emulator = await start_emulator("yandex")  # knows no service account
    try:
        url = f"{emulator.url}/iam/v1/tokens"
        cache = IamTokenCache(AuthorizedKey.from_json(KEY), url, session)
        with pytest.raises(UpstreamError) as caught:
            await cache.token()
        assert (caught.value.status, caught.value.code) == (502, "upstream_auth_failed")
        assert KEY["id"] not in caught.value.message
    finally:
        await emulator.close()


async def test_invalidate_drops_all_but_a_fresh_token(
    iam: RunningEmulator, session: aiohttp.ClientSession
) -> None:
    clock = Clock()
    iam_url = f"{iam.url}/iam/v1/tokens"
    cache = IamTokenCache(AuthorizedKey.from_json(KEY), iam_url, session, clock=clock)
    first = await cache.token()
    cache.invalidate()  # refused right after it was issued: kept, another exchange would not help
    assert await cache.token() == first
    clock.now += 60
    cache.invalidate()
    assert await cache.token() != first
    assert iam.app[STATS_KEY].iam_token_requests == 2


def test_service_account_settings(tmp_path: Path) -> None:
    key_file = write_authorized_key(tmp_path / "key.json")
    settings = load_settings(yandex_service_account_key_file=key_file, yandex_folder_id="b1gf")
    assert settings.yandex_configured
    assert settings.yandex_iam_url == "https://iam.api.cloud.yandex.net/iam/v1/tokens"
    with pytest.raises(ConfigurationError, match=r"^XROUTER_YANDEX_FOLDER_ID: required"):
        load_settings(yandex_service_account_key_file=key_file)
    with pytest.raises(
        ConfigurationError, match=r"^XROUTER_YANDEX_SERVICE_ACCOUNT_KEY_FILE: set one"
    ):
        load_settings(
            yandex_api_key="k", yandex_service_account_key_file=key_file, yandex_folder_id="b1gf"
        )
    broken = tmp_path / "broken.json"
    broken.write_text('{"id": "x"}')
    for path in (broken, tmp_path / "missing.json"):
        with pytest.raises(ConfigurationError, match=r"^XROUTER_YANDEX_SERVICE_ACCOUNT_KEY_FILE: "):
            load_settings(yandex_service_account_key_file=path, yandex_folder_id="b1gf")
