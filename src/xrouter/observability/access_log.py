"""The request observer: one JSON log line and the request metrics for every ``/v1`` request.

Requests that reach a provider are reported by the pipeline when it writes their usage record
(``finished``); the rest (refused by authentication, validation or a limit, or unknown paths)
are reported by the ``/v1`` application once their response is sent (``sent``). The line
carries ids, names, counts and timings only: never a key, a token, a prompt or a completion.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from xrouter.logs import LineLogger
from xrouter.observability.metrics import RequestMetrics
from xrouter.usage.pricing import PriceTable
from xrouter.usage.recorder import UsageEvent

log = LineLogger("xrouter.access")

# The API a path belongs to, as the ``api`` label and log field name it.
APIS = {
    "/v1/chat/completions": "chat",
    "/v1/messages": "messages",
    "/v1/messages/count_tokens": "count_tokens",
    "/v1/responses": "responses",
    "/v1/embeddings": "embeddings",
    "/v1/models": "models",
}
# ``GET /v1/models/{id}``: the id holds ``/`` and ``:``, so it is the whole rest of the path.
MODEL_PATH_PREFIX = "/v1/models/"
# Set in the request's scope state once the request has been reported.
_OBSERVED = "observed"
# Scope state: the rest of a served request's bookkeeping (its rate-limit settlement, metrics
# and this log line), left by the pipeline to run once the answer is written, off the answer's
# latency. Its usage record is journaled before the answer, so a killed process loses none.
REPORT_WHEN_SENT = "report_when_sent"


class _Series:
    """The labelled metrics one kind of request (API, model, provider, status) updates."""

    __slots__ = (
        "cost",
        "duration",
        "first_byte",
        "overhead",
        "requests",
        "tokens_in",
        "tokens_out",
    )

    def __init__(
        self,
        metrics: RequestMetrics,
        api: str,
        model: str,
        provider: str,
        status: int,
        stream: bool,
    ) -> None:
        streamed = "true" if stream else "false"
        self.requests = metrics.requests.labels(api, model, provider, str(status))
        self.overhead = metrics.overhead.labels(api)
        self.first_byte = metrics.first_byte.labels(api, provider, streamed)
        self.duration = metrics.duration.labels(api, provider, streamed)
        self.tokens_in = metrics.tokens.labels("in", api, model, provider)
        self.tokens_out = metrics.tokens.labels("out", api, model, provider)
        self.cost = metrics.cost.labels(model, provider)


def report_when_sent(state: dict[str, Any]) -> None:
    """Run the report waiting in ``state`` for the answer to be sent, if there is one: after
    the answer, or when the request ends without one (it was served all the same)."""
    report = state.pop(REPORT_WHEN_SENT, None)
    if report is not None:
        report()


def api_of(path: str) -> str:
    """The API name of a ``/v1`` path; "unknown" for paths the gateway does not serve."""
    api = APIS.get(path) or APIS.get(path.rstrip("/"))
    if api is None and path.startswith(MODEL_PATH_PREFIX):
        return "models"
    return api or "unknown"


class RequestObserver:
    """Counts and logs finished requests; cheap enough to run on every one."""

    def __init__(self, registry: CollectorRegistry, prices: PriceTable | None = None) -> None:
        self.metrics = RequestMetrics(registry)
        self._prices = prices
        # Labelled children by label values: a label lookup costs microseconds, a dict hit not.
        self._cache: dict[tuple[str, str, str, int, bool], _Series] = {}

    def _series(self, api: str, model: str, provider: str, status: int, stream: bool) -> _Series:
        key = (api, model, provider, status, stream)
        series = self._cache.get(key)
        if series is None:
            series = self._cache[key] = _Series(self.metrics, *key)
        return series

    def finished(
        self,
        state: dict[str, Any],
        event: UsageEvent,
        *,
        started: float,
        upstream_at: float,
        ended: float,
        first_token_at: float | None,
        attempts: int | None,
    ) -> None:
        """A request that reached routing has ended (answered, failed or its stream closed)."""
        state[_OBSERVED] = True
        api = state.get("api", "unknown")
        model, provider, status = event.model, event.provider, event.status_code
        series = self._series(api, model, provider, status, event.stream)
        series.requests.inc()
        overhead = upstream_at - started
        first_byte = (first_token_at or ended) - upstream_at
        series.overhead.observe(overhead)
        if status < 400 or first_token_at is not None:
            series.first_byte.observe(first_byte)
        series.duration.observe(ended - started)
        if event.prompt_tokens:
            series.tokens_in.inc(event.prompt_tokens)
        if event.completion_tokens:
            series.tokens_out.inc(event.completion_tokens)
        cost = event.cost_rub
        if cost is None and self._prices is not None:
            cost = self._prices.cost(model, event.prompt_tokens, event.completion_tokens)
        if cost:
            series.cost.inc(cost)
        log.info(
            "request",
            {
                "request_id": event.request_id,
                "generation_id": event.id,
                "key_id": event.key_id,
                "user": event.user_id,
                "api": api,
                "model": model,
                "provider": provider,
                "stream": event.stream,
                "attempts": attempts,
                "status": status,
                "error_code": event.error_code,
                "prompt_tokens": event.prompt_tokens,
                "completion_tokens": event.completion_tokens,
                "cost_rub": cost,
                "overhead_ms": round(overhead * 1000, 3),
                "first_byte_ms": round(first_byte * 1000, 3),
                "total_ms": round((ended - started) * 1000, 3),
            },
        )

    async def send(self, response: Response, scope: Scope, receive: Receive, send: Send) -> None:
        """Send ``response``, then run the report the pipeline left for after it
        (``REPORT_WHEN_SENT``); report the request if the pipeline did not (it ended early)."""
        streaming = isinstance(response, StreamingResponse)
        if streaming:
            self.metrics.active_streams.inc()
        state = scope.setdefault("state", {})
        try:
            await response(scope, receive, send)
        finally:
            if streaming:
                self.metrics.active_streams.dec()
            report_when_sent(state)
            if not state.get(_OBSERVED):
                self.refused(state, response.status_code)

    def begin(self, scope: Scope) -> None:
        """Note the request's API and start time in its scope state."""
        state = scope.setdefault("state", {})
        state["api"] = api_of(scope["path"])
        state["started"] = time.perf_counter()

    def refused(self, state: dict[str, Any], status: int) -> None:
        """A request answered without a usage record: refused before reaching a provider, a
        route-less endpoint, or a token count (which names its target in ``state``)."""
        state[_OBSERVED] = True
        api = state.get("api", "unknown")
        model, provider = state.get("model", ""), state.get("provider", "")
        self.metrics.requests.labels(api, model, provider, str(status)).inc()
        started = state.get("started")
        log.info(
            "request",
            {
                "request_id": state.get("request_id"),
                "api": api,
                "model": model or None,
                "provider": provider or None,
                "status": status,
                "error_code": state.get("error_code"),
                "total_ms": round((time.perf_counter() - started) * 1000, 3) if started else None,
            },
        )
