"""Redis: a durable StatefulSet with a password from a Secret, or an external URL."""

from __future__ import annotations

import base64
from urllib.parse import urlsplit

import pytest
from chart.manifests import (
    NAMESPACE,
    RELEASE,
    REPO_ROOT,
    SCENARIOS,
    chart,
    component_name,
    env,
    named,
    objects,
    of_kind,
    pod_specs,
    render,
    scenario_objects,
)
from kube_stub import CORE_V1, StubKubernetes

REDIS = component_name("redis")


def _inferq_containers(scenario: str) -> list[dict]:
    return [
        container
        for _, pod in pod_specs(scenario_objects(scenario))
        for container in pod["containers"]
        if container["name"] in ("api", "worker")
    ]


def test_statefulset_keeps_the_queues_on_a_volume() -> None:
    manifests = scenario_objects("default")
    statefulset = named(manifests, "StatefulSet", REDIS)
    (claim,) = statefulset["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data"
    assert claim["spec"]["resources"]["requests"]["storage"] == "8Gi"
    pod = statefulset["spec"]["template"]["spec"]
    (redis,) = pod["containers"]
    assert redis["image"].startswith("redis:7.")
    assert {"name": "data", "mountPath": "/data"} in redis["volumeMounts"]
    assert statefulset["spec"]["serviceName"] == f"{REDIS}-headless"
    config = named(manifests, "ConfigMap", REDIS)["data"]["redis.conf"].splitlines()
    for line in ("appendonly yes", "appendfsync everysec", "maxmemory-policy noeviction"):
        assert line in config


def test_redis_has_a_headless_and_a_client_service() -> None:
    manifests = scenario_objects("default")
    assert named(manifests, "Service", f"{REDIS}-headless")["spec"]["clusterIP"] == "None"
    assert named(manifests, "Service", REDIS)["spec"]["ports"][0]["port"] == 6379


def test_probes_ping_with_the_password_from_the_environment() -> None:
    statefulset = named(scenario_objects("default"), "StatefulSet", REDIS)
    (redis,) = statefulset["spec"]["template"]["spec"]["containers"]
    for probe in ("livenessProbe", "readinessProbe"):
        command = " ".join(redis[probe]["exec"]["command"])
        assert "redis-cli" in command and "ping" in command
    assert env(redis)["REDISCLI_AUTH"]["valueFrom"]["secretKeyRef"]["name"] == REDIS
    assert "$(REDIS_PASSWORD)" in redis["args"]


def test_password_is_generated_once_into_the_charts_secret() -> None:
    secret = named(scenario_objects("default"), "Secret", REDIS)
    password = base64.b64decode(secret["data"]["redis-password"]).decode()
    assert len(password) == 32 and password.isalnum()


@pytest.mark.parametrize("live", [None, b"kept-across-upgrades"])
def test_an_upgrade_keeps_the_generated_password(live: bytes | None) -> None:
    """``lookup`` against a stub API server: an upgrade reads the live Secret's password
    back; with no Secret yet (a first install) a new one is generated."""
    import helm_python

    path = f"/api/v1/namespaces/{NAMESPACE}/secrets/{REDIS}"
    secret = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
              "metadata": {"name": REDIS, "namespace": NAMESPACE},
              "data": {"redis-password": base64.b64encode(live or b"").decode()}}
    stub = StubKubernetes(lambda p: CORE_V1 if p == "/api/v1" else
                          secret if p == path and live else None)
    try:
        cluster = helm_python.Config(kube_apiserver=stub.url, kube_token="t",
                                     namespace=NAMESPACE)
        rendered = cluster.render(chart(), {}, name=RELEASE, namespace=NAMESPACE,
                                  is_upgrade=live is not None, is_install=live is None)
    finally:
        stub.close()
    assert path in [p.split("?")[0] for p in stub.requests]
    kept = named(objects(rendered), "Secret", REDIS)["data"]["redis-password"]
    password = base64.b64decode(kept)
    if live:
        assert password == live
    else:
        assert len(password) == 32 and password.isalnum()


