"""The token cryptography (cryptography's native module, joserfc on top of it) stays out of a
serving worker until OAuth is in use, and a worker started once it is accepts tokens at once."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from tests.gateway_processes import (
    PEPPER,
    GatewayProcess,
    create_key,
    emulator_settings,
    environment,
)
from tests.log_secrets import register_secret
from tests.serving_imports import loaded_of
from xrouter.auth.revocation import Denylist
from xrouter.auth.signing_keys import SigningKeys
from xrouter.auth.tokens import AccessTokens
from xrouter.emulators.server import RunningEmulator
from xrouter.storage.database import create_engine, session_factory
from xrouter.storage.migrate import upgrade_async

ISSUER = "http://xrouter.lazy-crypto.test"
# joserfc cannot be imported without it: its absence means neither library is loaded.
NATIVE_MODULE = "cryptography/hazmat/bindings/_rust"


def test_serving_imports_no_token_cryptography() -> None:
    assert loaded_of({"cryptography.hazmat", "joserfc", "argon2"}) == []


def _maps_native_module(process: GatewayProcess) -> bool:
    return NATIVE_MODULE in Path(f"/proc/{process.process.pid}/maps").read_text()


async def _database_with_a_key(url: str) -> str:
    await upgrade_async(url)
    return (await create_key(url, "lazy")).key


async def _oauth_in_use(url: str) -> str:
    """Signing keys in the database, as an instance that issued a token leaves them, and one
    of its tokens."""
    engine = create_engine(url)
    try:
        keys = SigningKeys(
            session_factory(engine),
            PEPPER.encode(),
            rotation=timedelta(days=90),
            token_lifetime=timedelta(hours=1),
        )
        await keys.activate()
        tokens = AccessTokens(
            keys, Denylist(), issuer=ISSUER, audience=f"{ISSUER}/v1", lifetime_seconds=3600
        )
        token, _ = tokens.issue("usr_lazy", "xrc_lazy", frozenset({"inference"}))
    finally:
        await engine.dispose()
    register_secret(token)
    return token


@pytest.fixture
def serve(tmp_path: Path, emulators: dict[str, RunningEmulator]) -> tuple[str, dict[str, str]]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'xrouter.db'}"
    env = environment(
        XROUTER_DATABASE_URL=url,
        XROUTER_OAUTH_ISSUER=ISSUER,
        XROUTER_WORKERS="1",
        **emulator_settings(emulators["gigachat"].url, emulators["yandex"].url),
    )
    return url, env


def test_a_worker_serving_api_keys_never_loads_it(
    serve: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    url, env = serve
    key = asyncio.run(_database_with_a_key(url))
    process = GatewayProcess(tmp_path, env)
    try:
        with httpx.Client(base_url=process.url, timeout=30) as http:
            assert http.get("/v1/models", headers={"Authorization": f"Bearer {key}"}).is_success
            # A JWT before any key exists cannot be valid: refused without loading anything.
            jwt = "eyJhbGciOiJSUzI1NiIsInR5cCI6ImF0K2p3dCIsImtpZCI6InJzMjU2LXgifQ.e30.c2ln"
            refused = http.get("/v1/models", headers={"Authorization": f"Bearer {jwt}"})
            assert refused.status_code == 401
            assert "signing key (kid) is unknown" in refused.json()["error"]["message"]
            assert http.get("/metrics").is_success
        assert not _maps_native_module(process)
    finally:
        process.terminate()


def test_a_token_presented_to_a_fresh_worker_is_accepted(
    serve: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    url, env = serve
    asyncio.run(_database_with_a_key(url))
    token = asyncio.run(_oauth_in_use(url))
    process = GatewayProcess(tmp_path, env)
    try:
        response = httpx.get(
            f"{process.url}/v1/models", headers={"Authorization": f"Bearer {token}"}, timeout=30
        )
        assert response.status_code == 200, response.text
        assert _maps_native_module(process)
    finally:
        process.terminate()
