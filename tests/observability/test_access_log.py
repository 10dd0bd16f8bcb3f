"""One log line and the request metrics for every /v1 request, whatever its API or outcome."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.observability.log_records import ACCESS, access_records
from tests.servers import BackgroundLoop, RunningGateway
from xrouter.emulators.gigachat import FAULTS_KEY
from xrouter.emulators.server import RunningEmulator

CHAT = "/v1/chat/completions"


@pytest.fixture
def access_lines(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger=ACCESS)
    return caplog


def line_of(caplog: pytest.LogCaptureFixture, request_id: str) -> logging.LogRecord:
    """The one access line of ``request_id`` (logged from the gateway's thread)."""
    found = access_records(caplog, request_id)
    assert len(found) == 1, found
    return found[0]


def eventually(condition: Callable[[], bool]) -> None:
    """Wait for the gateway's thread to finish what the client already saw the end of."""
    deadline = time.monotonic() + 5
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.01)


def sample(gateway: RunningGateway, name: str, **labels: str) -> float:
    return gateway.runtime.metrics.get_sample_value(name, labels) or 0.0


def test_a_completion_logs_ids_counts_and_timings_but_no_secret(
    gateway: RunningGateway,
    http: httpx.Client,
    api_key: str,
    access_lines: pytest.LogCaptureFixture,
) -> None:
    model = "gigachat/GigaChat-2-Max"
    labels = {"api": "chat", "model": model, "provider": "gigachat", "status": "200"}
    before = sample(gateway, "xrouter_requests_total", **labels)
    tokens_in = sample(
        gateway,
        "xrouter_tokens_total",
        direction="in",
        api="chat",
        model=model,
        provider="gigachat",
    )
    prompt = "secret-prompt-text-7f3a"
    response = http.post(
        CHAT, json={"model": model, "messages": [{"role": "user", "content": prompt}]}
    )
    assert response.status_code == 200
    body = response.json()
    record = line_of(access_lines, response.headers["x-request-id"])
    assert record.getMessage() == "request"
    fields = vars(record)
    assert fields["api"] == "chat"
    assert (fields["model"], fields["provider"], fields["status"]) == (model, "gigachat", 200)
    assert fields["attempts"] == 1
    assert fields["generation_id"] == body["id"]
    assert fields["key_id"] == gateway.runtime.keys.lookup(api_key).id  # type: ignore[union-attr]
    assert fields["prompt_tokens"] == body["usage"]["prompt_tokens"]
    assert fields["completion_tokens"] == body["usage"]["completion_tokens"]
    assert fields["error_code"] is None
    assert fields["overhead_ms"] > 0
    assert fields["first_byte_ms"] > 0
    # Each figure is rounded to the microsecond on its own.
    assert fields["overhead_ms"] + fields["first_byte_ms"] <= fields["total_ms"] + 0.002
    text = json.dumps({k: v for k, v in fields.items() if k != "args"}, default=str)
    assert api_key not in text
    assert prompt not in text
    assert body["choices"][0]["message"]["content"] not in text
    assert sample(gateway, "xrouter_requests_total", **labels) == before + 1
    assert (
        sample(
            gateway,
            "xrouter_tokens_total",
            direction="in",
            api="chat",
            model=model,
            provider="gigachat",
        )
        == tokens_in + body["usage"]["prompt_tokens"]
    )
    assert sample(gateway, "xrouter_request_overhead_seconds_count", api="chat") > 0


def test_a_stream_is_counted_as_active_until_it_ends(
    gateway: RunningGateway,
    http: httpx.Client,
    loop: BackgroundLoop,
    emulators: dict[str, RunningEmulator],
    access_lines: pytest.LogCaptureFixture,
) -> None:
    labels = {"api": "chat", "provider": "gigachat", "stream": "true"}
    first_bytes = sample(gateway, "xrouter_request_upstream_first_byte_seconds_count", **labels)
    idle = sample(gateway, "xrouter_active_streams")
    faults = emulators["gigachat"].app[FAULTS_KEY]
    # The first event, then nothing until released. For every stream: a count would also be
    # used up by the catalogue's background refresh.
    faults.mode = "hold"
    # Other tests shorten the hold; clear() leaves it.
    held_for, faults.stall_seconds = faults.stall_seconds, 30.0
    request = {
        "model": "gigachat/GigaChat-2-Max",
        "messages": [{"role": "user", "content": "Расскажи длинную сказку"}],
        "stream": True,
    }
    try:
        with http.stream("POST", CHAT, json=request) as response:
            lines = response.iter_lines()
            assert next(lines).startswith("data: ")
            assert faults.holding
            assert sample(gateway, "xrouter_active_streams") == idle + 1
            loop.loop.call_soon_threadsafe(faults.release)
            for _ in lines:
                pass
    finally:
        faults.clear()
        faults.stall_seconds = held_for
    record = line_of(access_lines, response.headers["x-request-id"])
    assert (record.status, record.api, record.stream) == (200, "chat", True)  # type: ignore[attr-defined]
    assert record.completion_tokens > 0  # type: ignore[attr-defined]
    eventually(lambda: sample(gateway, "xrouter_active_streams") == idle)
    assert sample(gateway, "xrouter_request_upstream_first_byte_seconds_count", **labels) == (
        first_bytes + 1
    )


