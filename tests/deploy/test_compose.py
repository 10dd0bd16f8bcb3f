"""The compose file is valid by the Compose Specification and wires its parts together:
migrations before the gateways, both gateways behind the load balancer and scraped by
Prometheus with XRouter's alert rules, Grafana provisioned with the dashboards folder."""

from __future__ import annotations

import json
import re
from importlib.resources import files
from typing import Any

import jsonschema
import pytest
import yaml

from tests.deploy.chart import DEPLOY, ROOT
from xrouter.settings import Settings

GATEWAYS = ("gateway-1", "gateway-2")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    return document


def host_path(mount: str) -> str:
    return mount.split(":")[0]


def test_matches_the_compose_specification(compose: dict[str, Any]) -> None:
    schema_file = files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    schema = json.loads(schema_file.read_text())
    jsonschema.validate(compose, schema, cls=jsonschema.Draft7Validator)


def test_has_the_whole_stack(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {
        "postgres",
        "redis",
        "migrate",
        *GATEWAYS,
        "loadbalancer",
        "prometheus",
        "grafana",
    }


def test_gateways_start_after_migrations_and_share_state(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["migrate"]["command"] == ["db", "upgrade"]
    migrate_url = services["migrate"]["environment"]["XROUTER_DATABASE_URL"]
    known = {f"XROUTER_{name.upper()}" for name in Settings.model_fields}
    environments = []
    for name in GATEWAYS:
        gateway = services[name]
        assert gateway["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
        assert gateway["build"]["dockerfile"] == "deploy/Dockerfile"
        environment = gateway["environment"]
        assert set(environment) <= known
        assert environment["XROUTER_DATABASE_URL"] == migrate_url
        assert environment["XROUTER_REDIS_URL"].startswith("redis://redis:")
        assert environment["XROUTER_RATE_LIMIT_INSTANCES"] == str(len(GATEWAYS))
        environments.append(environment)
    assert environments[0] == environments[1]


def test_no_secret_is_written_in_the_file(compose: dict[str, Any]) -> None:
    secret_like = re.compile(r"PASSWORD|PEPPER|CREDENTIALS|API_KEY|TOKEN")
    for service in compose["services"].values():
        for name, value in (service.get("environment") or {}).items():
            text = str(value)
            if secret_like.search(name):
                assert text.startswith("${"), f"{name} is written in the file"
            if "://" in text and "@" in text:
                assert "${POSTGRES_PASSWORD:?" in text, f"{name} holds a password"
    for mount in ("xrouter.env",):
        assert not (DEPLOY / mount).exists(), "credentials file in the repository"


def test_load_balancer_spreads_over_every_gateway(compose: dict[str, Any]) -> None:
    balancer = compose["services"]["loadbalancer"]
    [config_mount] = balancer["volumes"]
    config = (DEPLOY / host_path(config_mount).removeprefix("./")).read_text()
    servers = re.findall(r"^\s*server\s+([\w.-]+):(\d+)", config, flags=re.MULTILINE)
    assert sorted(servers) == sorted((name, "8080") for name in GATEWAYS)
    assert "proxy_buffering off" in config  # streams go out as they are produced


def test_prometheus_scrapes_every_gateway_with_the_alert_rules(compose: dict[str, Any]) -> None:
    prometheus = compose["services"]["prometheus"]
    mounts = dict(volume.split(":")[:2] for volume in prometheus["volumes"])
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    assert mounts["./prometheus/prometheus.yml"] == "/etc/prometheus/prometheus.yml"
    [job] = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    [targets] = job["static_configs"]
    assert sorted(targets["targets"]) == [f"{name}:8080" for name in GATEWAYS]
    [rules_mount] = [source for source in mounts if source.endswith("alerts.yml")]
    assert config["rule_files"] == [mounts[rules_mount]]
    rules = yaml.safe_load((DEPLOY / rules_mount).read_text())
    alerts = [rule for group in rules["groups"] for rule in group["rules"]]
    assert alerts
    assert all(rule["alert"] and rule["expr"] for rule in alerts)


def test_grafana_is_provisioned_with_the_dashboards(compose: dict[str, Any]) -> None:
    grafana = compose["services"]["grafana"]
    mounts = dict(volume.split(":")[:2] for volume in grafana["volumes"])
    provisioning = DEPLOY / "grafana" / "provisioning"
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    datasource = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"
    dashboards = yaml.safe_load((provisioning / "dashboards" / "xrouter.yml").read_text())
    [provider] = dashboards["providers"]
    [source] = [
        source for source, target in mounts.items() if target == provider["options"]["path"]
    ]
    assert (DEPLOY / source).resolve() == ROOT / "ops" / "grafana"
    dashboard_file = ROOT / "ops" / "grafana" / "xrouter.json"
    if dashboard_file.exists():
        dashboard = json.loads(dashboard_file.read_text())
        assert dashboard["panels"]
