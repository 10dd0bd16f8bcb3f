"""The pipelined client against real Redis servers: replies reach their callers in order under
concurrency and cancellation, errors are redis-py's, and a restart or a silent server fails
only the calls that were waiting."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis
import uvloop
from redis import exceptions as redis_errors

from tests.gateway_processes import free_port
from tests.limits.redis_server import PrivateRedis
from xrouter.limits.backend import BackendUnavailableError
from xrouter.limits.pipelined_redis import PipelinedRedis, parse_server_url
from xrouter.limits.policy import Limit
from xrouter.limits.redis_backend import RedisBackend, RedisScript, limiter_client

pytestmark = pytest.mark.redis

ECHO = RedisScript("return {KEYS[1], ARGV[1], ARGV[2]}")


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[PipelinedRedis]:
    # Generous timeouts: 500 callers at once on a loaded machine can take over a second.
    connection = PipelinedRedis.from_url(redis_url, connect_timeout=5.0, reply_timeout=5.0)
    yield connection
    await connection.aclose()


@pytest.fixture
async def private_client(private_redis: PrivateRedis) -> AsyncIterator[PipelinedRedis]:
    connection = PipelinedRedis.from_url(private_redis.url, reply_timeout=5.0)
    yield connection
    await connection.aclose()


def one_limit() -> list[Limit]:
    return [Limit("key", f"test-{uuid.uuid4().hex}", "rpm", 1000)]


async def echo(client: PipelinedRedis, index: int) -> list[bytes]:
    reply: list[bytes] = await ECHO.run(client, [f"key-{index}"], [index, f"arg-{index}"])
    return reply


def expected(index: int) -> list[bytes]:
    return [f"key-{index}".encode(), str(index).encode(), f"arg-{index}".encode()]


async def test_concurrent_callers_each_get_their_own_reply(client: PipelinedRedis) -> None:
    replies = await asyncio.gather(*(echo(client, index) for index in range(500)))
    assert replies == [expected(index) for index in range(500)]


async def test_values_are_encoded_as_redis_py_encodes_them(client: PipelinedRedis) -> None:
    values = ["привет", "", 0, -7, 10**20, 0.1, 1.5e-7, 1e300, b"\x00raw"]
    script = "return ARGV"
    replies = await client.eval(script, 0, *values)
    reference = aioredis.Redis(port=client.server.port, db=client.server.db)
    try:
        assert replies == await reference.eval(script, 0, *values)
    finally:
        await reference.aclose()
    with pytest.raises(redis_errors.DataError):
        await client.execute("ECHO", None)  # type: ignore[arg-type]


async def within_no_time(call: Awaitable[list[bytes]]) -> list[bytes]:
    """``call``, cancelled as soon as it has written its command."""
    async with asyncio.timeout(0):
        return await call


async def test_cancelled_callers_leave_the_stream_in_step(client: PipelinedRedis) -> None:
    connection_id = await client.execute("CLIENT", "ID")
    tasks = [asyncio.create_task(echo(client, index)) for index in range(300)]
    await asyncio.sleep(0)  # every caller has sent its command; no reply is read yet
    for task in tasks[::3]:
        task.cancel()
    # Callers that give up on their own budget, as the limiter's do.
    budgets = [asyncio.create_task(within_no_time(echo(client, -1))) for _ in range(50)]
    results = await asyncio.gather(*tasks, *budgets, return_exceptions=True)

    for index, result in enumerate(results[:300]):
        if index % 3 == 0:
            assert isinstance(result, asyncio.CancelledError)
        else:
            assert result == expected(index)
    assert all(isinstance(result, TimeoutError) for result in results[300:])
    assert await echo(client, 7) == expected(7)
    assert await client.execute("CLIENT", "ID") == connection_id


async def test_error_replies_raise_redis_py_errors_in_place(client: PipelinedRedis) -> None:
    key = f"test-{uuid.uuid4().hex}"
    await client.set(key, "text", ex=60)
    results = await asyncio.gather(
        client.execute("INCR", key),
        client.execute("NO-SUCH-COMMAND"),
        client.evalsha("0" * 40, 0),
        client.execute("GET", key),
        return_exceptions=True,
    )
    assert isinstance(results[0], redis_errors.ResponseError)
    assert "not an integer" in str(results[0])
    assert isinstance(results[1], redis_errors.ResponseError)
    assert isinstance(results[2], redis_errors.NoScriptError)
    assert results[3] == b"text"


async def test_set_answers_as_redis_py_does(client: PipelinedRedis) -> None:
    key = f"test-{uuid.uuid4().hex}"
    assert await client.set(key, "1", nx=True, ex=60) is True
    assert await client.set(key, "2", nx=True, ex=60) is None
    assert await client.execute("GET", key) == b"1"
    assert 0 < await client.execute("TTL", key) <= 60


async def test_a_flushed_script_is_run_by_eval(private_client: PipelinedRedis) -> None:
    assert await echo(private_client, 1) == expected(1)
    await private_client.execute("SCRIPT", "FLUSH")
    with pytest.raises(redis_errors.NoScriptError):
        await private_client.evalsha(ECHO.sha, 1, "key-2", 2, "arg-2")
    assert await echo(private_client, 2) == expected(2)  # EVAL, which caches it again
    assert await private_client.evalsha(ECHO.sha, 1, "key-3", 3, "arg-3") == expected(3)


async def test_a_restart_fails_the_waiting_calls_only(
    private_redis: PrivateRedis, private_client: PipelinedRedis
) -> None:
    blocked = [
        asyncio.create_task(private_client.execute("BLPOP", "never-pushed", 0)) for _ in range(5)
    ]
    await asyncio.sleep(0.1)
    private_redis.stop()
    for task in blocked:
        with pytest.raises(redis_errors.ConnectionError):
            await task
    with pytest.raises(redis_errors.ConnectionError):
        await private_client.execute("PING")  # refused
    private_redis.start()
    assert await private_client.ping()
    assert await echo(private_client, 1) == expected(1)


async def test_the_backend_survives_a_restart_without_a_failed_call(
    private_redis: PrivateRedis,
) -> None:
    backend = RedisBackend(limiter_client(private_redis.url), 1.0)
    try:
        assert (await backend.acquire(one_limit(), [1])).allowed
        private_redis.stop()
        private_redis.start()
        # The old connection is found closed (or fails once and is replaced within the call).
        assert (await backend.acquire(one_limit(), [1])).allowed
        private_redis.stop()
        with pytest.raises(BackendUnavailableError) as caught:
            await backend.acquire(one_limit(), [1])
        assert caught.value.reason == "connection"
        private_redis.start()
        assert (await backend.acquire(one_limit(), [1])).allowed
    finally:
        await backend.close()


def test_it_works_on_uvloop_as_in_the_gateway(private_redis: PrivateRedis) -> None:
    async def scenario() -> None:
        backend = RedisBackend(limiter_client(private_redis.url), 1.0)
        client = PipelinedRedis.from_url(private_redis.url)
        try:
            replies = await asyncio.gather(*(echo(client, index) for index in range(200)))
            assert replies == [expected(index) for index in range(200)]
            budgets = [asyncio.create_task(within_no_time(echo(client, 0))) for _ in range(20)]
            await asyncio.gather(*budgets, return_exceptions=True)
            assert await echo(client, 1) == expected(1)
            assert (await backend.acquire(one_limit(), [1])).allowed
            private_redis.stop()
            private_redis.start()
            assert (await backend.acquire(one_limit(), [1])).allowed
            assert await echo(client, 2) == expected(2)
        finally:
            await client.aclose()
            await backend.close()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(scenario())


async def test_a_silent_server_fails_the_waiting_calls(silent_server: int) -> None:
    client = PipelinedRedis.from_url(f"redis://127.0.0.1:{silent_server}", reply_timeout=0.1)
    try:
        backend = RedisBackend(client, 0.02)
        with pytest.raises(BackendUnavailableError) as caught:
            await backend.acquire(one_limit(), [1])
        assert caught.value.reason == "timeout"
        # A caller without a budget of its own: the connection is given up for it.
        with pytest.raises(redis_errors.ConnectionError, match="No reply"):
            await asyncio.wait_for(client.execute("PING"), 5)
    finally:
        await client.aclose()


async def test_the_url_logs_in_and_selects_the_database(private_redis: PrivateRedis) -> None:
    admin = redis.Redis(port=private_redis.port)
    admin.execute_command("ACL", "SETUSER", "limiter", "on", ">user-secret", "~*", "+@all")
    admin.config_set("requirepass", "default-secret")
    admin.close()
    base = f"127.0.0.1:{private_redis.port}"
    for url, db in (
        (f"redis://:default-secret@{base}/3", 3),
        (f"redis://limiter:user-secret@{base}/4", 4),
        (f"redis://limiter:user-secret@{base}?db=5", 5),
    ):
        client = PipelinedRedis.from_url(url)
        try:
            key = f"test-{uuid.uuid4().hex}"
            await client.set(key, url)
            checker = redis.Redis(port=private_redis.port, db=db, password="default-secret")
            assert checker.get(key) == url.encode()
            checker.close()
        finally:
            await client.aclose()

    refusal = await ping_failure(f"redis://limiter:wrong-secret@{base}/1")
    assert isinstance(refusal, redis_errors.AuthenticationError)
    assert "wrong-secret" not in str(refusal)


async def test_a_refused_connection_names_no_secret() -> None:
    url = f"redis://user:top-secret@127.0.0.1:{free_port()}/0"
    refusal = await ping_failure(url)
    assert isinstance(refusal, redis_errors.ConnectionError)
    assert "top-secret" not in str(refusal)
    assert "top-secret" not in repr(PipelinedRedis.from_url(url).server)


async def ping_failure(url: str) -> redis_errors.RedisError:
    """What a PING through a new client of ``url`` fails with."""
    client = PipelinedRedis.from_url(url)
    try:
        with pytest.raises(redis_errors.RedisError) as caught:
            await client.execute("PING")
    finally:
        await client.aclose()
    return caught.value


async def test_a_closed_client_refuses_calls(redis_url: str) -> None:
    client = PipelinedRedis.from_url(redis_url)
    assert await client.ping()
    await client.aclose()
    with pytest.raises(redis_errors.ConnectionError):
        await client.ping()


@pytest.fixture
def tls_files(tmp_path: Path) -> Path:
    """A self-signed certificate for 127.0.0.1 (it is its own CA) and its key."""
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(tmp_path / "key.pem"), "-out", str(tmp_path / "cert.pem")],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return tmp_path


async def test_rediss_urls_speak_tls(tmp_path: Path, tls_files: Path) -> None:
    server = PrivateRedis(tmp_path)
    tls_port = free_port()
    server.start(
        "--tls-port", str(tls_port),
        "--tls-cert-file", str(tls_files / "cert.pem"),
        "--tls-key-file", str(tls_files / "key.pem"),
        "--tls-ca-cert-file", str(tls_files / "cert.pem"),
        "--tls-auth-clients", "no",
    )  # fmt: skip
    try:
        trusted = PipelinedRedis.from_url(
            f"rediss://127.0.0.1:{tls_port}/2?ssl_ca_certs={tls_files / 'cert.pem'}"
        )
        untrusted = PipelinedRedis.from_url(f"rediss://127.0.0.1:{tls_port}/2")
        try:
            assert await echo(trusted, 1) == expected(1)
            with pytest.raises(redis_errors.ConnectionError):
                await untrusted.ping()  # the certificate is checked
        finally:
            await trusted.aclose()
            await untrusted.aclose()
    finally:
        server.stop()


def test_single_server_urls_are_parsed_as_redis_py_parses_them() -> None:
    server = parse_server_url("redis://user:p%40ss@example.com:6380/7")
    assert (server.host, server.port, server.db) == ("example.com", 6380, 7)
    assert (server.username, server.password, server.tls) == ("user", "p@ss", None)
    assert parse_server_url("redis://example.com").port == 6379
    assert parse_server_url("rediss://example.com/0?ssl_cert_reqs=none").tls is not None


@pytest.mark.parametrize(
    "url",
    [
        "redis+sentinel://s1:26379/main",
        "redis+cluster://n1:6379",
        "unix:///run/redis.sock",
        "redis://example.com/0?protocol=3",
        "redis://example.com/0?ssl_cert_reqs=none",
    ],
)
async def test_other_urls_stay_with_redis_py(url: str) -> None:
    with pytest.raises(ValueError, match=r"not supported|starts with"):
        parse_server_url(url)
    client = limiter_client(url)
    assert not isinstance(client, PipelinedRedis)
    await client.aclose()


def test_the_limiter_pipelines_single_server_urls() -> None:
    assert isinstance(limiter_client("redis://127.0.0.1:6379/0"), PipelinedRedis)
    assert isinstance(limiter_client("rediss://example.com:6380/0"), PipelinedRedis)
