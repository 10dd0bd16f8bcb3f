"""Failure classification and backoff: what is retried, what falls back, what ends a request."""

from __future__ import annotations

import random

import pytest

from xrouter.errors import InvalidRequestError
from xrouter.providers.errors import malformed_response, truncated_stream, upstream_status_error
from xrouter.providers.transport import transport_error
from xrouter.routing.retry import (
    BREAKER_FAILURES,
    RETRY_SAME_TARGET,
    Backoff,
    FailureKind,
    classify,
)


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, FailureKind.CLIENT),
        (413, FailureKind.CLIENT),
        (422, FailureKind.CLIENT),
        (404, FailureKind.NOT_FOUND),
        (401, FailureKind.REFUSED),
        (402, FailureKind.REFUSED),
        (403, FailureKind.REFUSED),
        (429, FailureKind.RATE_LIMITED),
        (500, FailureKind.SERVER),
        (503, FailureKind.SERVER),
        (504, FailureKind.TIMEOUT),
    ],
)
def test_upstream_statuses(status: int, kind: FailureKind) -> None:
    assert classify(upstream_status_error("gigachat", status, "boom", None)) is kind


def test_transport_and_protocol_failures() -> None:
    assert classify(transport_error("yandex", TimeoutError())) is FailureKind.TIMEOUT
    assert classify(transport_error("yandex", OSError())) is FailureKind.SERVER
    assert classify(malformed_response("yandex", "not JSON")) is FailureKind.MALFORMED
    assert classify(truncated_stream("yandex")) is FailureKind.MALFORMED
    assert classify(InvalidRequestError("bad")) is FailureKind.CLIENT


def test_client_errors_are_never_retried_nor_held_against_the_target() -> None:
    assert FailureKind.CLIENT not in RETRY_SAME_TARGET
    assert FailureKind.CLIENT not in BREAKER_FAILURES
    # A rate limit is retried (after Retry-After) but does not trip the breaker.
    assert FailureKind.RATE_LIMITED in RETRY_SAME_TARGET
    assert FailureKind.RATE_LIMITED not in BREAKER_FAILURES


def test_backoff_is_jittered_below_an_exponential_ceiling() -> None:
    backoff = Backoff(base_seconds=0.1, cap_seconds=1.0)
    rng = random.Random(7)
    for retry, ceiling in [(0, 0.1), (1, 0.2), (2, 0.4), (5, 1.0)]:
        waits = [backoff.wait(retry, None, rng) for _ in range(200)]
        assert all(0 <= wait < ceiling for wait in waits)
        assert max(waits) > ceiling * 0.8  # spread over the range, not constant
        assert min(waits) < ceiling * 0.2


def test_retry_after_is_a_floor() -> None:
    backoff = Backoff(base_seconds=0.1, cap_seconds=1.0)
    assert backoff.wait(0, 2.5, random.Random(1)) == 2.5
