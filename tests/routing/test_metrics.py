"""The routing metrics a successful attempt updates."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from xrouter.routing.metrics import RoutingMetrics


def test_a_successful_attempt_counts_once_in_each_metric_of_its_target() -> None:
    registry = CollectorRegistry()
    metrics = RoutingMetrics(registry)
    metrics.succeeded("yandex/yandexgpt", 0.3)
    metrics.succeeded("yandex/yandexgpt", 0.3)
    metrics.succeeded("gigachat/GigaChat-2", 3.0)
    target = {"target": "yandex/yandexgpt"}
    ok = {**target, "outcome": "ok"}
    sample = registry.get_sample_value
    assert sample("xrouter_routing_attempts_total", ok) == 2
    assert sample("xrouter_routing_first_byte_seconds_bucket", {**target, "le": "0.25"}) == 0
    assert sample("xrouter_routing_first_byte_seconds_bucket", {**target, "le": "0.5"}) == 2
    assert sample("xrouter_routing_attempt_seconds_sum", ok) == pytest.approx(0.6)
    other = {"target": "gigachat/GigaChat-2", "outcome": "ok"}
    assert sample("xrouter_routing_attempt_seconds_count", other) == 1
