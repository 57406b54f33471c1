"""Monitoring: scrape annotations, Prometheus Operator objects and Grafana dashboards."""

from __future__ import annotations

import json

import pytest
import yaml
from chart.manifests import (
    CHART_DIR,
    SCENARIOS,
    chart,
    component_name,
    env,
    named,
    objects,
    of_kind,
    render,
    scenario_objects,
    scenario_values,
    worker_deployments,
)

RULES_FILE = CHART_DIR / "files" / "prometheus" / "rules.yaml"
DASHBOARDS = sorted((CHART_DIR / "files" / "dashboards").glob("*.json"))
ALL_ON = {
    "monitoring": {
        "serviceMonitor": {"enabled": True},
        "podMonitor": {"enabled": True},
        "prometheusRule": {"enabled": True},
        "dashboards": {"enabled": True},
    }
}


def test_monitoring_objects_are_off_by_default() -> None:
    kinds = {m["kind"] for m in scenario_objects("default")}
    assert not kinds & {"ServiceMonitor", "PodMonitor", "PrometheusRule"}
    assert not [
        m
        for m in of_kind(scenario_objects("default"), "ConfigMap")
        if "dashboard" in m["metadata"]["name"]
    ]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_scrape_annotations_point_at_each_metrics_port(scenario: str) -> None:
    enabled = chart().merge_values(scenario_values(scenario))["monitoring"]["scrapeAnnotations"]
    manifests = scenario_objects(scenario)
    expected = {"api": "9809", "worker": "9808"}
    for deployment in of_kind(manifests, "Deployment"):
        component = deployment["metadata"]["labels"]["app.kubernetes.io/component"]
        annotations = deployment["spec"]["template"]["metadata"].get("annotations", {})
        if not enabled:
            assert "prometheus.io/scrape" not in annotations
            continue
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/port"] == expected[component]
        assert annotations["prometheus.io/path"] == "/metrics"


def test_service_and_pod_monitors_select_the_api_and_the_workers() -> None:
    manifests = objects(render(ALL_ON))
    api = named(manifests, "Deployment", component_name("api"))
    service_monitor = named(manifests, "ServiceMonitor", component_name("api"))
    assert service_monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert service_monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    selected = service_monitor["spec"]["selector"]["matchLabels"].items()
    # The API's metrics Service only, never the one the ingress routes.
    metrics = named(manifests, "Service", component_name("api-metrics"))
    assert selected <= metrics["metadata"]["labels"].items()
    assert not selected <= named(manifests, "Service", component_name("api"))["metadata"][
        "labels"].items()
    assert metrics["spec"]["ports"] == [
        {"name": "metrics", "port": 9809, "targetPort": "metrics", "protocol": "TCP"}]
    assert metrics["spec"]["selector"].items() <= api["spec"]["template"]["metadata"][
        "labels"].items()
    (container,) = api["spec"]["template"]["spec"]["containers"]
    assert {"name": "metrics", "containerPort": 9809, "protocol": "TCP"} in container["ports"]
    assert env(container)["INFERQ_METRICS_PORT"]["value"] == "9809"
    pod_monitor = named(manifests, "PodMonitor", component_name("worker"))
    assert pod_monitor["spec"]["podMetricsEndpoints"][0]["port"] == "metrics"
    selector = pod_monitor["spec"]["selector"]["matchLabels"].items()
    for deployment in worker_deployments(manifests).values():
        assert selector <= deployment["spec"]["template"]["metadata"]["labels"].items()


def test_prometheus_rule_carries_the_rules_file() -> None:
    (rule,) = of_kind(objects(render(ALL_ON)), "PrometheusRule")
    if not RULES_FILE.exists():
        assert rule["spec"]["groups"] == []
        return
    assert rule["spec"]["groups"] == yaml.safe_load(RULES_FILE.read_text())["groups"]


def test_one_labelled_configmap_per_dashboard() -> None:
    configmaps = [
        m
        for m in of_kind(objects(render(ALL_ON)), "ConfigMap")
        if "dashboard" in m["metadata"]["name"]
    ]
    assert len(configmaps) == len(DASHBOARDS)
    by_file = {key: m for m in configmaps for key in m["data"]}
    for path in DASHBOARDS:
        configmap = by_file[path.name]
        assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert json.loads(configmap["data"][path.name]) == json.loads(path.read_text())


def test_dashboard_label_is_configurable() -> None:
    values = {
        "monitoring": {"dashboards": {"enabled": True, "labelKey": "dash", "labelValue": "yes"}}
    }
    for configmap in of_kind(objects(render(values)), "ConfigMap"):
        if "dashboard" in configmap["metadata"]["name"]:
            assert configmap["metadata"]["labels"]["dash"] == "yes"


def test_the_charts_last_latency_bucket_is_the_codes() -> None:
    from services.common.metrics import TASK_LATENCY_BUCKETS

    helpers = (CHART_DIR / "templates" / "_helpers.tpl").read_text()
    defined = helpers.split('define "inferq.metrics.taskLatencyBucketsMax" -}}', 1)[1]
    assert float(defined.split("{{", 1)[0].strip()) == TASK_LATENCY_BUCKETS[-1]


def test_every_default_time_limit_and_threshold_is_a_bucket_bound() -> None:
    """Each kind's default latency threshold is measured exactly: it is a bucket's bound."""
    from services.common.metrics import TASK_LATENCY_BUCKETS

    (rule,) = of_kind(objects(render(ALL_ON)), "PrometheusRule")
    kinds = next(g for g in rule["spec"]["groups"] if g["name"] == "inferq.kinds")
    thresholds = [float(r["expr"].rsplit(">", 1)[1]) for r in kinds["rules"]
                  if r["alert"] == "InferqTaskLatencyHigh"]
    assert sorted(thresholds) == [10.0, 3600.0, 21600.0]
    pools = chart().values["workers"]["pools"]
    hard = [float(spec["timeLimits"]["hard"]) for spec in pools.values()]
    assert set(thresholds + hard) <= set(TASK_LATENCY_BUCKETS)
