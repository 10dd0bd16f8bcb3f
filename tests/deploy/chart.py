"""Rendering the Helm chart with Helm's own template engine (the Go SDK, through ctypes)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import helm_python as helm
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
CHART = DEPLOY / "helm" / "xrouter"
# The alert rules: Prometheus loads this file, the chart's PrometheusRule renders it.
ALERT_RULES = ROOT / "ops" / "prometheus" / "alerts.yml"

# What an operator must give; everything else has a default.
REQUIRED_VALUES: dict[str, Any] = {
    "secret": {
        "databaseUrl": "postgresql+asyncpg://xrouter:pw@postgres:5432/xrouter",
        "redisUrl": "redis://redis:6379/0",
        "keyPepper": "f" * 64,
    }
}


def merged(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``extra`` merged in, mappings recursively (as Helm merges values)."""
    result = dict(base)
    for name, value in extra.items():
        if isinstance(value, dict) and isinstance(result.get(name), dict):
            result[name] = merged(result[name], value)
        else:
            result[name] = value
    return result


def render(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every Kubernetes object the chart renders for ``values`` (on top of the required ones)."""
    with helm.Chart.load(str(CHART)) as chart:
        files = chart.render(
            merged(REQUIRED_VALUES, values or {}), name="xr", namespace="llm", is_install=True
        )
    objects: list[dict[str, Any]] = []
    for path, text in sorted(files.items()):
        if not path.endswith((".yaml", ".yml")):
            continue
        objects.extend(document for document in yaml.safe_load_all(text) if document)
    return objects


def one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    """The only object of ``kind``."""
    found = [item for item in objects if item["kind"] == kind]
    assert len(found) == 1, f"{len(found)} objects of kind {kind}"
    return found[0]
