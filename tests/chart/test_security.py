"""Every pod runs locked down, and only inferq's pods and KEDA reach Redis."""

from __future__ import annotations

import pytest
from chart.manifests import (
    RELEASE,
    SCENARIOS,
    containers,
    env,
    of_kind,
    pod_specs,
    scenario_objects,
)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_pod_has_the_restricted_security_context(scenario: str) -> None:
    pods = list(pod_specs(scenario_objects(scenario)))
    assert pods
    for manifest, pod in pods:
        where = f"{manifest['kind']}/{manifest['metadata']['name']}"
        pod_context = pod.get("securityContext", {})
        assert pod_context.get("runAsNonRoot") is True, where
        assert pod_context.get("seccompProfile") == {"type": "RuntimeDefault"}, where
        for container in containers(pod):
            context = container.get("securityContext", {})
            name = f"{where} container {container['name']}"
            assert context.get("readOnlyRootFilesystem") is True, name
            assert context.get("allowPrivilegeEscalation") is False, name
            assert context.get("capabilities", {}).get("drop") == ["ALL"], name
            assert context.get("seccompProfile", pod_context["seccompProfile"]) == {
                "type": "RuntimeDefault"
            }, name


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_writable_paths_are_volumes(scenario: str) -> None:
    for manifest, pod in pod_specs(scenario_objects(scenario)):
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for container in containers(pod):
            mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
            assert "/tmp" in mounts, f"{manifest['metadata']['name']}: no writable /tmp"
            assert "emptyDir" in volumes[mounts["/tmp"]]
            multiproc = env(container).get("PROMETHEUS_MULTIPROC_DIR")
            if multiproc:
                volume = volumes[mounts[multiproc["value"]]]
                assert "emptyDir" in volume


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_only_inferq_pods_and_keda_reach_redis(scenario: str) -> None:
    manifests = scenario_objects(scenario)
    policies = of_kind(manifests, "NetworkPolicy")
    if not of_kind(manifests, "StatefulSet"):
        assert policies == []
        return
    (policy,) = policies
    spec = policy["spec"]
    assert spec["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "redis"
    (rule,) = spec["ingress"]
    assert rule["ports"] == [{"port": "redis", "protocol": "TCP"}]
    peers = rule["from"]
    assert {
        "podSelector": {
            "matchLabels": {
                "app.kubernetes.io/name": "inferq",
                "app.kubernetes.io/instance": RELEASE,
            }
        }
    } in peers
    assert {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "keda"}}} in peers
