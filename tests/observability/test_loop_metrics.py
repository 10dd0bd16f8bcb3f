"""The lock-free counters, gauges and histograms render exactly as prometheus_client's own."""

from __future__ import annotations

import math
import re
from pathlib import Path

import prometheus_client
import pytest
from prometheus_client import CollectorRegistry, generate_latest, multiprocess, values

from xrouter.observability.loop_metrics import Counter, Gauge, Histogram, PlainValue, flush_shared

BUCKETS = (0.001, 0.01, 0.1, 1.0)
# Observations below, on and between the bounds, past the last one, negative, and NaN.
OBSERVED = (0.0005, 0.001, 0.0011, 0.01, 0.05, 0.1, 1.0, 1.5, 1e9, -2.0, 0.0, math.nan)
CREATED = re.compile(rb"^(\w+_created\{?.*?\}?) \S+$", re.M)


def exercise(
    counter: type[prometheus_client.Counter],
    gauge: type[prometheus_client.Gauge],
    histogram: type[prometheus_client.Histogram],
) -> bytes:
    """The same updates on a registry of the given classes; their exposition, creation times
    blanked (the only values that differ between two registries)."""
    registry = CollectorRegistry()
    requests = counter("demo_requests", "Requests.", ["api", "status"], registry=registry)
    plain = counter("demo_plain", "Unlabelled.", registry=registry)
    seconds = histogram("demo_seconds", "Seconds.", ["api"], buckets=BUCKETS, registry=registry)
    single = histogram("demo_single_seconds", "Unlabelled.", buckets=BUCKETS, registry=registry)
    streams = gauge("demo_streams", "Streams.", registry=registry, multiprocess_mode="livesum")
    states = gauge("demo_state", "State.", ["target"], registry=registry)
    for _ in range(3):
        streams.inc()
    streams.dec()
    streams.dec(0.5)
    states.labels("a").set(2)
    states.labels("b").inc(4)
    for status in (200, "200", 429, 200):
        requests.labels("chat", status).inc()
    requests.labels(api="embeddings", status="200").inc(2.5)
    plain.inc()
    plain.inc(0)
    for amount in OBSERVED:
        seconds.labels("chat").observe(amount)
        single.observe(amount)
    seconds.labels(api="messages").observe(0.2)
    return CREATED.sub(rb"\1 0", generate_latest(registry))


def test_the_exposition_is_prometheus_clients_byte_for_byte() -> None:
    ours = exercise(Counter, Gauge, Histogram)
    stock = exercise(
        prometheus_client.Counter, prometheus_client.Gauge, prometheus_client.Histogram
    )
    assert ours == stock
    assert b'demo_seconds_bucket{api="chat",le="0.001"} 4.0' in ours
    assert b'demo_requests_total{api="chat",status="200"} 3.0' in ours
    assert b"\ndemo_streams 1.5\n" in ours


def test_labels_answer_the_same_child_for_the_same_values() -> None:
    registry = CollectorRegistry()
    requests = Counter("demo_requests", "Requests.", ["status"], registry=registry)
    child = requests.labels(200)
    assert requests.labels(200) is child
    assert requests.labels("200") is child
    assert requests.labels(status=200) is child
    child.inc()
    requests.labels("200").inc()
    assert registry.get_sample_value("demo_requests_total", {"status": "200"}) == 2


def test_a_removed_child_is_not_answered_again() -> None:
    registry = CollectorRegistry()
    requests = Counter("demo_requests", "Requests.", ["status"], registry=registry)
    seconds = Histogram("demo_seconds", "Seconds.", ["api"], registry=registry)
    requests.labels("200").inc()
    seconds.labels("chat").observe(1.0)
    requests.remove("200")
    seconds.clear()
    requests.labels("200").inc()
    seconds.labels("chat").observe(1.0)
    assert registry.get_sample_value("demo_requests_total", {"status": "200"}) == 1
    assert registry.get_sample_value("demo_seconds_count", {"api": "chat"}) == 1


def test_misuse_is_refused_as_prometheus_client_refuses_it() -> None:
    registry = CollectorRegistry()
    requests = Counter("demo_requests", "Requests.", ["status"], registry=registry)
    seconds = Histogram("demo_seconds", "Seconds.", ["api"], registry=registry)
    with pytest.raises(ValueError, match="label values"):
        requests.inc()
    with pytest.raises(ValueError, match="label values"):
        seconds.observe(1.0)
    with pytest.raises(ValueError, match="non-negative"):
        requests.labels("200").inc(-1)
    with pytest.raises(ValueError, match="Incorrect label count"):
        requests.labels("200", "extra")


def test_single_process_values_take_no_lock() -> None:
    registry = CollectorRegistry()
    counter = Counter("demo_requests", "Requests.", registry=registry)
    histogram = Histogram("demo_seconds", "Seconds.", registry=registry)
    gauge = Gauge("demo_streams", "Streams.", registry=registry)
    assert isinstance(counter._value, PlainValue)
    assert isinstance(gauge._value, PlainValue)
    assert isinstance(histogram._sum, PlainValue)
    assert all(isinstance(bucket, PlainValue) for bucket in histogram._buckets)


def test_with_several_workers_the_values_live_in_the_shared_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    monkeypatch.setattr(values, "ValueClass", values.MultiProcessValue(lambda: 4242))  # type: ignore[no-untyped-call]
    try:
        local = CollectorRegistry()
        requests = Counter("demo_requests", "Requests.", ["status"], registry=local)
        seconds = Histogram("demo_seconds", "Seconds.", buckets=BUCKETS, registry=local)
        streams = Gauge("demo_streams", "Streams.", registry=local, multiprocess_mode="livesum")
        assert not isinstance(seconds._sum, PlainValue)
        streams.inc()
        streams.inc()
        streams.dec()
        requests.labels("200").inc()
        requests.labels(200).inc(2)
        seconds.observe(0.05)
        seconds.observe(0.5)
        shared = CollectorRegistry()
        multiprocess.MultiProcessCollector(shared, str(tmp_path))  # type: ignore[no-untyped-call]
        # The updates wait in the worker until flushed: none has reached the files yet.
        assert shared.get_sample_value("demo_requests_total", {"status": "200"}) == 0
        assert requests.labels("200")._value.get() == 3  # the worker's own view is whole
        flush_shared()
        assert shared.get_sample_value("demo_requests_total", {"status": "200"}) == 3
        assert shared.get_sample_value("demo_seconds_bucket", {"le": "0.1"}) == 1
        assert shared.get_sample_value("demo_seconds_bucket", {"le": "1.0"}) == 2
        assert shared.get_sample_value("demo_seconds_sum", {}) == pytest.approx(0.55)
        assert shared.get_sample_value("demo_streams", {}) == 1
        # Each flush writes only what came after the last one; a set is written at once.
        requests.labels("200").inc()
        streams.set(7)
        assert shared.get_sample_value("demo_streams", {}) == 7
        flush_shared()
        flush_shared()
        assert shared.get_sample_value("demo_requests_total", {"status": "200"}) == 4
    finally:
        values.close_all_multiprocess_files()  # type: ignore[no-untyped-call]
