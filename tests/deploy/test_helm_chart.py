"""The Helm chart renders with Helm's engine into objects valid for Kubernetes 1.25 and the
latest release, wired together consistently with the gateway's own settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import SchemaNotFoundError

from tests.deploy.chart import ALERT_RULES, CHART, REQUIRED_VALUES, one, render
from xrouter.routing.routes import read_routes_file
from xrouter.settings import Settings

KUBERNETES_VERSIONS = ("1.25.0", "1.37.0")

ROUTES = {
    "smart": {
        "strategy": "priority",
        "retries": 1,
        "targets": [{"model": "gigachat/GigaChat-2-Max", "params": {"temperature": 0.3}}],
    },
    "ru-fast": {
        "strategy": "weighted",
        "targets": [
            {"model": "gigachat/GigaChat-2", "weight": 3},
            {"model": "yandex/yandexgpt-lite", "weight": 1},
        ],
    },
}


def gateway_container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    [container] = pod["containers"]
    return container


def test_chart_lints_clean() -> None:
    report = helm.lint(str(CHART), REQUIRED_VALUES, strict=True, kube_version="v1.25.0")
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert report["errors"] == []
    assert problems == []


@pytest.mark.parametrize(
    "values",
    [
        {},
        {
            "autoscaling": {"enabled": False},
            "replicaCount": 3,
            "serviceMonitor": {"enabled": True},
            "prometheusRule": {"enabled": True},
        },
        {"routes": ROUTES, "secret": {"providers": {"XROUTER_YANDEX_FOLDER_ID": "b1gfolder"}}},
        {"secret": {"existingSecret": "xrouter-env"}, "migrations": {"enabled": False}},
    ],
    ids=["defaults", "fixed-replicas", "routes-and-providers", "existing-secret"],
)
def test_every_object_is_valid_for_kubernetes(values: dict[str, Any]) -> None:
    objects = render(values)
    assert objects
    for item in objects:
        for version in KUBERNETES_VERSIONS:
            try:
                kubernetes_validate.validate(item, version, strict=True)
            except SchemaNotFoundError:  # the Prometheus Operator's own kinds
                assert item["kind"] in ("ServiceMonitor", "PrometheusRule"), item["kind"]


def test_defaults_render_the_production_set() -> None:
    kinds = sorted(item["kind"] for item in render())
    assert kinds == [
        "Deployment",
        "HorizontalPodAutoscaler",
        "Job",
        "PodDisruptionBudget",
        "Secret",
        "Service",
    ]


def test_probes_and_shutdown_follow_the_drain() -> None:
    objects = render({"shutdownDrainSeconds": 20})
    container = gateway_container(objects)
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    env = {item["name"]: item.get("value") for item in container["env"]}
    assert env["XROUTER_SHUTDOWN_DRAIN_SECONDS"] == "20"
    # Drain, then up to 30 s of in-flight requests (uvicorn), then the usage flush.
    assert pod["terminationGracePeriodSeconds"] >= 20 + 30 + 10
    # The readiness probe notices the drain well within it.
    readiness = container["readinessProbe"]
    assert readiness["periodSeconds"] * readiness["failureThreshold"] < 20
    assert "lifecycle" not in container


def test_pods_run_unprivileged() -> None:
    objects = render()
    for kind in ("Deployment", "Job"):
        pod = one(objects, kind)["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["automountServiceAccountToken"] is False
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["runAsUser"] != 0
            assert context["allowPrivilegeEscalation"] is False
            assert context["readOnlyRootFilesystem"] is True
            assert context["capabilities"]["drop"] == ["ALL"]


def test_settings_reach_the_gateway_and_are_valid(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    providers = {"XROUTER_YANDEX_API_KEY": "AQVN-test", "XROUTER_YANDEX_FOLDER_ID": "b1gfolder"}
    objects = render(
        {
            "routes": ROUTES,
            "secret": {"providers": providers},
            "env": {"XROUTER_RATE_LIMIT_KEY_RPM": 600},
        }
    )
    container = gateway_container(objects)
    secret = one(objects, "Secret")
    assert container["envFrom"] == [{"secretRef": {"name": secret["metadata"]["name"]}}]
    environment = {item["name"]: item["value"] for item in container["env"]}
    environment.update(secret["stringData"])
    assert environment["XROUTER_KEY_PEPPER"] == "f" * 64
    assert environment["XROUTER_RATE_LIMIT_INSTANCES"] == "2"

    # The routes file is mounted where XROUTER_ROUTES_FILE points, and the gateway reads it.
    configmap = one(objects, "ConfigMap")
    [mount] = [m for m in container["volumeMounts"] if m["name"] == "routes"]
    assert environment["XROUTER_ROUTES_FILE"] == f"{mount['mountPath']}/routes.yaml"
    routes_file = tmp_path / "routes.yaml"
    routes_file.write_text(configmap["data"]["routes.yaml"])
    assert sorted(read_routes_file(routes_file)) == ["ru-fast", "smart"]

    # Every variable is a real setting (no typo is silently ignored) and the values validate.
    known = {f"XROUTER_{name.upper()}" for name in Settings.model_fields}
    assert set(environment) <= known
    environment["XROUTER_ROUTES_FILE"] = str(routes_file)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert settings.host == "0.0.0.0"  # noqa: S104
    assert settings.workers == 1
    assert settings.rate_limit_instances == 2
    assert settings.redis_url == "redis://redis:6379/0"
    assert settings.yandex_configured
    assert not settings.emulate_missing_providers


def test_migrations_run_as_a_hook_after_the_secret_exists() -> None:
    objects = render()
    job = one(objects, "Job")
    secret = one(objects, "Secret")
    job_hooks = job["metadata"]["annotations"]
    secret_hooks = secret["metadata"]["annotations"]
    assert job_hooks["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert secret_hooks["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert int(secret_hooks["helm.sh/hook-weight"]) < int(job_hooks["helm.sh/hook-weight"])
    # The pepper must outlive the release: a new one would invalidate every key.
    assert secret_hooks["helm.sh/resource-policy"] == "keep"
    [container] = job["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["db", "upgrade"]
    assert container["envFrom"] == [{"secretRef": {"name": secret["metadata"]["name"]}}]
    assert container["image"] == gateway_container(objects)["image"]


def test_existing_secret_replaces_the_charts_own() -> None:
    objects = render({"secret": {"existingSecret": "xrouter-env"}})
    assert not [item for item in objects if item["kind"] == "Secret"]
    assert gateway_container(objects)["envFrom"] == [{"secretRef": {"name": "xrouter-env"}}]
    [job_container] = one(objects, "Job")["spec"]["template"]["spec"]["containers"]
    assert job_container["envFrom"] == [{"secretRef": {"name": "xrouter-env"}}]


@pytest.mark.parametrize("missing", ["databaseUrl", "redisUrl", "keyPepper"])
def test_a_missing_secret_value_stops_the_render(missing: str) -> None:
    secret = dict(REQUIRED_VALUES["secret"])
    secret[missing] = ""
    with (
        helm.Chart.load(str(CHART)) as chart,
        pytest.raises(helm.HelmError, match=f"secret.{missing} is required"),
    ):
        chart.render({"secret": secret}, name="xr", namespace="llm")


def test_selectors_tie_service_autoscaler_budget_and_monitor_to_the_pods() -> None:
    objects = render({"serviceMonitor": {"enabled": True}})
    deployment = one(objects, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    service = one(objects, "Service")
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert gateway_container(objects)["ports"][0]["name"] == "http"
    budget = one(objects, "PodDisruptionBudget")
    assert budget["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    autoscaler = one(objects, "HorizontalPodAutoscaler")
    assert autoscaler["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert "replicas" not in deployment["spec"]  # the autoscaler owns the count
    monitor = one(objects, "ServiceMonitor")
    labels = service["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"


def test_a_routes_change_rolls_the_pods() -> None:
    def checksum(values: dict[str, Any]) -> str:
        template = one(render(values), "Deployment")["spec"]["template"]
        return str(template["metadata"]["annotations"]["checksum/routes"])

    assert checksum({"routes": ROUTES}) != checksum({"routes": {"smart": ROUTES["smart"]}})


def test_the_alert_rules_render_from_the_one_file_prometheus_loads() -> None:
    assert (CHART / "files" / "alerts.yml").read_bytes() == ALERT_RULES.read_bytes()
    labels = {"release": "kube-prometheus-stack"}
    rule = one(render({"prometheusRule": {"enabled": True, "labels": labels}}), "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["labels"].items() >= labels.items()
    groups = yaml.safe_load(ALERT_RULES.read_text())["groups"]
    # Every rule, and Prometheus's own {{ $labels... }} templates untouched by Helm's.
    assert rule["spec"]["groups"] == groups
    alerts = [r["alert"] for group in rule["spec"]["groups"] for r in group["rules"]]
    assert len(alerts) >= 4
    assert "XRouterQuotaExhausted" in alerts
    annotations = rule["spec"]["groups"][0]["rules"][0]["annotations"]
    assert "{{ $labels.limit }}" in annotations["summary"]
    assert not [item for item in render() if item["kind"] == "PrometheusRule"]
