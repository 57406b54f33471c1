"""Redis: a durable StatefulSet with ACL users whose passwords come from a Secret, or an
external URL."""

from __future__ import annotations

import base64
from urllib.parse import urlsplit

import helm_python
import pytest
from chart.manifests import (
    NAMESPACE,
    RELEASE,
    REPO_ROOT,
    SCENARIOS,
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


USERS = component_name("redis-users")
#: One password for everyone, as before ACL users.
SHARED = {"redis": {"acl": {"enabled": False}}}


def test_probes_ping_as_keda_with_the_password_from_the_environment() -> None:
    statefulset = named(scenario_objects("default"), "StatefulSet", REDIS)
    (redis,) = statefulset["spec"]["template"]["spec"]["containers"]
    for probe in ("livenessProbe", "readinessProbe"):
        command = " ".join(redis[probe]["exec"]["command"])
        assert "redis-cli" in command and "--user keda" in command and "ping" in command
    assert env(redis)["REDISCLI_AUTH"]["valueFrom"]["secretKeyRef"] == {
        "name": USERS, "key": "keda-password"}
    assert "--requirepass" not in redis["args"]


def test_without_acl_users_the_probes_ping_with_the_one_password() -> None:
    statefulset = named(objects(render(SHARED)), "StatefulSet", REDIS)
    (redis,) = statefulset["spec"]["template"]["spec"]["containers"]
    assert env(redis)["REDISCLI_AUTH"]["valueFrom"]["secretKeyRef"]["name"] == REDIS
    assert "$(REDIS_PASSWORD)" in redis["args"]


def test_the_acl_users_and_default_off_are_in_the_servers_arguments() -> None:
    statefulset = named(scenario_objects("default"), "StatefulSet", REDIS)
    (redis,) = statefulset["spec"]["template"]["spec"]["containers"]
    args = redis["args"]
    users = {args[i + 1]: args[i + 2:] for i, a in enumerate(args) if a == "--user"}
    assert users["default"][0] == "off"
    for user in ("api", "worker", "keda"):
        assert users[user][:2] == ["on", f">$(REDIS_{user.upper()}_PASSWORD)"]
        ref = env(redis)[f"REDIS_{user.upper()}_PASSWORD"]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": USERS, "key": f"{user}-password"}
    keda = users["keda"][: users["keda"].index("--user")] if "--user" in users["keda"] \
        else users["keda"]
    assert [r for r in keda if r.startswith(("+", "-"))] == [
        "-@all", "+ping", "+eval", "+type", "+llen", "+hlen"]
    assert sorted(r for r in keda if "~" in r) == sorted(
        f"~{key}" for queue in ("inference", "batch", "training")
        for key in (queue, f"inferq:unacked:{queue}"))


def test_passwords_are_generated_once_into_the_charts_secret() -> None:
    secret = named(scenario_objects("default"), "Secret", USERS)
    assert set(secret["data"]) == {"api-password", "worker-password", "keda-password"}
    passwords = {base64.b64decode(v).decode() for v in secret["data"].values()}
    assert len(passwords) == 3
    assert all(len(p) == 32 and p.isalnum() for p in passwords)


def test_each_component_reads_its_own_users_password_only() -> None:
    manifests = scenario_objects("default")
    for workload, pod in pod_specs(manifests):
        component = workload["metadata"]["labels"].get("app.kubernetes.io/component")
        for container in containers(pod):
            refs = [e["valueFrom"]["secretKeyRef"] for e in container.get("env", [])
                    if "secretKeyRef" in e.get("valueFrom", {})
                    and e["valueFrom"]["secretKeyRef"]["name"] == USERS]
            if component == "api":
                assert refs == [{"name": USERS, "key": "api-password"}]
                assert env(container)["INFERQ_REDIS_URL"]["value"].startswith("redis://api@")
            elif component == "worker":
                assert refs == [{"name": USERS, "key": "worker-password"}]
                assert env(container)["INFERQ_REDIS_URL"]["value"].startswith(
                    "redis://worker@")
            elif component == "test":
                assert refs == []
    (auth,) = of_kind(manifests, "TriggerAuthentication")
    assert {"parameter": "password", "name": USERS, "key": "keda-password"} in \
        auth["spec"]["secretTargetRef"]


@pytest.mark.parametrize("live", [None, b"kept-across-upgrades"])
def test_an_upgrade_keeps_the_generated_passwords(live: bytes | None) -> None:
    """``lookup`` against a stub API server: an upgrade reads the live Secret's passwords
    back; with no Secret yet (a first install) new ones are generated."""
    path = f"/api/v1/namespaces/{NAMESPACE}/secrets/{USERS}"
    data = {f"{u}-password": base64.b64encode((live or b"") + u.encode()).decode()
            for u in ("api", "worker", "keda")}
    secret = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
              "metadata": {"name": USERS, "namespace": NAMESPACE}, "data": data}
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
    kept = named(objects(rendered), "Secret", USERS)["data"]
    for user in ("api", "worker", "keda"):
        password = base64.b64decode(kept[f"{user}-password"])
        if live:
            assert password == live + user.encode()
        else:
            assert len(password) == 32 and password.isalnum()