def test_password_from_values_lands_in_the_secret() -> None:
    secret = named(objects(render({"redis": {"auth": {"password": "s3cret"}}})), "Secret", REDIS)
    assert base64.b64decode(secret["data"]["redis-password"]) == b"s3cret"


def test_existing_secret_is_used_and_not_created() -> None:
    manifests = scenario_objects("production")
    assert of_kind(manifests, "Secret") == []
    for container in _inferq_containers("production"):
        ref = env(container)["INFERQ_REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": "inferq-redis", "key": "password"}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_inferq_pod_gets_redis_without_a_password_in_the_url(scenario: str) -> None:
    manifests = scenario_objects(scenario)
    internal = bool(of_kind(manifests, "StatefulSet"))
    for container in _inferq_containers(scenario):
        variables = env(container)
        url = urlsplit(variables["INFERQ_REDIS_URL"]["value"])
        assert url.scheme in ("redis", "rediss") and url.password is None and not url.username
        if internal:
            assert url.netloc == f"{REDIS}:6379" and url.path == "/0"
            assert variables["INFERQ_REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"]
        assert variables["INFERQ_MODEL_STORE"]["value"].startswith(("/", "s3://"))
        assert variables["INFERQ_LOG_FORMAT"]["value"] == "json"


def test_external_redis_replaces_the_statefulset() -> None:
    manifests = scenario_objects("minimal")
    for kind in ("StatefulSet", "Secret", "NetworkPolicy", "ConfigMap"):
        assert of_kind(manifests, kind) == []
    for container in _inferq_containers("minimal"):
        variables = env(container)
        assert variables["INFERQ_REDIS_URL"]["value"] == "redis://redis.example.internal:6379/2"
        assert "INFERQ_REDIS_PASSWORD" not in variables


def test_keda_reaches_the_charts_redis_by_its_full_name() -> None:
    for scaled_object in of_kind(scenario_objects("default"), "ScaledObject"):
        for trigger in scaled_object["spec"]["triggers"]:
            address = trigger["metadata"]["address"]
            assert address == f"{REDIS}.{NAMESPACE}.svc.cluster.local:6379"


def test_redis_priority_class_and_disruption_budget() -> None:
    assert REDIS not in {p["metadata"]["name"]
                         for p in of_kind(scenario_objects("default"), "PodDisruptionBudget")}
    values = {"redis": {"priorityClassName": "critical-data",
                        "podDisruptionBudget": {"enabled": True}}}
    manifests = objects(render(values))
    pod = named(manifests, "StatefulSet", REDIS)["spec"]["template"]
    assert pod["spec"]["priorityClassName"] == "critical-data"
    budget = named(manifests, "PodDisruptionBudget", REDIS)
    assert budget["spec"]["maxUnavailable"] == 0
    assert budget["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    external = {**values, "redis": {**values["redis"], "external": {"url": "redis://r:6379/0"}}}
    assert REDIS not in {p["metadata"]["name"]
                         for p in of_kind(objects(render(external)), "PodDisruptionBudget")}


def test_the_generated_secret_is_named_as_the_docs_say() -> None:
    """Release `inferq` gets Secret `inferq-redis`; another release `<release>-inferq-redis`."""
    for release, expected in (("inferq", "inferq-redis"), ("shop", "shop-inferq-redis")):
        rendered = chart().render({}, name=release, namespace=NAMESPACE, is_install=True)
        (secret,) = of_kind(objects(rendered), "Secret")
        assert secret["metadata"]["name"] == expected
        notes = next(text for name, text in rendered.items() if name.endswith("NOTES.txt"))
        assert f"Secret\n      {expected} (key redis-password)" in notes
    docs = (REPO_ROOT / "docs" / "kubernetes.md").read_text()
    assert "`inferq-redis` for release `inferq`" in docs
    assert "`<release>-inferq-redis` for another release" in docs
