"""GigaChat credentials through the whole gateway over real HTTP: token refresh under
concurrency, 401-refresh-retry, a ready-made token, user/password, and TLS with a CA bundle."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.gateway_fixtures import gateway_settings
from tests.servers import BackgroundLoop, RunningGateway
from xrouter.emulators.gigachat import FAULTS_KEY, STATS_KEY, create_app, revoke_tokens
from xrouter.emulators.options import EmulatorOptions
from xrouter.emulators.server import (
    GIGACHAT_EMULATOR_CREDENTIALS,
    RunningEmulator,
    start_emulator,
)
from xrouter.storage.migrate import upgrade

MODEL = "gigachat/GigaChat-2"
HELLO = [{"role": "user", "content": "Привет"}]


@pytest.fixture
def gigachat(loop: BackgroundLoop) -> Iterator[RunningEmulator]:
    emulator = loop.run(start_emulator("gigachat", EmulatorOptions()))
    yield emulator
    loop.run(emulator.close())


def start_gateway(
    loop: BackgroundLoop, tmp_path: Path, gigachat_url: str, yandex_url: str, **overrides: object
) -> RunningGateway:
    settings = gateway_settings(
        tmp_path / f"{uuid.uuid4().hex}.db", gigachat_url, yandex_url, **overrides
    )
    upgrade(settings.database_url)
    return RunningGateway(settings, loop)


def chat(gateway: RunningGateway, key: str) -> httpx.Response:
    return httpx.post(
        f"{gateway.url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": MODEL, "messages": HELLO},
        timeout=30,
    )


async def _burst(url: str, key: str, count: int) -> list[int]:
    limits = httpx.Limits(max_connections=count)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        responses = await asyncio.gather(
            *(
                client.post(
                    f"{url}/v1/chat/completions",
                    headers={"Authorization": f"Bearer {key}"},
                    json={"model": MODEL, "messages": HELLO},
                )
                for _ in range(count)
            )
        )
    return [response.status_code for response in responses]


def test_hundred_requests_at_token_expiry_cause_one_token_request(
    loop: BackgroundLoop,
    tmp_path: Path,
    gigachat: RunningEmulator,
    emulators: dict[str, RunningEmulator],
) -> None:
    faults, stats = gigachat.app[FAULTS_KEY], gigachat.app[STATS_KEY]
    faults.token_ttl_seconds = 0.3  # the token the gateway gets at start dies quickly
    running = start_gateway(loop, tmp_path, gigachat.url, emulators["yandex"].url)
    try:
        key = running.create_key().key
        assert stats.token_requests == 1  # fetched at start, for the model list
        time.sleep(0.4)
        faults.token_ttl_seconds = None
        statuses = asyncio.run(_burst(running.url, key, 100))
        assert statuses == [200] * 100
        assert stats.token_requests == 2
        assert stats.unauthorized == 0  # renewed before use, never sent expired
    finally:
        running.stop()


def test_refused_token_is_renewed_once_and_requests_retried(
    loop: BackgroundLoop,
    tmp_path: Path,
    gigachat: RunningEmulator,
    emulators: dict[str, RunningEmulator],
) -> None:
    stats = gigachat.app[STATS_KEY]
    running = start_gateway(loop, tmp_path, gigachat.url, emulators["yandex"].url)
    try:
        key = running.create_key().key
        assert chat(running, key).status_code == 200
        before = stats.token_requests
        revoke_tokens(gigachat.app)  # the token the gateway holds now gets "Token has expired"
        response = chat(running, key)
        assert response.status_code == 200
        assert response.json()["choices"][0]["message"]["content"]
        assert stats.token_requests == before + 1
        assert stats.unauthorized == 1
        # Many requests refused at once still renew the token once.
        revoke_tokens(gigachat.app)
        assert asyncio.run(_burst(running.url, key, 50)) == [200] * 50
        assert stats.token_requests == before + 2
    finally:
        running.stop()


def test_a_ready_made_access_token(
    loop: BackgroundLoop,
    tmp_path: Path,
    gigachat: RunningEmulator,
    emulators: dict[str, RunningEmulator],
) -> None:
    token = httpx.post(
        f"{gigachat.url}/api/v2/oauth",
        headers={
            "Authorization": f"Basic {GIGACHAT_EMULATOR_CREDENTIALS}",
            "RqUID": str(uuid.uuid4()),
        },
        data={"scope": "GIGACHAT_API_PERS"},
    ).json()["access_token"]
    stats = gigachat.app[STATS_KEY]
    running = start_gateway(
        loop,
        tmp_path,
        gigachat.url,
        emulators["yandex"].url,
        gigachat_credentials=None,
        gigachat_access_token=token,
    )
    try:
        key = running.create_key().key
        assert chat(running, key).status_code == 200
        assert stats.token_requests == 1  # only the one made above
        revoke_tokens(gigachat.app)
        response = chat(running, key)  # nothing to renew it with: an operator must act
        assert (response.status_code, response.json()["error"]["code"]) == (
            502,
            "upstream_auth_failed",
        )
        assert token not in response.text
    finally:
        running.stop()


def test_user_and_password(
    loop: BackgroundLoop,
    tmp_path: Path,
    gigachat: RunningEmulator,
    emulators: dict[str, RunningEmulator],
) -> None:
    stats = gigachat.app[STATS_KEY]
    running = start_gateway(
        loop,
        tmp_path,
        gigachat.url,
        emulators["yandex"].url,
        gigachat_credentials=None,
        gigachat_user="xrouter",
        gigachat_password="s3cret:pass",
    )
    try:
        key = running.create_key().key
        with openai.OpenAI(base_url=f"{running.url}/v1", api_key=key, max_retries=0) as client:
            completion = client.chat.completions.create(model=MODEL, messages=HELLO)  # type: ignore[arg-type]
        assert completion.choices[0].message.content
        assert stats.password_token_requests == stats.token_requests == 1
    finally:
        running.stop()


# TLS with a private CA, standing in for the Russian Trusted Root CA


def _certificates(directory: Path) -> tuple[Path, ssl.SSLContext]:
    """A throwaway CA (written to ``ca.pem``) and a server context with a cert it signed."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test Trusted Root CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_path = directory / "ca.pem"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_path, key_path = directory / "server.pem", directory / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_path, key_path)
    return ca_path, context


async def _serve_https(context: ssl.SSLContext) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(create_app(EmulatorOptions()), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    return runner, f"https://127.0.0.1:{runner.addresses[0][1]}"


def test_tls_with_a_ca_bundle(
    loop: BackgroundLoop, tmp_path: Path, emulators: dict[str, RunningEmulator]
) -> None:
    ca_path, context = _certificates(tmp_path)
    runner, url = loop.run(_serve_https(context))
    try:
        trusted = start_gateway(
            loop, tmp_path, url, emulators["yandex"].url, gigachat_ca_bundle=ca_path
        )
        try:
            response = chat(trusted, trusted.create_key().key)
            assert response.status_code == 200, response.text
        finally:
            trusted.stop()
        # Verification stays on: without the bundle the same server is refused.
        untrusted = start_gateway(loop, tmp_path, url, emulators["yandex"].url)
        try:
            response = chat(untrusted, untrusted.create_key().key)
            error = response.json()["error"]
            assert (response.status_code, error["code"]) == (502, "upstream_tls_error")
            assert "CA bundle" in error["message"]
        finally:
            untrusted.stop()
    finally:
        loop.run(runner.cleanup())
