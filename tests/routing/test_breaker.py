"""Circuit breakers: opening on a failure ratio, half-open probes, closing, and remote news."""

from __future__ import annotations

import time

from xrouter.routing.breaker import BreakerBoard, BreakerPolicy, BreakerState, CircuitBreaker

POLICY = BreakerPolicy(
    window_seconds=10, min_requests=4, failure_ratio=0.5, open_seconds=5, half_open_probes=1
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_opens_at_the_failure_ratio_once_enough_requests_were_seen() -> None:
    breaker = CircuitBreaker(POLICY)
    assert breaker.record(False, 0.0) is None
    assert breaker.record(False, 0.1) is None
    assert breaker.record(True, 0.2) is None  # 2 of 3: too few requests to judge
    assert breaker.record(False, 0.3) is BreakerState.OPEN  # 3 of 4 failed
    assert not breaker.available(1.0)
    assert not breaker.acquire(1.0)


def test_a_healthy_majority_keeps_it_closed() -> None:
    breaker = CircuitBreaker(POLICY)
    for index in range(20):
        assert breaker.record(index % 3 == 0 or index % 3 == 1, index * 0.1) is None
    assert breaker.state is BreakerState.CLOSED


def test_old_failures_leave_the_window() -> None:
    breaker = CircuitBreaker(POLICY)
    for index in range(3):
        breaker.record(False, index * 0.1)
    # Eleven seconds later those three are out of the 10-second window.
    assert breaker.record(False, 11.0) is None
    assert breaker.state is BreakerState.CLOSED


def test_half_open_admits_one_probe_and_its_success_closes() -> None:
    breaker = CircuitBreaker(POLICY)
    breaker.trip(0.0)
    assert not breaker.acquire(4.9)
    assert breaker.available(5.0)
    assert breaker.acquire(5.0)
    assert breaker.state is BreakerState.HALF_OPEN
    assert not breaker.acquire(5.1)  # the probe is out; others wait
    assert breaker.record(True, 5.2) is BreakerState.CLOSED
    assert breaker.acquire(5.3)


def test_a_failed_probe_opens_it_again() -> None:
    breaker = CircuitBreaker(POLICY)
    breaker.trip(0.0)
    assert breaker.acquire(6.0)
    assert breaker.record(False, 6.1) is BreakerState.OPEN
    assert not breaker.acquire(10.0)
    assert breaker.acquire(11.2)


def test_board_reports_transitions_and_released_probes() -> None:
    clock = Clock()
    board = BreakerBoard(POLICY, clock=clock)
    seen: list[tuple[str, BreakerState, bool]] = []
    board.listen(lambda key, state, until, local: seen.append((key, state, local)))
    for _ in range(4):
        assert board.acquire("gigachat/GigaChat-2")
        board.record("gigachat/GigaChat-2", False)
    assert seen == [("gigachat/GigaChat-2", BreakerState.OPEN, True)]
    assert not board.available("gigachat/GigaChat-2")
    assert board.available("yandex/yandexgpt")  # never seen: closed
    clock.now += 5
    assert board.acquire("gigachat/GigaChat-2")
    board.release("gigachat/GigaChat-2")  # cancelled: no verdict, the slot is free again
    assert board.acquire("gigachat/GigaChat-2")
    board.record("gigachat/GigaChat-2", True)
    assert board.state("gigachat/GigaChat-2") is BreakerState.CLOSED
    assert [state for _, state, _ in seen] == [
        BreakerState.OPEN,
        BreakerState.HALF_OPEN,
        BreakerState.CLOSED,
    ]


def test_remote_open_and_close_are_adopted_without_echo() -> None:
    board = BreakerBoard(POLICY)
    seen: list[tuple[BreakerState, bool]] = []
    board.listen(lambda key, state, until, local: seen.append((state, local)))
    board.apply_remote("yandex/yandexgpt", BreakerState.OPEN, time.time() + 30)
    assert not board.available("yandex/yandexgpt")
    state, until = board.states()["yandex/yandexgpt"]
    assert state is BreakerState.OPEN
    assert until is not None
    assert 25 < until - time.time() <= 30
    board.apply_remote("yandex/yandexgpt", BreakerState.CLOSED, None)
    assert board.available("yandex/yandexgpt")
    # An "open until" already past is stale news.
    board.apply_remote("yandex/yandexgpt", BreakerState.OPEN, time.time() - 1)
    assert board.available("yandex/yandexgpt")
    assert seen == [(BreakerState.OPEN, False), (BreakerState.CLOSED, False)]
