"""GCRA through the in-process backend, with an injected clock."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.limits.clock import FakeClock
from xrouter.limits.gcra import MAX_SLACK_SECONDS
from xrouter.limits.memory import SWEEP_EVERY, MemoryBackend
from xrouter.limits.policy import Limit

RPM_10 = Limit("key", "key_a", "rpm", 10)
TPM_1000 = Limit("key", "key_a", "tpm", 1000)


def admitted(backend: MemoryBackend, limits: list[Limit], costs: list[int], times: int) -> int:
    return sum(backend.acquire_now(limits, costs).allowed for _ in range(times))


def test_a_full_limit_allows_a_burst_of_its_size_then_one_per_interval() -> None:
    clock = FakeClock()
    backend = MemoryBackend(clock=clock)

    assert admitted(backend, [RPM_10], [1], 15) == 10
    clock.advance(5.9)  # one request comes back every 6 s
    assert admitted(backend, [RPM_10], [1], 5) == 0
    clock.advance(0.1)
    assert admitted(backend, [RPM_10], [1], 5) == 1
    clock.advance(60)
    assert admitted(backend, [RPM_10], [1], 15) == 10


def test_no_double_burst_at_a_minute_edge() -> None:
    """A fixed window would admit 10 at 0:59.9 and 10 more at 1:00.1; GCRA admits none."""
    clock = FakeClock(now=59.9)
    backend = MemoryBackend(clock=clock)

    assert admitted(backend, [RPM_10], [1], 10) == 10
    clock.now = 60.1
    assert admitted(backend, [RPM_10], [1], 10) == 0
    clock.now = 59.9 + 6.0
    assert admitted(backend, [RPM_10], [1], 10) == 1


@settings(max_examples=200, deadline=None)
@given(
    gaps=st.lists(st.floats(min_value=0, max_value=3, allow_nan=False), min_size=1, max_size=80),
    window=st.floats(min_value=0.01, max_value=60),
)
def test_any_window_admits_at_most_the_burst_plus_the_refill(
    gaps: list[float], window: float
) -> None:
    clock = FakeClock(now=0.0)
    backend = MemoryBackend(clock=clock)
    accepted: list[float] = []
    for gap in gaps:
        clock.advance(gap)
        if backend.acquire_now([RPM_10], [1]).allowed:
            accepted.append(clock.now)
    # In any window of ``window`` seconds: at most the burst (10) plus one per 6 s (give or
    # take the millisecond of slack that keeps floating-point sums from refusing an exact fit).
    bound = 10 + int((window + MAX_SLACK_SECONDS) / 6.0)
    for start in accepted:
        inside = [t for t in accepted if start <= t < start + window]
        assert len(inside) <= bound


def test_all_or_nothing_across_limits() -> None:
    clock = FakeClock()
    backend = MemoryBackend(clock=clock)
    both = [RPM_10, TPM_1000]

    assert backend.acquire_now(both, [1, 900]).allowed
    refused = backend.acquire_now(both, [1, 200])
    assert not refused.allowed
    # The refused request charged nothing: 9 requests are still left.
    assert refused.states[0].remaining == 9
    assert refused.states[0].retry_after == 0
    assert refused.states[1].retry_after == pytest.approx(100 * 60 / 1000)
    assert admitted(backend, [RPM_10], [1], 20) == 9


def test_tokens_cost_their_count_and_report_remaining_and_reset() -> None:
    clock = FakeClock()
    backend = MemoryBackend(clock=clock)

    decision = backend.acquire_now([TPM_1000], [250])
    assert decision.allowed
    assert decision.states[0].remaining == 750
    assert decision.states[0].reset_after == pytest.approx(15.0)
    clock.advance(3)  # 50 tokens back
    assert backend.acquire_now([TPM_1000], [800]).allowed
    assert not backend.acquire_now([TPM_1000], [1]).allowed


async def test_adjust_refunds_and_charges() -> None:
    clock = FakeClock()
    backend = MemoryBackend(clock=clock)
    assert (await backend.acquire([TPM_1000], [600])).allowed

    await backend.adjust([TPM_1000], [-500])  # the request used 100 tokens, not 600
    assert (await backend.acquire([TPM_1000], [900])).allowed
    await backend.adjust([TPM_1000], [300])  # a request used more than it reserved: debt
    refused = await backend.acquire([TPM_1000], [1])
    assert not refused.allowed
    assert refused.states[0].remaining == 0
    assert refused.states[0].retry_after == pytest.approx(0.06 * 301, rel=1e-3)

    await backend.adjust([TPM_1000], [-5000])  # a refund never goes below empty
    assert len(backend) == 0
    assert admitted(backend, [TPM_1000], [1000], 2) == 1


def test_exact_fit_with_intervals_that_are_not_round() -> None:
    # 60 / 7 is not a finite binary fraction: the seventh request must still fit exactly.
    backend = MemoryBackend(clock=FakeClock())
    assert admitted(backend, [Limit("key", "k", "rpm", 7)], [1], 20) == 7
    assert admitted(backend, [Limit("key", "k", "tpd", 999_999)], [333_333], 5) == 3


def test_share_divides_every_limit() -> None:
    backend = MemoryBackend(clock=FakeClock(), share=4)
    assert admitted(backend, [RPM_10], [1], 10) == 2
    assert admitted(backend, [Limit("key", "tiny", "rpm", 2)], [1], 5) == 1


def test_limits_back_to_full_are_forgotten() -> None:
    clock = FakeClock()
    backend = MemoryBackend(clock=clock)
    for index in range(SWEEP_EVERY - 1):
        backend.acquire_now([Limit("key", f"key_{index}", "rpm", 100)], [1])
    assert len(backend) == SWEEP_EVERY - 1
    clock.advance(1)
    backend.acquire_now([RPM_10], [1])
    assert len(backend) == 1
