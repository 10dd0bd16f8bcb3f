"""What a failed attempt means for the next one: classification, backoff and ``Retry-After``.

=============  ===============================================  ======  ==========  =======
kind           upstream answer                                  retry   fall back   breaker
=============  ===============================================  ======  ==========  =======
client         400, 413, 422 (the request itself is wrong)      no      no          success
not_found      404 (this target's model does not exist)         no      yes         --
refused        401/403 of the gateway's credentials, 402        no      yes         failure
rate_limited   429                                              yes     yes         --
timeout        connect, first-byte, read or total timeout       yes     yes         failure
unreachable    connection refused, DNS, TLS                     yes     yes         failure
server         5xx                                              yes     yes         failure
malformed      a broken, truncated or cut-off answer            yes     yes         failure
=============  ===============================================  ======  ==========  =======

"retry" is another attempt at the same target (up to the route's ``retries``), after a backoff
with full jitter, or after ``Retry-After`` when the upstream sent one; a wait that would end
past the request's deadline is not made, and the next target is tried instead.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass

from xrouter.errors import GatewayError, UpstreamError


class FailureKind(enum.StrEnum):
    CLIENT = "client"
    NOT_FOUND = "not_found"
    REFUSED = "refused"
    RATE_LIMITED = "rate_limited"
    TIMEOUT = "timeout"
    UNREACHABLE = "unreachable"
    SERVER = "server"
    MALFORMED = "malformed"


_BY_CODE = {
    "upstream_bad_request": FailureKind.CLIENT,
    "upstream_invalid_params": FailureKind.CLIENT,
    "request_too_large": FailureKind.CLIENT,
    "model_not_found": FailureKind.NOT_FOUND,
    "upstream_auth_failed": FailureKind.REFUSED,
    "upstream_permission_denied": FailureKind.REFUSED,
    "insufficient_quota": FailureKind.REFUSED,
    "upstream_rate_limited": FailureKind.RATE_LIMITED,
    "upstream_timeout": FailureKind.TIMEOUT,
    "upstream_unreachable": FailureKind.UNREACHABLE,
    "upstream_tls_error": FailureKind.UNREACHABLE,
    "upstream_server_error": FailureKind.SERVER,
    "upstream_malformed_response": FailureKind.MALFORMED,
    "upstream_truncated_stream": FailureKind.MALFORMED,
    "upstream_disconnected": FailureKind.MALFORMED,
    "upstream_response_too_large": FailureKind.MALFORMED,
    "upstream_invalid_function_call": FailureKind.MALFORMED,
}
RETRY_SAME_TARGET = frozenset(
    {
        FailureKind.RATE_LIMITED,
        FailureKind.TIMEOUT,
        FailureKind.UNREACHABLE,
        FailureKind.SERVER,
        FailureKind.MALFORMED,
    }
)
BREAKER_FAILURES = frozenset(
    {
        FailureKind.REFUSED,
        FailureKind.TIMEOUT,
        FailureKind.UNREACHABLE,
        FailureKind.SERVER,
        FailureKind.MALFORMED,
    }
)


def classify(error: GatewayError) -> FailureKind:
    """The kind of a failed attempt's error (see the module's table)."""
    if not isinstance(error, UpstreamError):
        return FailureKind.CLIENT
    kind = _BY_CODE.get(error.code or "")
    if kind is not None:
        return kind
    if error.status == 429:
        return FailureKind.RATE_LIMITED
    if error.status in (502, 503, 504):
        return FailureKind.SERVER if error.retryable else FailureKind.REFUSED
    return FailureKind.SERVER if error.retryable else FailureKind.CLIENT


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with full jitter: a wait drawn from [0, min(cap, base * 2^n))."""

    base_seconds: float = 0.2
    cap_seconds: float = 5.0

    def wait(self, retry: int, retry_after: float | None, rng: random.Random) -> float:
        """Seconds before retry number ``retry`` (0 for the first); never less than
        ``retry_after``, which the upstream asked for."""
        ceiling = min(self.cap_seconds, self.base_seconds * (2**retry))
        jittered: float = rng.random() * ceiling
        return max(jittered, retry_after or 0.0)
