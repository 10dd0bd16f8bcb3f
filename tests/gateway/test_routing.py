"""Routing through the whole gateway over real HTTP, with faults injected into the GigaChat
emulator: fallbacks, retries honouring Retry-After, client errors, circuit breaking, streams,
per-request ``models``, weighted routes, capabilities, key restrictions and client disconnects."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.gateway_fixtures import gateway_settings
from tests.servers import BackgroundLoop, RunningGateway
from xrouter.emulators.gigachat import FAULTS_KEY, STATS_KEY, GigaChatFaults, GigaChatStats
from xrouter.emulators.options import EmulatorOptions
from xrouter.emulators.server import RunningEmulator, start_emulator
from xrouter.keys.service import CreatedKey
from xrouter.storage.migrate import upgrade

HELLO = [{"role": "user", "content": "Привет"}]
READ_TIMEOUT_SECONDS = 5.0
BREAKER_OPEN_SECONDS = 1.0
ROUTES = """
smart:
  targets:
    - {model: gigachat/GigaChat-2-Max, timeouts: {first_byte: 0.5}}
    - yandex/yandexgpt
patient:
  retries: 2
  deadline_seconds: 10
  targets: [gigachat/GigaChat-2]
hasty:
  retries: 2
  deadline_seconds: 3
  targets: [gigachat/GigaChat-2, yandex/yandexgpt-lite]
guarded:
  targets: [gigachat/GigaChat-2-Pro, yandex/yandexgpt-lite]
split:
  strategy: weighted
  targets:
    - {model: gigachat/GigaChat-2, weight: 4}
    - {model: yandex/yandexgpt-lite, weight: 1}
capable:
  targets: [gigachat/GigaChat-2, yandex/yandexgpt]
staging:
  alias: yandex/yandexgpt
  owners: [staging]
  targets: [yandex/yandexgpt:rc]
