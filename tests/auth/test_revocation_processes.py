"""Two real ``xrouter serve`` processes sharing PostgreSQL and Redis: a token revoked through
one is refused by the other within a second."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

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
from xrouter.auth.clients import ClientService
from xrouter.auth.users import UserService
from xrouter.keys.hashing import KeyHasher
from xrouter.storage.database import create_engine, session_factory
from xrouter.storage.migrate import upgrade_async

pytestmark = [pytest.mark.postgres, pytest.mark.redis]
ISSUER = "http://xrouter.processes.test"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _prepare(database_url: str) -> tuple[str, str]:
    engine = create_async_engine(database_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            await connection.execute(text("CREATE SCHEMA public"))
    finally:
        await engine.dispose()
    await upgrade_async(database_url)
    engine = create_engine(database_url)
    try:
        sessions = session_factory(engine)
        user = await UserService(sessions, cheap_passwords()).create("two@example.com", PASSWORD)
        client = await ClientService(sessions, KeyHasher(PEPPER)).create("Two", [REDIRECT_URI])
    finally:
        await engine.dispose()
    return user.email, client.info.id


def _serve(cwd: Path, environment: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "xrouter", "serve", "--port", str(port)],
        cwd=cwd,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return process, f"http://127.0.0.1:{port}"


def _wait_ready(process: subprocess.Popen[str], url: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/ready", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            output = process.stdout.read() if process.stdout else ""
            raise AssertionError(f"serve did not become ready:\n{output}")
        time.sleep(0.1)


@pytest.fixture
def two_gateways(
    postgres_url: str, redis_url: str, tmp_path: Path
) -> Iterator[tuple[str, str, str, str]]:
    email, client_id = asyncio.run(_prepare(postgres_url))
    environment = {k: v for k, v in os.environ.items() if not k.startswith("XROUTER_")}
    environment.update(
        XROUTER_DATABASE_URL=postgres_url,
        XROUTER_REDIS_URL=redis_url,
        XROUTER_KEY_PEPPER=PEPPER.decode(),
        XROUTER_OAUTH_ISSUER=ISSUER,
        XROUTER_LOG_LEVEL="warning",
    )
    processes = [_serve(tmp_path, environment) for _ in range(2)]
    try:
        for process, url in processes:
            _wait_ready(process, url)
        yield processes[0][1], processes[1][1], email, client_id
    finally:
        for process, _ in processes:
            process.send_signal(signal.SIGTERM)
        for process, _ in processes:
            try:
                process.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.communicate()


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
    return str(response.json()["access_token"])


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
