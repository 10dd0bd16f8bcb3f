"""What ``GET /ready`` answers, decided without FastAPI (the probe is served before the
control plane is built; see api/on_demand.py)."""

from __future__ import annotations

from typing import Any

from xrouter.runtime import Runtime


async def readiness(runtime: Runtime) -> tuple[int, dict[str, Any]]:
    """The status code and body of the readiness probe."""
    if not runtime.started:
        return 503, {"status": "starting", "checks": {}}
    if runtime.drain.draining:
        # Going away: the load balancer must stop sending traffic; requests are still served.
        return 503, {"status": "draining", "checks": {}}
    checks = await runtime.check_ready()
    failing = {name for name, value in checks.items() if value != "ok"}
    # With the fail-open rate-limit policy the gateway serves on without Redis: taking every
    # instance out of the load balancer then would turn a Redis outage into a full outage.
    tolerated = {"redis"} if runtime.settings.rate_limit_failure_policy == "open" else set()
    if not failing:
        return 200, {"status": "ready", "checks": checks}
    if failing <= tolerated:
        return 200, {"status": "degraded", "checks": checks}
    return 503, {"status": "unavailable", "checks": checks}
