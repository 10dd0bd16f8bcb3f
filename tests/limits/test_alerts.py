"""The alert rules file parses and refers only to metrics the gateway exports."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from prometheus_client import CollectorRegistry

from xrouter.limits.metrics import LimitMetrics, QuotaTracker
from xrouter.observability.metrics import HELP, RequestMetrics

RULES = Path(__file__).resolve().parents[2] / "ops" / "prometheus" / "alerts.yml"
_METRIC = re.compile(r"\bxrouter_[a-z_]+")


def test_every_alert_uses_exported_metrics() -> None:
    registry = CollectorRegistry()
    LimitMetrics(registry, QuotaTracker(1))
    RequestMetrics(registry)
    exported = set()
    for family in registry.collect():
        # Labelled series appear once used; the names they will have are known by type.
        exported.update(family.name + suffix for suffix in ("", "_total", "_bucket", "_count"))
    exported |= {"xrouter_ratelimit_remaining", "xrouter_ratelimit_remaining_ratio"}
    exported |= set(HELP)  # read at scrape time: the usage writer's queue, the pools

    document = yaml.safe_load(RULES.read_text())
    rules = [rule for group in document["groups"] for rule in group["rules"]]

    assert len(rules) >= 5
    for rule in rules:
        assert set(rule) >= {"alert", "expr", "labels", "annotations"}
        used = set(_METRIC.findall(rule["expr"]))
        assert used, rule["alert"]
        assert used <= exported, (rule["alert"], used - exported)
