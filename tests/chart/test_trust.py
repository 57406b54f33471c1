"""What the chart does for trust: the API's metrics off the port the ingress and the
HTTPRoute reach, Redis over TLS (the chart's, or an external one with a private CA and a
user of its own), and API keys (the switch, the hash key, seed keys, the helm test's key)."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import helm_python
import pytest
from chart.manifests import (
    NAMESPACE,
    RELEASE,
    chart,
    component_name,
    containers,
    env,
    named,
    objects,
    of_kind,
    pod_specs,
    render,
    scenario_objects,
)
from kube_stub import CORE_V1, StubKubernetes

API = component_name("api")
TEST_KEY = component_name("test-key")
KEY_FORMAT = re.compile(r"^inferq_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$")


def _api_container(manifests: list[dict[str, Any]]) -> dict[str, Any]:
    (api,) = named(manifests, "Deployment", API)["spec"]["template"]["spec"]["containers"]
    return api


def _inferq_containers(manifests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [c for _, pod in pod_specs(manifests) for c in containers(pod)
            if c["name"] in ("api", "worker", "seed-models")]


def _secret(manifests: list[dict[str, Any]], name: str, key: str) -> str:
    return base64.b64decode(named(manifests, "Secret", name)["data"][key]).decode()


# -- The metrics port.

def test_neither_the_ingress_nor_the_route_reaches_the_metrics_port() -> None:
    manifests = objects(render({"api": {"ingress": {"enabled": True}, "httpRoute": {
        "enabled": True, "parentRefs": [{"name": "gateway"}]}}}))
    service = named(manifests, "Service", API)
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http"]
    (ingress,) = of_kind(manifests, "Ingress")
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": API, "port": {"name": "http"}}
    (route,) = of_kind(manifests, "HTTPRoute")
    assert route["spec"]["rules"][0]["backendRefs"] == [{"name": API, "port": 8000}]
    api = _api_container(manifests)
    ports = {p["name"]: p["containerPort"] for p in api["ports"]}
    assert ports == {"http": 8000, "metrics": 9809}
    assert env(api)["INFERQ_METRICS_PORT"]["value"] == str(ports["metrics"])


@pytest.mark.parametrize("scenario", ["default", "production", "gateway-api"])
def test_no_service_routes_to_the_workers_metrics(scenario: str) -> None:
    """Workers serve /metrics (port 9808) for the PodMonitor only: no Service selects them."""
    manifests = scenario_objects(scenario)
    for deployment in of_kind(manifests, "Deployment"):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        if labels.get("app.kubernetes.io/component") != "worker":
            continue
        for service in of_kind(manifests, "Service"):
            assert not service["spec"]["selector"].items() <= labels.items(), \
                service["metadata"]["name"]


# -- TLS.

def test_the_charts_redis_serves_tls_only_and_every_client_checks_it() -> None:
    manifests = scenario_objects("redis-tls")
    config = named(manifests, "ConfigMap", component_name("redis"))["data"]["redis.conf"]
    lines = config.splitlines()
    assert "port 0" in lines and "tls-port 6379" in lines
    assert "tls-ca-cert-file /etc/redis/tls/ca.crt" in lines
    redis_pod = named(manifests, "StatefulSet", component_name("redis"))["spec"]["template"][
        "spec"]
    (tls,) = [v for v in redis_pod["volumes"] if v["name"] == "tls"]
    assert tls["secret"]["secretName"] == "inferq-redis-tls"
    probe = " ".join(redis_pod["containers"][0]["readinessProbe"]["exec"]["command"])
    assert "--tls --cacert /etc/redis/tls/ca.crt" in probe
    for container in _inferq_containers(manifests):
        variables = env(container)
        assert variables["INFERQ_REDIS_URL"]["value"].startswith("rediss://")
        assert variables["INFERQ_REDIS_CA_FILE"]["value"] == "/etc/inferq/redis-ca/ca.crt"
        assert {"name": "redis-ca", "mountPath": "/etc/inferq/redis-ca", "readOnly": True} in \
            container["volumeMounts"]
    for _, pod in pod_specs(manifests):
        for volume in pod.get("volumes", []):
            if volume["name"] == "redis-ca":
                # The CA alone: never the Redis server's key, which shares the Secret.
                assert volume["secret"] == {"secretName": "inferq-redis-tls",
                                            "items": [{"key": "ca.crt", "path": "ca.crt"}]}
    (auth,) = of_kind(manifests, "TriggerAuthentication")
    assert {"parameter": "ca", "name": "inferq-redis-tls", "key": "ca.crt"} in \
        auth["spec"]["secretTargetRef"]
    for scaled in of_kind(manifests, "ScaledObject"):
        for trigger in scaled["spec"]["triggers"]:
            assert trigger["metadata"]["enableTLS"] == "true"


def test_tls_without_its_secret_is_refused() -> None:
    with pytest.raises(helm_python.HelmError, match=r"redis\.tls\.existingSecret"):
        render({"redis": {"tls": {"enabled": True}}})


def test_an_external_redis_with_a_private_ca_and_a_user() -> None:
    manifests = scenario_objects("external-redis-tls")
    assert of_kind(manifests, "StatefulSet") == []
    for container in _inferq_containers(manifests):
        variables = env(container)
        assert variables["INFERQ_REDIS_URL"]["value"] == (
            "rediss://inferq@master.inferq.cache.example.com:6380/0")
        assert variables["INFERQ_REDIS_CA_FILE"]["value"] == "/etc/inferq/redis-ca/ca.crt"
        assert variables["INFERQ_REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
            "name": "managed-redis", "key": "auth-token"}
    (auth,) = of_kind(manifests, "TriggerAuthentication")
    refs = {r["parameter"]: r for r in auth["spec"]["secretTargetRef"]}
    assert refs["ca"] == {"parameter": "ca", "name": "managed-redis-ca", "key": "ca.crt"}
    assert _secret(manifests, refs["username"]["name"], "username") == "inferq"


def test_a_ca_for_a_plain_redis_url_is_refused() -> None:
    values = {"redis": {"external": {"url": "redis://r:6379/0", "caSecret": "ca"}}}
    with pytest.raises(helm_python.HelmError, match="rediss://"):
        render(values)


def test_the_url_may_name_a_user_but_never_a_password() -> None:
    url = "rediss://inferq:secret@r:6380/0"
    with pytest.raises(helm_python.HelmError, match="url"):
        render({"redis": {"external": {"url": url}}})


# -- API keys.

def test_auth_is_on_with_a_generated_secret_and_the_test_key_seeded() -> None:
    manifests = scenario_objects("default")
    variables = env(_api_container(manifests))
    assert variables["INFERQ_AUTH"]["value"] == "on"
    ref = variables["INFERQ_AUTH_SECRET"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": component_name("auth"), "key": "auth-secret"}
    assert len(_secret(manifests, ref["name"], ref["key"])) == 48
    assert variables["INFERQ_AUTH_SEED_FILE"]["value"] == "/etc/inferq/auth-seed/keys.json"
    key = _secret(manifests, TEST_KEY, "api-key")
    assert KEY_FORMAT.match(key), key
    assert json.loads(_secret(manifests, TEST_KEY, "keys.json")) == [
        {"key": key, "tenant": "default", "scopes": ["predict"], "name": "helm-test"}]
    (test_pod,) = of_kind(manifests, "Pod")
    (predict,) = test_pod["spec"]["containers"]
    assert env(predict)["INFERQ_API_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": TEST_KEY, "key": "api-key"}
    # Only the API reads the hash key; no other pod sees it.
    for _, pod in pod_specs(manifests):
        for container in containers(pod):
            if container["name"] != "api":
                assert "INFERQ_AUTH_SECRET" not in env(container)


def test_auth_off_sets_no_secret_and_the_test_sends_no_key() -> None:
    manifests = objects(render({"auth": {"enabled": False}}))
    variables = env(_api_container(manifests))
    assert variables["INFERQ_AUTH"]["value"] == "off"
    assert "INFERQ_AUTH_SECRET" not in variables and "INFERQ_AUTH_SEED_FILE" not in variables
    names = {s["metadata"]["name"] for s in of_kind(manifests, "Secret")}
    assert component_name("auth") not in names and TEST_KEY not in names
    (test_pod,) = of_kind(manifests, "Pod")
    assert "INFERQ_API_KEY" not in env(test_pod["spec"]["containers"][0])


def test_existing_secrets_for_the_hash_key_seed_keys_and_the_test_key() -> None:
    values = {"auth": {"existingSecret": "auth", "existingSecretKey": "hmac",
                       "seedKeysSecret": "seeds", "seedKeysSecretKey": "seed.json"},
              "tests": {"apiKey": {"existingSecret": "probe-key", "existingSecretKey": "key"}}}
    manifests = objects(render(values))
    names = {s["metadata"]["name"] for s in of_kind(manifests, "Secret")}
    assert component_name("auth") not in names and TEST_KEY not in names
    deployment = named(manifests, "Deployment", API)["spec"]["template"]["spec"]
    variables = env(deployment["containers"][0])
    assert variables["INFERQ_AUTH_SECRET"]["valueFrom"]["secretKeyRef"] == {
        "name": "auth", "key": "hmac"}
    (seed,) = [v for v in deployment["volumes"] if v["name"] == "auth-seed"]
    assert seed["secret"] == {"secretName": "seeds",
                              "items": [{"key": "seed.json", "path": "keys.json"}]}
    assert {"name": "auth-seed", "mountPath": "/etc/inferq/auth-seed", "readOnly": True} in \
        deployment["containers"][0]["volumeMounts"]
    (test_pod,) = of_kind(manifests, "Pod")
    assert env(test_pod["spec"]["containers"][0])["INFERQ_API_KEY"]["valueFrom"][
        "secretKeyRef"] == {"name": "probe-key", "key": "key"}


def test_seed_keys_without_a_key_for_the_test_are_refused() -> None:
    with pytest.raises(helm_python.HelmError, match=r"tests\.apiKey\.existingSecret"):
        render({"auth": {"seedKeysSecret": "seeds"}})


def test_unknown_auth_values_are_refused() -> None:
    for values in ({"auth": {"enabled": "yes"}}, {"auth": {"secret": "x"}},
                   {"tests": {"apiKey": {"key": "x"}}}, {"redis": {"tls": {"ca": "x"}}},
                   {"redis": {"acl": {"users": []}}}):
        with pytest.raises(helm_python.HelmError):
            render(values)


@pytest.mark.parametrize("live", [False, True])
def test_an_upgrade_keeps_the_hash_key_and_the_test_key(live: bool) -> None:
    secrets = {
        component_name("auth"): {"auth-secret": base64.b64encode(b"kept-hash-key").decode()},
        TEST_KEY: {"api-key": base64.b64encode(
            b"inferq_0123456789abcdef_" + b"A" * 43).decode()},
    }
    prefix = f"/api/v1/namespaces/{NAMESPACE}/secrets/"

    def answer(path: str) -> Any:
        if path == "/api/v1":
            return CORE_V1
        name = path.removeprefix(prefix)
        if live and path.startswith(prefix) and name in secrets:
            return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                    "metadata": {"name": name, "namespace": NAMESPACE}, "data": secrets[name]}
        return None

    stub = StubKubernetes(answer)
    try:
        cluster = helm_python.Config(kube_apiserver=stub.url, kube_token="t",
                                     namespace=NAMESPACE)
        rendered = objects(cluster.render(chart(), {}, name=RELEASE, namespace=NAMESPACE,
                                          is_upgrade=live, is_install=not live))
    finally:
        stub.close()
    hash_key = _secret(rendered, component_name("auth"), "auth-secret")
    key = _secret(rendered, TEST_KEY, "api-key")
    if live:
        assert hash_key == "kept-hash-key"
        assert key == "inferq_0123456789abcdef_" + "A" * 43
    else:
        assert len(hash_key) == 48 and KEY_FORMAT.match(key)
    assert json.loads(_secret(rendered, TEST_KEY, "keys.json"))[0]["key"] == key
