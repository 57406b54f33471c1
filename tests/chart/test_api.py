"""The API: its server, probes, cluster view, Ingress and the NOTES it leaves."""

from __future__ import annotations

import pytest
from chart.manifests import (
    RELEASE,
    SCENARIOS,
    argv,
    component_name,
    env,
    named,
    objects,
    of_kind,
    render,
    scenario_notes,
    scenario_objects,
)

API = component_name("api")


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_api_serves_on_8000_with_health_probes(scenario: str) -> None:
    deployment = named(scenario_objects(scenario), "Deployment", API)
    (api,) = deployment["spec"]["template"]["spec"]["containers"]
    assert argv(api) == ["inferq", "api", "--host", "0.0.0.0", "--port", "8000"]
    assert api["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"},
                            {"name": "metrics", "containerPort": 9809, "protocol": "TCP"}]
    assert api["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert api["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    service = named(scenario_objects(scenario), "Service", API)
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]


def test_selector_labels_are_a_stable_subset_of_the_labels() -> None:
    deployment = named(scenario_objects("default"), "Deployment", API)
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector == {
        "app.kubernetes.io/name": "inferq",
        "app.kubernetes.io/instance": RELEASE,
        "app.kubernetes.io/component": "api",
    }
    assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()


def test_cluster_view_reads_worker_deployments_of_its_namespace_only() -> None:
    manifests = scenario_objects("default")
    (api,) = named(manifests, "Deployment", API)["spec"]["template"]["spec"]["containers"]
    variables = env(api)
    assert variables["INFERQ_K8S_NAMESPACE"]["valueFrom"] == {
        "fieldRef": {"fieldPath": "metadata.namespace"}
    }
    assert variables["INFERQ_K8S_WORKER_SELECTOR"]["value"] == (
        f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/component=worker"
    )
    (role,) = of_kind(manifests, "Role")
    assert role["rules"] == [
        {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "list", "watch"]}
    ]
    assert of_kind(manifests, "ClusterRole") == []
    (binding,) = of_kind(manifests, "RoleBinding")
    assert (
        binding["subjects"][0]["name"]
        == named(manifests, "ServiceAccount", API)["metadata"]["name"]
    )
    for deployment in of_kind(manifests, "Deployment"):
        selector = dict(
            p.split("=") for p in variables["INFERQ_K8S_WORKER_SELECTOR"]["value"].split(",")
        )
        is_worker = selector.items() <= deployment["metadata"]["labels"].items()
        assert is_worker == (
            deployment["metadata"]["labels"]["app.kubernetes.io/component"] == "worker"
        )


def test_production_ingress_has_tls_and_the_api_an_hpa() -> None:
    manifests = scenario_objects("production")
    ingress = named(manifests, "Ingress", API)
    assert ingress["spec"]["ingressClassName"] == "traefik"
    assert ingress["spec"]["tls"] == [{"secretName": "inferq-tls", "hosts": ["inferq.example.com"]}]
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": API, "port": {"name": "http"}}
    hpa = named(manifests, "HorizontalPodAutoscaler", API)
    assert hpa["spec"]["scaleTargetRef"]["name"] == API
    assert "replicas" not in named(manifests, "Deployment", API)["spec"]


def test_helm_test_pod_predicts_through_the_api_service() -> None:
    (pod,) = of_kind(scenario_objects("default"), "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    (container,) = pod["spec"]["containers"]
    assert container["image"] == "inferq-api:0.1.0"
    assert argv(container) == [
        "inferq", "predict", "iris", "--json", "[[5.1,3.5,1.4,0.2]]", "--expect", "setosa",
        "--wait", "10", "--url", f"http://{API}:8000",
    ]  # fmt: skip
    assert pod["spec"]["restartPolicy"] == "Never"


def test_helm_test_pod_outlives_its_success_for_helm_test_logs() -> None:
    """Helm 3 reads the logs after the hook's delete policy ran: a pod deleted on success
    fails `helm test --logs` (fixed only in Helm 4.1). The next test run replaces it."""
    (pod,) = of_kind(scenario_objects("default"), "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook-delete-policy"] == "before-hook-creation"


def test_a_stopping_api_pod_keeps_serving_until_it_is_out_of_the_endpoints() -> None:
    pod = named(scenario_objects("default"), "Deployment", API)["spec"]["template"]["spec"]
    (api,) = pod["containers"]
    assert api["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "5"]
    assert pod["terminationGracePeriodSeconds"] > 5
    off = named(objects(render({"api": {"preStopSleepSeconds": 0}})), "Deployment", API)
    assert "lifecycle" not in off["spec"]["template"]["spec"]["containers"][0]


def test_probes_and_extra_volumes_come_from_values() -> None:
    values = {"api": {
        "probes": {"readiness": {"periodSeconds": 2, "failureThreshold": 5},
                   "startup": {"periodSeconds": 5, "failureThreshold": 60}},
        "extraVolumes": [{"name": "ca", "configMap": {"name": "corporate-ca"}}],
        "extraVolumeMounts": [{"name": "ca", "mountPath": "/etc/ssl/custom", "readOnly": True}],
    }}
    pod = named(objects(render(values)), "Deployment", API)["spec"]["template"]["spec"]
    (api,) = pod["containers"]
    assert api["readinessProbe"] == {"httpGet": {"path": "/readyz", "port": "http"},
                                     "periodSeconds": 2, "timeoutSeconds": 3,
                                     "failureThreshold": 5}
    assert api["startupProbe"]["failureThreshold"] == 60
    assert api["livenessProbe"]["periodSeconds"] == 10
    assert {"name": "ca", "configMap": {"name": "corporate-ca"}} in pod["volumes"]
    assert {"name": "ca", "mountPath": "/etc/ssl/custom", "readOnly": True} in api["volumeMounts"]


def _notes(values: dict) -> str:
    rendered = render(values)
    return next(text for name, text in rendered.items() if name.endswith("NOTES.txt"))


def test_notes_warn_about_risky_settings() -> None:
    assert "generated password" in scenario_notes("default")
    assert "WARNING" not in scenario_notes("default")
    assert "no TLS" in _notes({"api": {"ingress": {"enabled": True}}})
    off = _notes({"keda": {"enabled": False}, "workers": {"pools": {"batch": {"replicas": 0}}}})
    assert 'pool "batch" has 0 replicas' in off
    assert "lost" in scenario_notes("keda-scale-to-zero")
    assert "without a password" in scenario_notes("minimal")
    assert "https://inferq.example.com" in scenario_notes("production")
    assert "WARNING" not in scenario_notes("production")
    assert ('curl -H "Authorization: Bearer $INFERQ_API_KEY" http://inferq.example.com/v1/models'
            in scenario_notes("gateway-api"))
    assert "inferq keys create --tenant ops" in scenario_notes("default")
    off = _notes({"auth": {"enabled": False}})
    assert "curl http://127.0.0.1:8000/v1/models" in off and "keys create" not in off


def test_notes_say_what_a_cold_start_costs() -> None:
    notes = scenario_notes("keda-scale-to-zero")
    assert 'inference pool "inference" scales to zero after 60 s' in notes
    assert "up to 2 s for KEDA to see it" in notes
    assert "`helm test` waits\n      120 s" in notes
    assert "scales to zero" not in scenario_notes("default")


def test_api_without_rbac_mounts_no_token() -> None:
    manifests = objects(render({"api": {"rbac": {"create": False}}}))
    assert of_kind(manifests, "Role") == []
    pod = named(manifests, "Deployment", API)["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
