from __future__ import annotations

import pytest

from xrouter.limits.gcra import BucketState
from xrouter.limits.headers import format_duration, rate_limit_headers, retry_headers
from xrouter.limits.policy import Limit


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.0, "0ms"),
        (0.0201, "21ms"),
        (1.0, "1s"),
        (6.0, "6s"),
        (8.5714, "8.572s"),
        (90.5, "1m30.5s"),
        (3600.0, "1h0m0s"),
        (86_399.0, "23h59m59s"),
    ],
)
def test_durations_are_written_like_openai(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_each_kind_reports_its_tightest_limit() -> None:
    limits = [
        Limit("key", "k", "rpm", 100),
        Limit("provider", "gigachat", "rpm", 1000),
        Limit("key", "k", "tpm", 10_000),
        Limit("key", "k", "tpd", 100_000),
    ]
    states = [
        BucketState(remaining=90, reset_after=6.0),
        BucketState(remaining=100, reset_after=54.0),  # 10% left: tighter than 90%
        BucketState(remaining=9_000, reset_after=6.0),
        BucketState(remaining=95_000, reset_after=4320.0),
    ]
    assert rate_limit_headers(limits, states) == {
        "x-ratelimit-limit-requests": "1000",
        "x-ratelimit-remaining-requests": "100",
        "x-ratelimit-reset-requests": "54s",
        "x-ratelimit-limit-tokens": "10000",
        "x-ratelimit-remaining-tokens": "9000",
        "x-ratelimit-reset-tokens": "6s",
    }


def test_only_the_kinds_that_apply_are_reported() -> None:
    headers = rate_limit_headers([Limit("key", "k", "tpd", 5)], [BucketState(5, 0.0)])
    assert set(headers) == {
        "x-ratelimit-limit-tokens",
        "x-ratelimit-remaining-tokens",
        "x-ratelimit-reset-tokens",
    }
    assert rate_limit_headers([], []) == {}


def test_retry_after_is_whole_seconds_rounded_up() -> None:
    assert retry_headers(0.0004) == {"retry-after": "1", "retry-after-ms": "1"}
    assert retry_headers(5.8) == {"retry-after": "6", "retry-after-ms": "5800"}
