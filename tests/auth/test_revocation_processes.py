"""Two real ``xrouter serve`` processes sharing PostgreSQL and Redis: a token revoked through
one is refused by the other within a second."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.api.oauth_helpers import (
    PASSWORD,
    REDIRECT_URI,
    Browser,
    authorize_params,
    exchange,
    hidden_fields,
    new_verifier,
    query_of,
)
from tests.auth.conftest import PEPPER, cheap_passwords
from tests.gateway_processes import GatewayProcess, environment, fresh_database, start_all, stop_all
from tests.log_secrets import register_secret
from xrouter.auth.clients import ClientService
from xrouter.auth.users import UserService
from xrouter.keys.hashing import KeyHasher
from xrouter.storage.database import create_engine, session_factory

pytestmark = [pytest.mark.postgres, pytest.mark.redis]
ISSUER = "http://xrouter.processes.test"


async def _prepare(database_url: str) -> tuple[str, str]:
    await fresh_database(database_url)
    engine = create_engine(database_url)
    try:
        sessions = session_factory(engine)
        user = await UserService(sessions, cheap_passwords()).create("two@example.com", PASSWORD)
        client = await ClientService(sessions, KeyHasher(PEPPER)).create("Two", [REDIRECT_URI])
    finally:
        await engine.dispose()
    return user.email, client.info.id


@pytest.fixture
def two_gateways(
    postgres_url: str, redis_url: str, tmp_path: Path
) -> Iterator[tuple[str, str, str, str]]:
    email, client_id = asyncio.run(_prepare(postgres_url))
    env = environment(
        XROUTER_DATABASE_URL=postgres_url,
        XROUTER_REDIS_URL=redis_url,
        XROUTER_KEY_PEPPER=PEPPER.decode(),
        XROUTER_OAUTH_ISSUER=ISSUER,
    )
    processes: list[GatewayProcess] = []
    try:
        processes = start_all(2, tmp_path, env)
        yield processes[0].url, processes[1].url, email, client_id
    finally:
        stop_all(processes)


def _token_from(url: str, email: str, client_id: str) -> str:
    verifier = new_verifier()
    with Browser(httpx.Client(base_url=url, timeout=30)) as browser:
        assert browser.login(email).status_code == 303
        consent = browser.http.get("/oauth/authorize", params=authorize_params(client_id, verifier))
        assert consent.status_code == 200, consent.text
        approved = browser.http.post(
            "/oauth/authorize", data={**hidden_fields(consent.text), "decision": "allow"}
        )
    code = query_of(approved.headers["location"])["code"]
    response = exchange(url, client_id, code, verifier)
    assert response.status_code == 200, response.text
    token = str(response.json()["access_token"])
    register_secret(token)
    return token


def test_revocation_on_one_process_reaches_the_other_within_a_second(
    two_gateways: tuple[str, str, str, str],
) -> None:
    first, second, email, client_id = two_gateways
    token = _token_from(first, email, client_id)
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(timeout=10) as http:
        # Both processes accept it (and the second now holds it in its verification cache).
        for url in (first, second, second):
            assert http.get(f"{url}/v1/models", headers=headers).status_code == 200
        revoked_at = time.monotonic()
        revoke = http.post(f"{first}/oauth/revoke", data={"token": token, "client_id": client_id})
        assert revoke.status_code == 200
        while True:
            status = http.get(f"{second}/v1/models", headers=headers).status_code
            elapsed = time.monotonic() - revoked_at
            if status == 401 or elapsed > 5:
                break
            time.sleep(0.01)
    assert status == 401
    # With Redis configured the database is polled only every 10 s: this came through Redis.
    assert elapsed < 1.0
