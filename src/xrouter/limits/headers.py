"""The ``x-ratelimit-*`` response headers, as OpenAI sends them.

For each kind (requests, tokens) the headers describe the tightest applicable limit: the one
with the smallest fraction left. ``reset`` is the time until that limit is back to its full
allowance, written like OpenAI's (``"20ms"``, ``"6s"``, ``"1m30s"``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from xrouter.limits.gcra import BucketState
from xrouter.limits.policy import Limit, LimitKind

# Per kind: the limit, remaining and reset header names.
_NAMES: dict[str, tuple[str, str, str]] = {
    kind: (
        f"x-ratelimit-limit-{kind}",
        f"x-ratelimit-remaining-{kind}",
        f"x-ratelimit-reset-{kind}",
    )
    for kind in ("requests", "tokens")
}


def rate_limit_headers(limits: Sequence[Limit], states: Sequence[BucketState]) -> dict[str, str]:
    # Per kind: (fraction left, the limit, its state) of the tightest limit so far. What is left
    # is compared as a fraction, so a daily quota nearly spent outranks a fresh minute; on a tie
    # the limit that takes longer to reset is the tighter.
    tightest: dict[LimitKind, tuple[float, Limit, BucketState]] = {}
    for limit, state in zip(limits, states, strict=True):
        left = state.remaining / limit.limit
        current = tightest.get(limit.kind)
        if (
            current is None
            or left < current[0]
            or (left == current[0] and state.reset_after > current[2].reset_after)
        ):
            tightest[limit.kind] = (left, limit, state)
    headers: dict[str, str] = {}
    for kind, (_, limit, state) in tightest.items():
        limit_name, remaining_name, reset_name = _NAMES[kind]
        headers[limit_name] = str(limit.limit)
        headers[remaining_name] = str(state.remaining)
        headers[reset_name] = format_duration(state.reset_after)
    return headers


def retry_headers(retry_after: float) -> dict[str, str]:
    """``Retry-After`` in whole seconds (HTTP allows no fractions) and, for clients that read
    it (the OpenAI SDKs do), the exact wait in ``retry-after-ms``."""
    return {
        "retry-after": str(max(1, math.ceil(retry_after))),
        "retry-after-ms": str(max(1, math.ceil(retry_after * 1000))),
    }


def format_duration(seconds: float) -> str:
    """Seconds as OpenAI writes them: ``0.02`` -> ``"20ms"``, ``6`` -> ``"6s"``,
    ``90.5`` -> ``"1m30.5s"``, ``3600`` -> ``"1h0m0s"``."""
    if seconds < 1:
        return f"{math.ceil(seconds * 1000)}ms"
    milliseconds = math.ceil(seconds * 1000)
    hours, rest = divmod(milliseconds, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    text = f"{rest / 1000:.3f}".rstrip("0").rstrip(".") + "s"
    if hours:
        return f"{hours}h{minutes}m{text}"
    if minutes:
        return f"{minutes}m{text}"
    return text
