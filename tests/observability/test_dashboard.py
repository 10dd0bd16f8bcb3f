"""The Grafana dashboard is valid and every query in it uses a metric the gateway exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import CollectorRegistry

from xrouter.limits.metrics import LimitMetrics, QuotaTracker
from xrouter.observability.metrics import HELP, RequestMetrics
from xrouter.routing.metrics import RoutingMetrics

DASHBOARD = Path(__file__).resolve().parents[2] / "ops" / "grafana" / "xrouter.json"
_METRIC = re.compile(r"\bxrouter_[a-z_]+")


def exported_names() -> set[str]:
    registry = CollectorRegistry()
    LimitMetrics(registry, QuotaTracker(1))
    RoutingMetrics(registry)
    RequestMetrics(registry)
    names = set(HELP)
    for family in registry.collect():
        names.update(family.name + suffix for suffix in ("", "_total", "_bucket", "_count", "_sum"))
    return names


def test_every_panel_queries_exported_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "xrouter"
    exported = exported_names()
    queried: set[str] = set()
    ids = set()
    for panel in dashboard["panels"]:
        assert panel["id"] not in ids
        ids.add(panel["id"])
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            used = set(_METRIC.findall(target["expr"]))
            assert used, (panel["title"], target["expr"])
            assert used <= exported, (panel["title"], used - exported)
            queried |= used
    # The request metrics are all on the dashboard.
    for name in ("xrouter_requests_total", "xrouter_active_streams", "xrouter_tokens_total"):
        assert name in queried