def test_one_password_is_generated_without_acl_users() -> None:
    secret = named(objects(render(SHARED)), "Secret", REDIS)
    password = base64.b64decode(secret["data"]["redis-password"]).decode()
    assert len(password) == 32 and password.isalnum()


def test_password_from_values_lands_in_the_secret() -> None:
    values = {"redis": {"acl": {"enabled": False}, "auth": {"password": "s3cret"}}}
    secret = named(objects(render(values)), "Secret", REDIS)
    assert base64.b64decode(secret["data"]["redis-password"]) == b"s3cret"


def test_a_single_password_with_acl_users_is_refused() -> None:
    with pytest.raises(helm_python.HelmError, match=r"redis\.acl\.existingSecret"):
        render({"redis": {"auth": {"password": "s3cret"}}})


def test_existing_users_secret_is_used_and_not_created() -> None:
    manifests = scenario_objects("production")
    assert [s["metadata"]["name"] for s in of_kind(manifests, "Secret")
            if "redis" in s["metadata"]["name"]] == [component_name("redis-keda")]
    for container in _inferq_containers("production"):
        ref = env(container)["INFERQ_REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]
        assert ref["name"] == "inferq-redis-users"
        assert ref["key"] in ("api-password", "worker-password")


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_inferq_pod_gets_redis_without_a_password_in_the_url(scenario: str) -> None:
    manifests = scenario_objects(scenario)
    internal = bool(of_kind(manifests, "StatefulSet"))
    for container in _inferq_containers(scenario):
        variables = env(container)
        url = urlsplit(variables["INFERQ_REDIS_URL"]["value"])
        assert url.scheme in ("redis", "rediss") and url.password is None
        if internal:
            assert url.netloc == f"{container['name']}@{REDIS}:6379" and url.path == "/0"
            assert variables["INFERQ_REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"]
        assert variables["INFERQ_MODEL_STORE"]["value"].startswith(("/", "s3://"))
        assert variables["INFERQ_LOG_FORMAT"]["value"] == "json"


def test_external_redis_replaces_the_statefulset() -> None:
    manifests = scenario_objects("minimal")
    for kind in ("StatefulSet", "NetworkPolicy", "ConfigMap"):
        assert of_kind(manifests, kind) == []
    assert not [s for s in of_kind(manifests, "Secret")
                if s["metadata"]["labels"]["app.kubernetes.io/component"] == "redis"]
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
    """Release `inferq` gets Secret `inferq-redis-users`; another release
    `<release>-inferq-redis-users`."""
    for release, expected in (("inferq", "inferq-redis-users"),
                              ("shop", "shop-inferq-redis-users")):
        rendered = chart().render({}, name=release, namespace=NAMESPACE, is_install=True)
        names = [s["metadata"]["name"] for s in of_kind(objects(rendered), "Secret")]
        assert expected in names
        notes = next(text for name, text in rendered.items() if name.endswith("NOTES.txt"))
        assert f"Secret\n      {expected} (keys api-password, worker-password" in notes
    docs = (REPO_ROOT / "docs" / "kubernetes.md").read_text()
    assert "`inferq-redis-users` for release `inferq`" in docs
    assert "`<release>-inferq-redis-users` for another release" in docs
