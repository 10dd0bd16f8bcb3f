"""Probes and the OpenAPI document of the control plane."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.gateway_fixtures import gateway_settings
from tests.servers import BackgroundLoop, RunningGateway
from xrouter.emulators.server import RunningEmulator
from xrouter.storage.migrate import upgrade


def test_health(gateway: RunningGateway) -> None:
    response = httpx.get(f"{gateway.url}/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_ready_checks_the_database(gateway: RunningGateway) -> None:
    response = httpx.get(f"{gateway.url}/ready")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "checks": {"database": "ok"}}


@pytest.fixture
def gateway_with_redis(
    loop: BackgroundLoop,
    emulators: dict[str, RunningEmulator],
    tmp_path: Path,
    redis_url: str,
) -> RunningGateway:
    database = tmp_path / "x.db"
    settings = gateway_settings(
        database, emulators["gigachat"].url, emulators["yandex"].url, redis_url=redis_url
    )
    upgrade(settings.database_url)
    running = RunningGateway(settings, loop)
    yield running  # type: ignore[misc]
    running.stop()


def test_ready_checks_redis_when_configured(gateway_with_redis: RunningGateway) -> None:
    response = httpx.get(f"{gateway_with_redis.url}/ready")
    assert response.status_code == 200
    assert response.json()["checks"] == {"database": "ok", "redis": "ok"}


@pytest.mark.parametrize(
    ("policy", "status", "code"), [("closed", "unavailable", 503), ("open", "degraded", 200)]
)
def test_ready_when_redis_is_unreachable(
    loop: BackgroundLoop,
    emulators: dict[str, RunningEmulator],
    tmp_path: Path,
    policy: str,
    status: str,
    code: int,
) -> None:
    """Fail-closed limits need Redis to serve; fail-open ones serve on, so the instance stays
    in the load balancer and says it is degraded."""
    settings = gateway_settings(
        tmp_path / "x.db",
        emulators["gigachat"].url,
        emulators["yandex"].url,
        redis_url="redis://127.0.0.1:1/0",
        rate_limit_failure_policy=policy,
    )
    upgrade(settings.database_url)
    running = RunningGateway(settings, loop)
    try:
        response = httpx.get(f"{running.url}/ready", timeout=10)
        assert response.status_code == code
        body = response.json()
        assert body["status"] == status
        assert body["checks"]["database"] == "ok"
        assert body["checks"]["redis"].startswith("unreachable")
    finally:
        running.stop()


def test_openapi_describes_the_gateway_endpoints(gateway: RunningGateway) -> None:
    schema = httpx.get(f"{gateway.url}/openapi.json").json()
    assert {"/v1/chat/completions", "/v1/embeddings", "/v1/models", "/health", "/ready"} <= set(
        schema["paths"]
    )
    chat = schema["paths"]["/v1/chat/completions"]["post"]
    request_ref = chat["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    request_schema = schema["components"]["schemas"][request_ref.rsplit("/", 1)[1]]
    assert {"model", "messages"} <= set(request_schema["required"])
    assert "ChatCompletion" in schema["components"]["schemas"]
    retrieve = schema["paths"]["/v1/models/{model}"]["get"]
    assert retrieve["operationId"] == "retrieveModel"
    assert set(retrieve["responses"]) == {"200", "401", "404"}
    docs = httpx.get(f"{gateway.url}/docs")
    assert docs.status_code == 200
    assert "swagger" in docs.text.lower()


def test_control_plane_errors_are_openai_shaped(gateway: RunningGateway) -> None:
    response = httpx.get(f"{gateway.url}/no/such/page")
    assert response.status_code == 404
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}
