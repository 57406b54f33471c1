"""k8s/ and skaffold.yaml fit the chart: their values pass its schema, their names agree."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from chart.manifests import REPO_ROOT, chart, objects, of_kind, render

K8S = REPO_ROOT / "k8s"
KIND_VALUES = K8S / "inferq" / "values-kind.yaml"


def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def _skaffold() -> dict[str, Any]:
    loaded: dict[str, Any] = _load(REPO_ROOT / "skaffold.yaml")
    return loaded


def _set(values: dict[str, Any], dotted: str, value: str) -> None:
    *parents, leaf = dotted.split(".")
    for key in parents:
        values = values.setdefault(key, {})
    values[leaf] = value


def test_every_yaml_file_parses() -> None:
    for path in sorted(K8S.rglob("*.yaml")):
        assert list(yaml.safe_load_all(path.read_text())), path


def test_kind_values_route_the_api_through_traefiks_gateway() -> None:
    values = _load(KIND_VALUES)
    chart().validate_schema(chart().merge_values(values))
    manifests = objects(render(values))
    assert of_kind(manifests, "Ingress") == []
    (route,) = of_kind(manifests, "HTTPRoute")
    assert route["spec"]["hostnames"] == ["inferq.localhost"]
    (parent,) = route["spec"]["parentRefs"]
    traefik = _load(K8S / "traefik" / "values-kind.yaml")
    gateway = traefik["gateway"]
    assert traefik["providers"]["kubernetesGateway"]["enabled"] is True
    assert (parent["name"], parent["namespace"]) == (gateway["name"], "traefik")
    listener = gateway["listeners"][parent["sectionName"]]
    # The listener is Traefik's web entry point, which the host's port 80 reaches, and it
    # takes routes from inferq's namespace.
    assert listener["port"] == 8000 and listener["protocol"] == "HTTP"
    assert traefik["ports"][parent["sectionName"]]["hostPort"] == 80
    assert listener["namespacePolicy"] == {"from": "All"}
    script = (K8S / "bootstrap.sh").read_text()
    assert "--namespace traefik" in script
    assert "gateway-api/releases/download/$GATEWAY_API_VERSION/standard-install.yaml" in script
    assert script.index("standard-install.yaml") < script.index("traefik/traefik")
    cluster = _load(K8S / "kind" / "cluster.yaml")
    ports = {m["hostPort"] for node in cluster["nodes"] for m in node["extraPortMappings"]}
    assert {80, 443} <= ports


def test_traefik_serves_ingresses_too() -> None:
    """Those who keep an Ingress: the same controller takes it, by its IngressClass."""
    traefik = _load(K8S / "traefik" / "values-kind.yaml")
    assert traefik["providers"]["kubernetesIngress"]["enabled"] is True
    values = _load(KIND_VALUES)
    values["api"].pop("httpRoute")
    values["api"]["ingress"] = {"enabled": True, "className": traefik["ingressClass"]["name"],
                                "hosts": [{"host": "inferq.localhost",
                                           "paths": [{"path": "/", "pathType": "Prefix"}]}]}
    (ingress,) = of_kind(objects(render(values)), "Ingress")
    assert ingress["spec"]["ingressClassName"] == "traefik"


def test_no_retired_ingress_nginx_is_left() -> None:
    for path in [*K8S.rglob("*"), REPO_ROOT / "docs" / "kubernetes.md", REPO_ROOT / "README.md"]:
        if path.is_file():
            assert "ingress-nginx" not in path.read_text(), path


def test_helm_test_runs_with_logs() -> None:
    assert re.search(r"^\s*helm test .*--logs$", (K8S / "bootstrap.sh").read_text(), re.M)


def test_traces_go_from_inferq_through_the_collector_to_jaeger() -> None:
    collector_objects = list(
        yaml.safe_load_all((K8S / "otel-collector" / "collector.yaml").read_text())
    )
    (configmap,) = [o for o in collector_objects if o["kind"] == "ConfigMap"]
    (service,) = [o for o in collector_objects if o["kind"] == "Service"]
    config = yaml.safe_load(configmap["data"]["config.yaml"])
    traces = config["service"]["pipelines"]["traces"]
    assert traces["receivers"] == ["otlp"]
    assert "debug" in traces["exporters"]
    exporter = next(e for e in traces["exporters"] if e.startswith("otlp"))
    jaeger = {
        o["kind"]: o for o in yaml.safe_load_all((K8S / "tracing" / "jaeger.yaml").read_text())
    }
    jaeger_port = next(
        p["port"] for p in jaeger["Service"]["spec"]["ports"] if p["name"] == "otlp-grpc"
    )
    assert (
        config["exporters"][exporter]["endpoint"]
        == f"{jaeger['Service']['metadata']['name']}.observability.svc:{jaeger_port}"
    )
    endpoint = _load(KIND_VALUES)["otel"]["endpoint"]
    http_port = next(p["port"] for p in service["spec"]["ports"] if p["name"] == "otlp-http")
    assert endpoint == f"http://{service['metadata']['name']}.observability.svc:{http_port}"


@pytest.mark.parametrize("path", ["otel-collector/collector.yaml", "tracing/jaeger.yaml"])
def test_plain_manifests_pass_the_kubernetes_schema(path: str) -> None:
    import kubernetes_validate
    from kubernetes_validate import utils

    for manifest in yaml.safe_load_all((K8S / path).read_text()):
        kubernetes_validate.validate(manifest, utils.latest_version(), strict=True)


def test_grafana_and_prometheus_pick_up_the_charts_objects() -> None:
    stack = _load(K8S / "kube-prometheus-stack" / "values.yaml")
    sidecar = stack["grafana"]["sidecar"]["dashboards"]
    defaults = chart().values["monitoring"]["dashboards"]
    assert (sidecar["label"], sidecar["labelValue"]) == (
        defaults["labelKey"],
        defaults["labelValue"],
    )
    assert sidecar["searchNamespace"] == "ALL"
    spec = stack["prometheus"]["prometheusSpec"]
    for kind in ("serviceMonitor", "podMonitor", "rule"):
        assert spec[f"{kind}SelectorNilUsesHelmValues"] is False
        assert spec[f"{kind}NamespaceSelector"] == {}


def test_keda_runs_where_the_network_policy_lets_it_reach_redis() -> None:
    script = (K8S / "bootstrap.sh").read_text()
    assert "--namespace keda" in script
    assert chart().values["networkPolicy"]["kedaNamespace"] == "keda"


def test_bootstrap_uses_files_that_exist() -> None:
    script = (K8S / "bootstrap.sh").read_text()
    paths = set(re.findall(r"(?:k8s|charts)/[\w./-]+", script)) | set(
        re.findall(r"Dockerfile\.\w+", script)
    )
    assert paths
    for path in paths:
        assert (REPO_ROOT / path).exists(), path


def test_skaffold_builds_both_images_and_wires_them_into_the_chart() -> None:
    skaffold = _skaffold()
    assert skaffold["apiVersion"].startswith("skaffold/v4beta")
    artifacts = {a["image"]: a["docker"]["dockerfile"] for a in skaffold["build"]["artifacts"]}
    assert artifacts == {"api": "Dockerfile.api", "worker": "Dockerfile.worker"}
    (release,) = skaffold["deploy"]["helm"]["releases"]
    assert release["chartPath"] == "charts/inferq"
    templates = release["setValueTemplates"]
    assert templates == {
        "api.image.repository": "{{.IMAGE_REPO_api}}",
        "api.image.tag": "{{.IMAGE_TAG_api}}",
        "workers.image.repository": "{{.IMAGE_REPO_worker}}",
        "workers.image.tag": "{{.IMAGE_TAG_worker}}",
    }
    built = {
        "IMAGE_REPO_api": "registry.local/api",
        "IMAGE_TAG_api": "1a2b",
        "IMAGE_REPO_worker": "registry.local/worker",
        "IMAGE_TAG_worker": "3c4d",
    }
    values: dict[str, Any] = {}
    for path in release["valuesFiles"]:
        values.update(_load(REPO_ROOT / path))
    for key, template in templates.items():
        _set(values, key, re.sub(r"\{\{\.(\w+)\}\}", lambda m: built[m.group(1)], template))
    images = {
        d["metadata"]["labels"]["app.kubernetes.io/component"]: d["spec"]["template"]["spec"][
            "containers"
        ][0]["image"]
        for d in of_kind(objects(render(values)), "Deployment")
    }
    assert images == {"api": "registry.local/api:1a2b", "worker": "registry.local/worker:3c4d"}


def test_skaffold_profiles() -> None:
    profiles = {p["name"]: p for p in _skaffold()["profiles"]}
    assert set(profiles) == {"dev", "prod"}
    forward = profiles["dev"]["portForward"][0]
    assert forward["resourceName"] == "inferq-api" and forward["port"] == 8000
    patched = {p["path"]: p["value"] for p in profiles["prod"]["patches"]}
    assert patched["/build/local/push"] is True
    for path in patched["/deploy/helm/releases/0/valuesFiles"]:
        assert (REPO_ROOT / path).exists()