"""


@pytest.fixture(scope="module")
def gigachat(loop: BackgroundLoop) -> Iterator[RunningEmulator]:
    emulator = loop.run(start_emulator("gigachat", EmulatorOptions(stream_chunks=4)))
    yield emulator
    loop.run(emulator.close())


@pytest.fixture(scope="module")
def routes_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("routes") / "routes.yaml"
    path.write_text(ROUTES, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def running(
    loop: BackgroundLoop,
    gigachat: RunningEmulator,
    emulators: dict[str, RunningEmulator],
    routes_file: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RunningGateway]:
    settings = gateway_settings(
        tmp_path_factory.mktemp("routing") / "x.db",
        gigachat.url,
        emulators["yandex"].url,
        routes_file=routes_file,
        upstream_read_timeout_seconds=READ_TIMEOUT_SECONDS,
        routing_backoff_base_ms=50,
        routing_breaker_min_requests=3,
        routing_breaker_failure_ratio=0.5,
        routing_breaker_open_seconds=BREAKER_OPEN_SECONDS,
        routing_key_providers={"owner:residency": ["yandex"]},
    )
    upgrade(settings.database_url)
    gateway = RunningGateway(settings, loop)
    yield gateway
    gateway.stop()


def make_key(running: RunningGateway, name: str, owner: str | None = None, **kw: Any) -> str:
    service = running.runtime.key_service
    created: CreatedKey = running.loop.run(service.create(name, owner, **kw))
    deadline = time.monotonic() + 10
    while running.runtime.keys.lookup(created.key) is None:
        assert time.monotonic() < deadline, "the key never reached the gateway's cache"
        time.sleep(0.05)
    return created.key


@pytest.fixture(scope="module")
def key(running: RunningGateway) -> str:
    return make_key(running, "routing")


@pytest.fixture
def faults(gigachat: RunningEmulator, running: RunningGateway) -> Iterator[GigaChatFaults]:
    faults = gigachat.app[FAULTS_KEY]
    yield faults
    faults.clear()

    async def reset() -> None:
        running.runtime.routing.breakers.reset()

    running.loop.run(reset())


@pytest.fixture
def stats(gigachat: RunningEmulator) -> GigaChatStats:
    return gigachat.app[STATS_KEY]


def post(running: RunningGateway, key: str, model: str, **fields: Any) -> httpx.Response:
    return httpx.post(
        f"{running.url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": model, "messages": HELLO, **fields},
        timeout=30,
    )


def attempts(response: httpx.Response) -> list[dict[str, str]]:
    """The ``x-xrouter-attempts`` header as a list of ``{"target", "status", ...}``."""
    parsed = []
    for entry in response.headers["x-xrouter-attempts"].split(", "):
        target, *pairs = entry.split(";")
        parsed.append({"target": target, **dict(pair.split("=", 1) for pair in pairs)})
    return parsed


def tried(response: httpx.Response) -> list[tuple[str, str]]:
    return [(a["target"], a.get("status") or a["skipped"]) for a in attempts(response)]


def events(response: httpx.Response) -> list[Any]:
    frames = [frame for frame in response.text.split("\n\n") if frame]
    assert frames[-1] == "data: [DONE]"
    return [json.loads(frame.removeprefix("data: ")) for frame in frames[:-1]]


def wait_for(condition: Any, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return bool(condition())


def test_primary_500_is_served_by_the_secondary_with_one_extra_attempt(
    running: RunningGateway, key: str, faults: GigaChatFaults, stats: GigaChatStats
) -> None:
    faults.status = 500
    before = stats.api_requests
    response = post(running, key, "smart")
    assert response.status_code == 200
    assert response.json()["model"] == "yandex/yandexgpt"
    assert response.headers["x-xrouter-provider"] == "yandex"
    assert tried(response) == [("gigachat/GigaChat-2-Max", "502"), ("yandex/yandexgpt", "200")]
    assert attempts(response)[0]["error"] == "upstream_server_error"
    assert stats.api_requests - before == 1
    [record] = running.usage_records(response.headers["x-request-id"])
    assert (record.model, record.provider, record.status_code) == (
        "yandex/yandexgpt",
        "yandex",
        200,
    )


def test_primary_slow_past_its_first_byte_timeout_falls_back(
    running: RunningGateway, gigachat: RunningEmulator, key: str, faults: GigaChatFaults
) -> None:
    faults.mode, faults.stall_seconds = "stall", 10
    left_before = gigachat.connections.client_disconnects
    response = post(running, key, "smart")
    assert response.status_code == 200
    assert response.json()["model"] == "yandex/yandexgpt"
    assert tried(response) == [("gigachat/GigaChat-2-Max", "504"), ("yandex/yandexgpt", "200")]
    assert attempts(response)[0]["error"] == "upstream_timeout"
    # The abandoned attempt's connection was closed, not left to run.
    assert wait_for(lambda: gigachat.connections.client_disconnects > left_before, 3)


def test_429_retry_after_is_honoured_within_the_deadline(
    running: RunningGateway, key: str, faults: GigaChatFaults, stats: GigaChatStats
) -> None:
    faults.status, faults.retry_after, faults.remaining = 429, "1", 1
    before = stats.api_requests
    started = time.monotonic()
    response = post(running, key, "patient")
    waited = time.monotonic() - started
    assert response.status_code == 200
    assert response.json()["model"] == "gigachat/GigaChat-2"
    assert tried(response) == [("gigachat/GigaChat-2", "429"), ("gigachat/GigaChat-2", "200")]
    assert stats.api_requests - before == 2
    assert waited >= 0.95  # the retry waited for the second Retry-After asked for


def test_429_retry_after_beyond_the_deadline_falls_back_at_once(
    running: RunningGateway, key: str, faults: GigaChatFaults, stats: GigaChatStats
) -> None:
    faults.status, faults.retry_after = 429, "30"
    before = stats.api_requests
    response = post(running, key, "hasty")
    assert response.status_code == 200
    assert tried(response) == [("gigachat/GigaChat-2", "429"), ("yandex/yandexgpt-lite", "200")]
    assert stats.api_requests - before == 1


@pytest.mark.parametrize("route", ["patient", "smart"])
def test_a_client_error_is_neither_retried_nor_sent_elsewhere(
    running: RunningGateway, key: str, faults: GigaChatFaults, stats: GigaChatStats, route: str
) -> None:
    faults.status = 400
    before = stats.api_requests
    response = post(running, key, route)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "upstream_bad_request"
    assert len(attempts(response)) == 1
    assert attempts(response)[0]["error"] == "upstream_bad_request"
    assert stats.api_requests - before == 1


def breaker_state(running: RunningGateway, target: str) -> float | None:
    text = httpx.get(f"{running.url}/metrics", timeout=10).text
    prefix = f'xrouter_routing_breaker_state{{target="{target}"}} '
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line.removeprefix(prefix))
    return None


def test_breaker_opens_after_the_threshold_and_a_probe_closes_it(
    running: RunningGateway, key: str, faults: GigaChatFaults, stats: GigaChatStats
) -> None:
    primary = "gigachat/GigaChat-2-Pro"
    faults.status = 500
    for _ in range(3):
        response = post(running, key, "guarded")
        assert tried(response) == [(primary, "502"), ("yandex/yandexgpt-lite", "200")]
    assert breaker_state(running, primary) == 2  # open
    before = stats.api_requests
    response = post(running, key, "guarded")
    assert response.status_code == 200
    assert tried(response) == [(primary, "circuit_open"), ("yandex/yandexgpt-lite", "200")]
    assert stats.api_requests == before  # skipped instantly
    faults.clear()
    time.sleep(BREAKER_OPEN_SECONDS + 0.1)
    response = post(running, key, "guarded")  # the half-open probe
    assert response.json()["model"] == primary
    assert tried(response) == [(primary, "200")]
    assert breaker_state(running, primary) == 0  # closed


def test_a_stream_falls_back_before_its_first_byte(
    running: RunningGateway, key: str, faults: GigaChatFaults
) -> None:
    faults.status = 503
    response = post(running, key, "smart", stream=True)
    assert response.status_code == 200
    assert response.headers["x-xrouter-provider"] == "yandex"
    chunks = events(response)
    assert {chunk["model"] for chunk in chunks} == {"yandex/yandexgpt"}
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_a_mid_stream_failure_ends_with_an_error_event(
    running: RunningGateway, key: str, faults: GigaChatFaults
) -> None:
    faults.mode = "truncated"
    response = post(running, key, "smart", stream=True)
    assert response.status_code == 200
    assert tried(response) == [("gigachat/GigaChat-2-Max", "200")]
    chunks = events(response)
    assert chunks[1]["choices"][0]["delta"]["content"]  # the part that did arrive
    assert chunks[-1]["error"]["code"] == "upstream_truncated_stream"
    assert {chunk["model"] for chunk in chunks[:-1]} == {"gigachat/GigaChat-2-Max"}


def test_the_per_request_models_list_is_honoured(
    running: RunningGateway, key: str, faults: GigaChatFaults
) -> None:
    with openai.OpenAI(base_url=f"{running.url}/v1", api_key=key, max_retries=0) as client:
        models = {"models": ["yandex/yandexgpt-lite"]}
        reply = client.chat.completions.create(
            model="gigachat/GigaChat-2",
            messages=HELLO,  # type: ignore[arg-type]
            extra_body=models,
        )
        assert reply.model == "gigachat/GigaChat-2"
        faults.status = 500
        reply = client.chat.completions.create(
            model="gigachat/GigaChat-2",
            messages=HELLO,  # type: ignore[arg-type]
            extra_body=models,
        )
        assert reply.model == "yandex/yandexgpt-lite"
    response = post(running, key, "smart", provider={"order": ["yandex"]})
    assert tried(response) == [("yandex/yandexgpt", "200")]
    response = post(running, key, "smart", provider={"allow_fallbacks": False})
    assert response.status_code == 502
    assert tried(response) == [("gigachat/GigaChat-2-Max", "502")]


def test_a_weighted_route_splits_traffic(running: RunningGateway, key: str) -> None:
    served = Counter(post(running, key, "split").headers["x-xrouter-provider"] for _ in range(200))
    # 4:1 weights: 160 of 200 expected, 5 standard deviations either side; 1:1 would fail.
    assert 130 <= served["gigachat"] <= 190, served
    assert served["gigachat"] + served["yandex"] == 200


def test_targets_that_cannot_honour_a_parameter_are_skipped(
    running: RunningGateway, key: str
) -> None:
    # GigaChat takes json_schema but not json_object: the route moves on to Yandex.
    response = post(running, key, "capable", response_format={"type": "json_object"})
    assert response.status_code == 200
    assert tried(response) == [("gigachat/GigaChat-2", "incapable"), ("yandex/yandexgpt", "200")]
    # Neither provider takes `stop`: the error names both.
    response = post(running, key, "capable", stop=["\n"])
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "no_capable_target"
    assert "gigachat/GigaChat-2:" in error["message"]
    assert "yandex/yandexgpt:" in error["message"]
    # One sentence: the providers' own sentences lose their full stops inside it.
    assert ".;" not in error["message"]
    assert error["message"].endswith("parameter.")


def test_a_key_restricted_to_a_provider_never_reaches_the_other(
    running: RunningGateway, faults: GigaChatFaults, stats: GigaChatStats
) -> None:
    resident = make_key(running, "resident", "residency")
    before = stats.api_requests
    response = post(running, resident, "smart")
    assert response.json()["model"] == "yandex/yandexgpt"
    assert tried(response) == [
        ("gigachat/GigaChat-2-Max", "key_forbids"),
        ("yandex/yandexgpt", "200"),
    ]
    response = post(running, resident, "gigachat/GigaChat-2")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "provider_not_allowed"
    assert stats.api_requests == before


def test_an_alias_pins_a_version_for_a_staging_owner(running: RunningGateway, key: str) -> None:
    staging = make_key(running, "staging", "staging")
    pinned = post(running, staging, "yandex/yandexgpt").json()
    plain = post(running, key, "yandex/yandexgpt").json()
    assert pinned["model"] == "yandex/yandexgpt:rc"
    assert plain["model"] == "yandex/yandexgpt"
    assert pinned["system_fingerprint"] != plain["system_fingerprint"]


def test_client_disconnect_cancels_the_upstream_call(
    running: RunningGateway, gigachat: RunningEmulator, key: str, faults: GigaChatFaults
) -> None:
    faults.mode, faults.stall_seconds = "stall", 30
    before = gigachat.connections.client_disconnects
    with pytest.raises(httpx.ReadTimeout):
        post_with_timeout(running, key, 0.5)
    left = time.monotonic()
    assert wait_for(lambda: gigachat.connections.client_disconnects > before, 4)
    # Well before the gateway's own read timeout could have ended the upstream call.
    assert time.monotonic() - left < READ_TIMEOUT_SECONDS
    metrics = httpx.get(f"{running.url}/metrics", timeout=10).text
    assert "xrouter_routing_client_disconnects_total 0.0" not in metrics
    assert "xrouter_routing_client_disconnects_total" in metrics
    # A stream: the client reads the start, then leaves while the upstream holds.
    faults.mode = "hold"
    before = gigachat.connections.client_disconnects
    with httpx.stream(
        "POST",
        f"{running.url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": "gigachat/GigaChat-2", "messages": HELLO, "stream": True},
        timeout=10,
    ) as response:
        assert response.status_code == 200
        assert next(response.iter_raw())
    assert wait_for(lambda: gigachat.connections.client_disconnects > before, 4)


def post_with_timeout(running: RunningGateway, key: str, seconds: float) -> httpx.Response:
    return httpx.post(
        f"{running.url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": "gigachat/GigaChat-2", "messages": HELLO},
        timeout=seconds,
    )


def test_metrics_per_target(running: RunningGateway, key: str, faults: GigaChatFaults) -> None:
    faults.status, faults.remaining = 500, 1
    post(running, key, "smart")
    text = httpx.get(f"{running.url}/metrics", timeout=10).text
    for line in (
        'xrouter_routing_attempts_total{outcome="ok",target="yandex/yandexgpt"}',
        'xrouter_routing_failures_total{kind="server",target="gigachat/GigaChat-2-Max"}',
        'xrouter_routing_fallbacks_total{target="gigachat/GigaChat-2-Max"}',
        'xrouter_routing_first_byte_seconds_bucket{le="0.5",target="yandex/yandexgpt"}',
        'xrouter_routing_attempt_seconds_count{outcome="server",target="gigachat/GigaChat-2-Max"}',
    ):
        assert line in text, line


def test_admin_api_inspects_and_reloads_routes(
    running: RunningGateway, key: str, routes_file: Path
) -> None:
    admin = {"Authorization": f"Bearer {make_key(running, 'ops', kind='management')}"}
    url = f"{running.url}/api/admin/routes"
    listed = httpx.get(url, headers=admin, timeout=10)
    assert listed.status_code == 200
    smart = next(r for r in listed.json()["data"] if r["name"] == "smart")
    assert [t["model"] for t in smart["targets"]] == ["gigachat/GigaChat-2-Max", "yandex/yandexgpt"]
    assert httpx.get(url, headers={"Authorization": f"Bearer {key}"}, timeout=10).status_code == 403
    try:
        routes_file.write_text(ROUTES + "fresh:\n  targets: [yandex/yandexgpt-lite]\n")
        assert post(running, key, "fresh").status_code == 404
        reloaded = httpx.post(f"{url}/reload", headers=admin, timeout=10)
        assert reloaded.status_code == 200
        assert "fresh" in {r["name"] for r in reloaded.json()["data"]}
        assert post(running, key, "fresh").json()["model"] == "yandex/yandexgpt-lite"
        routes_file.write_text("fresh: {targets: [nowhere]}\n")
        refused = httpx.post(f"{url}/reload", headers=admin, timeout=10)
        assert refused.status_code == 400
        assert refused.json()["error"]["code"] == "invalid_routes"
        assert post(running, key, "fresh").status_code == 200  # the old routes stay
    finally:
        routes_file.write_text(ROUTES)
        httpx.post(f"{url}/reload", headers=admin, timeout=10)
