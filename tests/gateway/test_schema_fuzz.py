"""The bad-input campaign, generated: schemathesis sends valid and invalid requests built from
the gateway's own OpenAPI schema (``/openapi.json``) to every /v1 endpoint and the probes. No
answer may be a 5xx, and every answer must match the schema (status, content type, body)."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.servers import RunningGateway

EXAMPLES = 60
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
STREAM_CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance]
OPERATIONS = [
    ("POST", "/v1/chat/completions"),
    ("POST", "/v1/embeddings"),
    ("GET", "/v1/models"),
    ("GET", "/v1/models/{model}"),
    ("POST", "/v1/messages"),
    ("POST", "/v1/messages/count_tokens"),
    ("POST", "/v1/responses"),
    ("GET", "/health"),
    ("GET", "/ready"),
]


def assert_events_are_json(body: str) -> None:
    """Every ``data:`` line of an SSE body is a JSON object (or OpenAI's ``[DONE]``)."""
    events = [line[6:] for line in body.splitlines() if line.startswith("data: ")]
    assert events, body[:500]
    for data in events:
        if data != "[DONE]":
            assert isinstance(json.loads(data), dict), data


@pytest.fixture(scope="module")
def schema(gateway: RunningGateway) -> Any:
    return schemathesis.openapi.from_dict(httpx.get(f"{gateway.url}/openapi.json").json())


def test_every_served_path_is_in_the_campaign(schema: Any) -> None:
    served = {
        (operation.method.upper(), operation.path)
        for result in schema.get_all_operations()
        if (operation := result.ok()).path.startswith("/v1/")
    }
    assert served <= set(OPERATIONS)


@pytest.mark.parametrize(("method", "path"), OPERATIONS)
def test_generated_requests_get_no_5xx_and_match_the_schema(
    gateway: RunningGateway, api_key: str, schema: Any, method: str, path: str
) -> None:
    operation = schema[path][method]
    model = "yandex/text-search-doc" if path == "/v1/embeddings" else "gigachat/GigaChat-2-Max"

    def served_model(case: Any) -> Any:
        # Random model names are all 404s: half the valid cases name a real model instead.
        if isinstance(case.body, dict) and "model" in case.body:
            case.body["model"] = model
        if case.path_parameters and "model" in case.path_parameters:
            case.path_parameters["model"] = model
        return case

    valid = operation.as_strategy(generation_mode=GenerationMode.POSITIVE)
    invalid = operation.as_strategy(generation_mode=GenerationMode.NEGATIVE)
    strategy = st.one_of(valid.map(served_model), valid, invalid)
    statuses: Counter[int] = Counter()

    @given(case=strategy)
    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def check(case: Any) -> None:
        response = case.call(
            base_url=gateway.url, headers={"Authorization": f"Bearer {api_key}"}, timeout=30
        )
        statuses[response.status_code] += 1
        # schemathesis keeps each header as a list of values.
        if "text/event-stream" in str(response.headers.get("content-type")):
            # The schema can only call a stream a string; each event is checked here instead.
            case.validate_response(response, checks=STREAM_CHECKS)
            assert_events_are_json(response.text)
        else:
            case.validate_response(response, checks=CHECKS)

    check()
    assert not [status for status in statuses if status >= 500]
    if path == "/v1/models/{model}":
        assert statuses[200] > 0, statuses
        assert statuses[404] > 0, statuses
    elif path.startswith("/v1/") and path != "/v1/models":
        # The campaign reached the providers and the validators both.
        assert statuses[400] > 0, statuses