def test_a_refused_request_is_logged_and_counted_without_a_model(
    gateway: RunningGateway, access_lines: pytest.LogCaptureFixture
) -> None:
    labels = {"api": "chat", "model": "", "provider": "", "status": "401"}
    before = sample(gateway, "xrouter_requests_total", **labels)
    wrong = "sk-xr-not-a-real-key-0123456789"
    response = httpx.post(
        f"{gateway.url}{CHAT}",
        headers={"Authorization": f"Bearer {wrong}"},
        json={"model": "gigachat/GigaChat-2-Max", "messages": []},
    )
    assert response.status_code == 401
    record = line_of(access_lines, response.headers["x-request-id"])
    assert (record.api, record.status) == ("chat", 401)  # type: ignore[attr-defined]
    assert record.error_code == response.json()["error"]["code"]  # type: ignore[attr-defined]
    assert wrong not in json.dumps(vars(record), default=str)
    assert sample(gateway, "xrouter_requests_total", **labels) == before + 1


@pytest.mark.parametrize(
    ("path", "api", "body"),
    [
        (
            "/v1/messages",
            "messages",
            {
                "model": "yandex/yandexgpt",
                "max_tokens": 50,
                "messages": [{"role": "user", "content": "Привет"}],
            },
        ),
        ("/v1/responses", "responses", {"model": "yandex/yandexgpt", "input": "Привет"}),
        ("/v1/embeddings", "embeddings", {"model": "yandex/text-search-doc", "input": "Привет"}),
    ],
)
def test_every_api_reports_under_its_own_name(
    gateway: RunningGateway,
    http: httpx.Client,
    access_lines: pytest.LogCaptureFixture,
    path: str,
    api: str,
    body: dict[str, object],
) -> None:
    response = http.post(path, json=body)
    assert response.status_code == 200, response.text
    record = line_of(access_lines, response.headers["x-request-id"])
    assert (record.api, record.status, record.provider) == (api, 200, "yandex")  # type: ignore[attr-defined]
    assert record.prompt_tokens > 0  # type: ignore[attr-defined]


def scraped(http: httpx.Client, name: str, **labels: str) -> float:
    """A sample's value as ``/metrics`` publishes it (0 when absent)."""
    for family in text_string_to_metric_families(http.get("/metrics").text):
        for found in family.samples:
            if found.name == name and found.labels == labels:
                return float(found.value)
    return 0.0


def test_a_token_count_is_counted_under_its_model_and_provider(
    gateway: RunningGateway, http: httpx.Client, access_lines: pytest.LogCaptureFixture
) -> None:
    labels = {"api": "count_tokens", "model": "yandex/yandexgpt", "provider": "yandex"}
    before = scraped(http, "xrouter_requests_total", **labels, status="200")
    body = {"model": "yandex/yandexgpt", "messages": [{"role": "user", "content": "Привет"}]}
    response = http.post("/v1/messages/count_tokens", json=body)
    assert response.status_code == 200, response.text
    record = line_of(access_lines, response.headers["x-request-id"])
    assert (record.api, record.model, record.provider) == tuple(labels.values())  # type: ignore[attr-defined]
    assert scraped(http, "xrouter_requests_total", **labels, status="200") == before + 1


def test_models_and_unknown_paths_are_counted(
    gateway: RunningGateway, http: httpx.Client, access_lines: pytest.LogCaptureFixture
) -> None:
    assert http.get("/v1/models").status_code == 200
    one = http.get("/v1/models/gigachat/GigaChat-2-Max")
    assert one.status_code == 200
    assert line_of(access_lines, one.headers["x-request-id"]).api == "models"  # type: ignore[attr-defined]
    missing = http.get("/v1/nothing-here")
    assert missing.status_code == 404
    assert line_of(access_lines, missing.headers["x-request-id"]).api == "unknown"  # type: ignore[attr-defined]
    assert sample(
        gateway, "xrouter_requests_total", api="models", model="", provider="", status="200"
    )


def test_metrics_expose_queue_and_pool_figures(gateway: RunningGateway, http: httpx.Client) -> None:
    text = http.get("/metrics").text
    for name in (
        "xrouter_usage_queue_depth",
        "xrouter_usage_flush_lag_seconds",
        "xrouter_usage_written",
        "xrouter_usage_dropped",
        "xrouter_active_streams",
        "xrouter_requests_total",
        "xrouter_request_duration_seconds_bucket",
    ):
        assert f"\n{name}" in text, name
