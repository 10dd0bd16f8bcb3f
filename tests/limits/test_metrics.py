from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from tests.limits.clock import FakeClock
from xrouter.limits.gcra import BucketState
from xrouter.limits.metrics import TRACKED_LIMITS, LimitMetrics, QuotaTracker
from xrouter.limits.policy import Limit


def test_remaining_gauges_cover_only_the_fullest_limits_and_refill() -> None:
    clock = FakeClock()
    tracker = QuotaTracker(2, clock=clock)
    registry = CollectorRegistry()
    LimitMetrics(registry, tracker)
    for index, remaining in enumerate([90, 10, 50, 99]):
        limit = Limit("key", f"key_{index}", "rpm", 100)
        reset = (100 - remaining) * 0.6
        tracker.observe([limit], [BucketState(remaining, reset)], True)

    def remaining(subject: str) -> float | None:
        labels = {"scope": "key", "subject": subject, "limit": "rpm"}
        return registry.get_sample_value("xrouter_ratelimit_remaining", labels)

    assert remaining("key_1") == 10
    assert remaining("key_2") == 50
    assert remaining("key_0") is None
    ratio = {"scope": "key", "subject": "key_1", "limit": "rpm"}
    assert registry.get_sample_value("xrouter_ratelimit_remaining_ratio", ratio) == 0.1
    clock.advance(6.0)  # ten requests come back
    assert remaining("key_1") == 20
    text = generate_latest(registry).decode()
    assert 'xrouter_ratelimit_remaining{limit="rpm",scope="key",subject="key_1"} 20.0' in text


def test_thresholds_fire_once_per_crossing_and_rearm() -> None:
    tracker = QuotaTracker(0)
    limit = Limit("key", "key_a", "tpm", 100)

    def observe(remaining: int, allowed: bool = True, retry: float = 0.0) -> list[float]:
        state = BucketState(remaining, 0.0, retry)
        return [crossing.threshold for crossing in tracker.observe([limit], [state], allowed)]

    assert observe(50) == []
    assert observe(20) == [0.8]
    assert observe(15) == []
    assert observe(0, allowed=False, retry=1.0) == [1.0]
    assert observe(0) == []
    assert observe(60) == []  # 40% used: below the re-arm mark of 50%
    assert observe(5) == [0.8]
    assert observe(0, allowed=False, retry=1.0) == [1.0]


def test_the_tracker_forgets_the_least_recent_limits() -> None:
    tracker = QuotaTracker(1)
    for index in range(TRACKED_LIMITS + 5):
        tracker.observe([Limit("key", f"k{index}", "rpm", 10)], [BucketState(9, 6.0)], True)
    assert len(tracker._tracked) == TRACKED_LIMITS
